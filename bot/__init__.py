"""Every edge with I/O: CLI, console, Slack, persistence, scheduler."""
