# Bound how much one automated recommendation may touch.
package npo.policies.blast_radius

import data.npo.lib.actions
import rego.v1

approval_above := 3

deny_above := 10

deny contains msg if {
	actions.is_change
	input.action.blast_radius > deny_above
	msg := sprintf(
		"blast radius %d exceeds the limit of %d devices: split the change",
		[input.action.blast_radius, deny_above],
	)
}

needs_approval contains msg if {
	actions.is_change
	input.action.blast_radius > approval_above
	input.action.blast_radius <= deny_above
	msg := sprintf(
		"blast radius %d is above %d devices: needs approval",
		[input.action.blast_radius, approval_above],
	)
}
