# Never take a link or device out of service without a spare path behind it.
#  redundancy = healthy redundant paths/peers that remain if the target goes away;
#  null when no context source knew it (listed in input.scenario.unknown).
package npo.policies.min_redundancy

import data.npo.lib.actions
import rego.v1

min_spare := 1

comfortable_spare := 2

known if is_number(input.scenario.redundancy)

deny contains msg if {
	input.action.name in actions.removes_capacity
	known
	input.scenario.redundancy < min_spare
	msg := sprintf(
		"%s would leave %s with %d redundant paths (minimum %d)",
		[input.action.name, target, input.scenario.redundancy, min_spare],
	)
}

needs_approval contains msg if {
	input.action.name in actions.removes_capacity
	known
	input.scenario.redundancy >= min_spare
	input.scenario.redundancy < comfortable_spare
	msg := sprintf(
		"%s leaves %s on its last redundant path: a second engineer must approve",
		[input.action.name, target],
	)
}

# Unknown is not "enough": someone who can see the topology confirms.
needs_approval contains msg if {
	input.action.name in actions.removes_capacity
	not known
	msg := sprintf(
		"%s on %s: redundancy unknown, a second engineer must confirm a spare path remains",
		[input.action.name, target],
	)
}

target := input.action.target if input.action.target != ""

else := input.scenario.device if input.scenario.device != ""

else := "the target"
