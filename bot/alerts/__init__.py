"""Alert intake: Prometheus Alertmanager's webhook turned into incidents in their channels.
May import the service, ``bot.slack`` (it posts into threads), ``bot.db`` for its own
deduplication rows, and ``bot.extraction``."""
