# Shared vocabulary: which playbook actions change the network or a server.
# Read-only actions (diagnostics, escalation) are never restricted by the change policies.
package npo.lib.actions

import rego.v1

read_only := {
	"collect_diagnostics",
	"escalate",
	"notify",
	"monitor",
	"verify",
	"open_ticket",
}

# Actions that take a link or a device out of service.
removes_capacity := {
	"drain_link",
	"shutdown_port",
	"drain_device",
	"isolate_device",
	"remove_device",
	"reboot_device",
	"replace_linecard",
	"replace_optic",
	"drain_server",
	"failover",
	"failover_nic",
	"remove_lag_member",
	"shutdown_bgp_peer",
	"drain_backend",
	"evacuate_host",
}

is_change if not input.action.name in read_only
