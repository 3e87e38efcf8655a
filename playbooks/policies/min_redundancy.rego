# Never take a link or device out of service without a spare path behind it.
#  redundancy = healthy redundant paths/peers that remain if the target goes away.
package npo.policies.min_redundancy

import data.npo.lib.actions
import rego.v1

min_spare := 1

comfortable_spare := 2

deny contains msg if {
	input.action.name in actions.removes_capacity
	input.scenario.redundancy < min_spare
	msg := sprintf(
		"%s would leave %s with %d redundant paths (minimum %d)",
		[input.action.name, target, input.scenario.redundancy, min_spare],
	)
}

needs_approval contains msg if {
	input.action.name in actions.removes_capacity
	input.scenario.redundancy >= min_spare
	input.scenario.redundancy < comfortable_spare
	msg := sprintf(
		"%s leaves %s on its last redundant path: a second engineer must approve",
		[input.action.name, target],
	)
}

target := input.action.target if input.action.target != ""

else := input.scenario.device if input.scenario.device != ""

else := "the target"
