"""Context providers: where a scenario's facts come from (alert labels, ``key=value`` in a
message, Prometheus, maintenance calendars, our own store), each fact with its source and
age, or unknown. ``gather.py`` runs them within one time budget; ``config.py`` builds them
from the context file (called by ``bot.wiring``). Imports ``bot.db`` (recent faults) and
``core``; never the service or an adapter."""
