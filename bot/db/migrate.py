"""Schema migrations with Alembic, configured in code (no alembic.ini to keep in sync).

Every replica runs ``upgrade`` at start, so upgrades of one database are serialised: on
PostgreSQL by a session-level advisory lock held on the very connection Alembic migrates
with, on SQLite by an exclusive lock on a sibling file. A replica that comes second waits,
then finds the schema at head and does nothing."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection, make_url

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

# "NPM": the migration lock; the scheduled jobs use 0x4E504F (bot/monitoring/ticker.py).
MIGRATE_LOCK_KEY = 0x4E504D


def alembic_config(url: str, connection: Connection | None = None) -> Config:
    """Alembic's configuration; with ``connection``, env.py migrates on that connection."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision``, one process at a time."""
    from bot.db.engine import make_engine

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        with _file_lock(parsed.database):
            command.upgrade(alembic_config(url), revision)
        return
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATE_LOCK_KEY})
            conn.commit()  # the lock is the session's; Alembic opens its own transaction
            try:
                command.upgrade(alembic_config(url, conn), revision)
            finally:
                conn.rollback()  # a failed migration leaves its transaction aborted
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATE_LOCK_KEY})
                conn.commit()
    finally:
        engine.dispose()  # closing the connection would release the lock in any case


@contextmanager
def _file_lock(database: str | None) -> Iterator[None]:
    """An exclusive ``flock`` on ``<database>.migrate.lock`` (nothing for in-memory)."""
    if not database or database == ":memory:":
        yield
        return
    path = Path(f"{database}.migrate.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)  # released when the file is closed
        yield


def current_revision(url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext

    from bot.db.engine import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
