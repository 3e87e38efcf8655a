"""Engines and sessions. SQLite runs in WAL mode with a busy timeout and ``synchronous=FULL``
(the WAL is synced at every commit, so an acknowledged vote survives power loss; group
commit in the service amortises that sync), and every transaction starts with
``BEGIN IMMEDIATE`` so concurrent writers queue instead of losing updates;
PostgreSQL uses row locks (``SELECT … FOR UPDATE``) in the repository."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table, event, inspect
from sqlalchemy.engine import Connection, Engine, make_url
from sqlmodel import Session, create_engine

_READ_ONLY = "npo_read_only"
BUSY_TIMEOUT_MS = 30_000  # how long a SQLite writer waits for another


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
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=FULL")  # a commit survives power loss, not only a crash
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        reading = conn.get_execution_options().get(_READ_ONLY, False)
        # On the driver's connection: through exec_driver_sql this one statement cost
        # as much as the rest of a decision's read (see ``bot.db.prepared``).
        statement = "BEGIN" if reading else "BEGIN IMMEDIATE"
        try:
            conn.connection.dbapi_connection.execute(statement)
        except BaseException as error:  # as SQLAlchemy raises it ("database is locked")
            conn._handle_dbapi_exception(error, statement, (), None, None)

    return engine


@contextmanager
def bounded_wait(engine: Engine, wait: dt.timedelta) -> Iterator[Connection]:
    """A connection whose next transaction waits at most ``wait`` for locks held by other
    writers (SQLite's busy timeout, PostgreSQL's lock_timeout), for work that must answer
    within a deadline; the connection's usual wait is restored afterwards."""
    ms = max(1, int(wait.total_seconds() * 1000))
    with engine.connect() as conn:
        if conn.dialect.name != "sqlite":
            conn.exec_driver_sql(f"SET lock_timeout = {ms}")
            try:
                conn.commit()
                yield conn
            finally:
                conn.rollback()
                conn.exec_driver_sql("SET lock_timeout = 0")
                conn.commit()
            return
        # Set on the driver connection directly: a statement through SQLAlchemy would
        # begin the transaction (BEGIN IMMEDIATE) before the timeout applies.
        raw = conn.connection.dbapi_connection
        assert raw is not None
        raw.execute(f"PRAGMA busy_timeout={ms}")
        try:
            yield conn
        finally:
            raw.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")


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
