"""Scheduled work: the meta-monitor tick (shadow retrain, decision, controlled retrain),
expiry of unanswered recommendations, retention, and the APScheduler jobs that run them.
May import the service, ``bot.db``, ``bot.reporting`` and ``core``; never an adapter."""
