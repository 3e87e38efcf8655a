"""Prepared statements answer and store exactly what ``Connection.execute`` would, on
SQLite and PostgreSQL: the same rows with the same types, values the ORM reads back as it
wrote them, SQLAlchemy's errors, one snapshot per read block, and cursor events."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
from sqlalchemy import bindparam, event, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session
from sqlmodel import select as sqlmodel_select

from bot.db.engine import bounded_wait, make_engine, read_only, table_of
from bot.db.models import AuditEntry, BanditArm, ProcessedEvent
from bot.db.prepared import Prepared

_EVENTS = table_of(ProcessedEvent)
_AUDIT = table_of(AuditEntry)
_ARMS = table_of(BanditArm)
NOW = dt.datetime(2026, 12, 4, 21, 35, 12, 123456, tzinfo=dt.UTC)

_INSERT_EVENT = Prepared(insert(_EVENTS), "insert event")
_EVENTS_SINCE = Prepared(
    select(_EVENTS.c.event_id, _EVENTS.c.created_at)
    .where(_EVENTS.c.created_at >= bindparam("since"))
    .order_by(_EVENTS.c.event_id)
    .limit(2),
    "events since",
)


def test_rows_and_types_are_those_of_connection_execute(engine: Engine) -> None:
    with engine.begin() as conn:
        for i in range(3):
            _INSERT_EVENT.run(conn, {"event_id": f"ev-{i}", "created_at": NOW})
        conn.execute(insert(_ARMS), [{"arm_index": 0, "threshold": 0.5, "alpha": 2.5}])
    arms = select(_ARMS.c.threshold, _ARMS.c.alpha, _ARMS.c.beta)
    with engine.connect() as conn:
        since = {"since": NOW - dt.timedelta(seconds=1)}
        expected = [tuple(row) for row in conn.execute(_EVENTS_SINCE.statement, since)]
        assert _EVENTS_SINCE.all(conn, since) == expected
        assert [r[0] for r in expected] == ["ev-0", "ev-1"]  # the statement's own LIMIT 2
        assert expected[0][1] == NOW and expected[0][1].tzinfo is not None
        assert Prepared(arms).all(conn) == [(0.5, 2.5, 1.0)]
        (exists,) = Prepared(select(select(_EVENTS.c.event_id).exists())).scalars(conn)
        assert exists is True  # a bool, not SQLite's 1
        assert _EVENTS_SINCE.first(conn, {"since": NOW + dt.timedelta(days=1)}) is None


def test_the_orm_reads_back_what_a_prepared_insert_stored(engine: Engine) -> None:
    stored = Prepared(insert(_AUDIT))
    with engine.begin() as conn:
        stored.run(
            conn,
            {
                "actor": "U1",
                "action": "vote",
                "subject": "r1",
                "detail_json": "{}",
                "created_at": NOW,
            },
        )
        conn.execute(
            insert(_AUDIT),
            {
                "actor": "U2",
                "action": "vote",
                "subject": "r1",
                "detail_json": "{}",
                "created_at": NOW,
            },
        )
    with Session(engine) as session:
        rows = session.exec(sqlmodel_select(AuditEntry).order_by(_AUDIT.c.id)).all()
        assert [(r.actor, r.created_at) for r in rows] == [("U1", NOW), ("U2", NOW)]
    with engine.connect() as conn:  # stored in the same form: equal in SQL, not only in Python
        n = conn.execute(select(_AUDIT.c.id).where(_AUDIT.c.created_at == NOW)).all()
        assert len(n) == 2


def test_a_duplicate_key_raises_sqlalchemys_integrity_error(engine: Engine) -> None:
    with engine.begin() as conn:
        _INSERT_EVENT.run(conn, {"event_id": "ev", "created_at": NOW})
    with pytest.raises(IntegrityError), engine.begin() as conn:
        _INSERT_EVENT.run(conn, {"event_id": "ev", "created_at": NOW})
    with engine.connect() as conn:  # the failed transaction left the first row alone
        assert _EVENTS_SINCE.scalars(conn, {"since": NOW}) == ["ev"]


def test_bad_parameters_say_which_statement_and_which_value(engine: Engine) -> None:
    with engine.connect() as conn:
        with pytest.raises(TypeError, match=r"events since: no value for parameter 'since'"):
            _EVENTS_SINCE.all(conn, {})
        with pytest.raises(ValueError, match=r"insert event: columns \['created_at'\]"):
            _INSERT_EVENT.run(conn, {"event_id": "ev"})  # its default would not run
        expanding = _EVENTS.c.event_id.in_(bindparam("ids", expanding=True))
        with pytest.raises(ValueError, match="in list: expanding or post-compile parameters"):
            Prepared(select(_EVENTS).where(expanding), "in list").all(conn, {"ids": ["a"]})


def test_a_read_block_is_one_snapshot(engine: Engine) -> None:
    reader = read_only(engine)
    since = Prepared(_EVENTS_SINCE.statement)  # its first result has no rows
    with reader.connect() as conn:
        assert since.all(conn, {"since": NOW}) == []
        assert conn.in_transaction()  # begun as Connection.execute begins it
        with engine.begin() as writer:  # commits while the read block is open
            _INSERT_EVENT.run(writer, {"event_id": "late", "created_at": NOW})
        after = since.all(conn, {"since": NOW})
        assert after == [tuple(r) for r in conn.execute(since.statement, {"since": NOW})]
        # SQLite's snapshot holds for the block; PostgreSQL reads committed rows.
        assert after == ([] if conn.dialect.name == "sqlite" else [("late", NOW)])
    with reader.connect() as conn:
        assert since.all(conn, {"since": NOW}) == [("late", NOW)]


def test_run_returns_the_drivers_row_count(engine: Engine) -> None:
    forget = Prepared(
        update(_EVENTS).where(_EVENTS.c.event_id == bindparam("id")).values(created_at=NOW)
    )
    with engine.begin() as conn:
        _INSERT_EVENT.run(conn, {"event_id": "ev", "created_at": NOW - dt.timedelta(days=1)})
        assert forget.run(conn, {"id": "ev"}) == 1
        assert forget.run(conn, {"id": "other"}) == 0
        assert _EVENTS_SINCE.all(conn, {"since": NOW}) == [("ev", NOW)]


def test_cursor_events_see_what_connection_execute_would_send(engine: Engine) -> None:
    seen: list[tuple[str, Any]] = []

    def before(_c: Any, _cur: Any, statement: str, params: Any, *_: Any) -> None:
        seen.append((statement, params))

    def traced(_c: Any, _cur: Any, statement: str, params: Any, *_: Any) -> tuple[str, Any]:
        return statement + " /* traced */", params  # a retval=True listener rewrites it

    def after(_c: Any, _cur: Any, statement: str, params: Any, *_: Any) -> None:
        seen.append((statement, params))

    with engine.connect() as conn:
        event.listen(conn, "before_cursor_execute", before)
        conn.execute(_EVENTS_SINCE.statement, {"since": NOW}).all()
        _EVENTS_SINCE.all(conn, {"since": NOW})
        event.listen(conn, "before_cursor_execute", traced, retval=True)
        event.listen(conn, "after_cursor_execute", after)
        _EVENTS_SINCE.all(conn, {"since": NOW})
    core, prepared, rewritten, ran = seen
    assert prepared == core  # the same SQL and the same bound values
    assert rewritten == core and ran == (core[0] + " /* traced */", core[1])


def test_threads_that_first_use_a_statement_together_all_get_their_rows(engine: Engine) -> None:
    with engine.begin() as conn:
        for i in range(8):
            _INSERT_EVENT.run(conn, {"event_id": f"ev-{i}", "created_at": NOW + dt.timedelta(i)})
    fresh = Prepared(select(_EVENTS.c.event_id).where(_EVENTS.c.created_at == bindparam("at")))
    start = threading.Barrier(8)
    got: dict[int, list[str]] = {}
    errors: list[BaseException] = []

    def read(i: int) -> None:
        try:
            start.wait()
            for _ in range(20):
                with engine.connect() as conn:
                    got[i] = fresh.scalars(conn, {"at": NOW + dt.timedelta(i)})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=read, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert got == {i: [f"ev-{i}"] for i in range(8)}


def test_a_writer_that_waits_too_long_gets_sqlalchemys_operational_error(tmp_path: Any) -> None:
    """SQLite's BEGIN IMMEDIATE runs on the driver's connection (``bot.db.engine``); a
    writer that cannot get the lock in time still sees the error SQLAlchemy raises."""
    engine = make_engine(f"sqlite:///{tmp_path}/npo.db")
    with engine.begin() as setup:
        ProcessedEvent.metadata.create_all(setup)
    with engine.begin() as holder:
        holder.execute(insert(_EVENTS), {"event_id": "held", "created_at": NOW})
        with (
            pytest.raises(OperationalError, match="database is locked"),
            bounded_wait(engine, dt.timedelta(milliseconds=20)) as waiting,
            waiting.begin(),
        ):
            pass
        # Readers do not wait for the writer (BEGIN, not BEGIN IMMEDIATE): a reader that
        # waited would fail here after 20 ms instead of reading the last commit.
        with bounded_wait(read_only(engine), dt.timedelta(milliseconds=20)) as reader:
            assert reader.execute(select(_EVENTS.c.event_id)).all() == []
    engine.dispose()
