"""Persistence: SQLModel tables, the engine factory, Alembic migrations and the statements
each use case runs (``*_rows.py``, ``scores.py``, ``state.py``). Imports only ``core`` (for the
state it stores); called by ``bot.service``, ``bot.monitoring`` and ``bot.reporting``."""
