"""Engines and sessions. SQLite runs in WAL mode with a busy timeout and ``synchronous=FULL``
(the WAL is synced at every commit, so an acknowledged vote survives power loss; group
commit in the service amortises that sync), and every transaction starts with
``BEGIN IMMEDIATE`` so concurrent writers queue instead of losing updates;
PostgreSQL uses row locks (``SELECT … FOR UPDATE``) in the repository."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table, event, inspect
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, create_engine

_READ_ONLY = "npo_read_only"


def read_only(engine: Engine) -> Engine:
    """The same engine (same pool) for transactions that only read. On SQLite they begin
    deferred, so they neither wait for nor block writers (WAL readers see the last commit);
    on PostgreSQL nothing changes."""
    return engine.execution_options(**{_READ_ONLY: True})


def table_of(model: type[Any]) -> Table:
    """The Core table of a SQLModel class, for plain bulk inserts on hot paths."""
    return cast(Table, inspect(model).local_table)


def default_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'npo.db'}"


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # let SQLAlchemy's "begin" event issue BEGIN
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=FULL")  # a commit survives power loss, not only a crash
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        reading = conn.get_execution_options().get(_READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if reading else "BEGIN IMMEDIATE")

    return engine


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """One unit of work: committed on success, rolled back on any error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
