# Never act on a device that another change is already touching.
package npo.policies.change_conflict

import data.npo.lib.actions
import rego.v1

deny contains msg if {
	actions.is_change
	some device in affected
	device in input.scenario.active_changes
	msg := sprintf("%s is already being changed by another operation", [device])
}

affected contains input.action.target if input.action.target != ""

affected contains input.scenario.device if input.scenario.device != ""
