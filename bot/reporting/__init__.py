"""What people and tools read: alignment stats, charts, Prometheus metrics, the audit
export, text rendering of decisions, and the offline evaluations (policy, incidents,
simulator output). Reads ``bot.db`` and ``core``; the evaluations build their install
through ``bot.wiring``."""
