# Changes wait for a maintenance window unless the incident is critical.
package npo.policies.maintenance_window

import data.npo.lib.actions
import rego.v1

defer contains msg if {
	actions.is_change
	not input.scenario.maintenance_window
	input.scenario.severity != "critical"
	msg := sprintf(
		"%s is a change outside a maintenance window at %s severity: wait for the window",
		[input.action.name, input.scenario.severity],
	)
}

needs_approval contains msg if {
	actions.is_change
	not input.scenario.maintenance_window
	input.scenario.severity == "critical"
	input.action.risk == "high"
	msg := sprintf(
		"%s is a high-risk change outside a maintenance window: the incident commander must approve",
		[input.action.name],
	)
}
