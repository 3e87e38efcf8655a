# Changes wait for a maintenance window unless the incident is critical.
#  maintenance_window is true, false, or null when no calendar or label said
#  (listed in input.scenario.unknown): unknown is never read as "outside".
package npo.policies.maintenance_window

import data.npo.lib.actions
import rego.v1

outside if input.scenario.maintenance_window == false

unknown if not is_boolean(input.scenario.maintenance_window)

critical if input.scenario.severity == "critical"

defer contains msg if {
	actions.is_change
	outside
	not critical
	msg := sprintf(
		"%s is a change outside a maintenance window at %s severity: wait for the window",
		[input.action.name, severity],
	)
}

needs_approval contains msg if {
	actions.is_change
	outside
	critical
	input.action.risk == "high"
	msg := sprintf(
		"%s is a high-risk change outside a maintenance window: the incident commander must approve",
		[input.action.name],
	)
}

needs_approval contains msg if {
	actions.is_change
	unknown
	not critical
	msg := sprintf(
		"maintenance window unknown: an engineer must confirm %s may run now at %s severity",
		[input.action.name, severity],
	)
}

needs_approval contains msg if {
	actions.is_change
	unknown
	critical
	input.action.risk == "high"
	msg := sprintf(
		"maintenance window unknown for a high-risk %s: the incident commander must approve",
		[input.action.name],
	)
}

severity := input.scenario.severity if is_string(input.scenario.severity)

else := "unknown"
