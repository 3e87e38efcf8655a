"""What every recommendation reads of the votes is answered from indexes (revision 0006):
the recent losses without scanning or sorting the table, a scenario's counts without
reading its rows; the revision goes down and up again cleanly. A batch of votes reads its
decisions and earlier voters by key, also beside one recommendation with most votes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic import command
from sqlalchemy import event, inspect
from sqlalchemy.engine import Connection

from bench.tick import fill
from bot.db.engine import make_engine
from bot.db.feedback_rows import decisions_and_voters, recent_losses
from bot.db.migrate import alembic_config, current_revision, upgrade
from bot.db.scores import context_evidence, scenario_evidence
from bot.service import FeedbackInput, IncidentInput
from core.feedback import FeedbackKind
from core.scoring import ScoringConfig
from testkit.fakes import FakeHit, scripted_service


def _plan(conn: Connection, read: Callable[[Connection], object]) -> str:
    """The database's plan of the one SELECT ``read`` sends (SQLite or PostgreSQL)."""
    sent: list[tuple[str, Any]] = []

    def _seen(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            sent.append((statement, params))

    event.listen(conn, "before_cursor_execute", _seen)
    try:
        read(conn)
    finally:
        event.remove(conn, "before_cursor_execute", _seen)
    assert len(sent) == 1, sent
    statement, params = sent[0]
    sqlite = conn.dialect.name == "sqlite"
    raw = conn.connection.dbapi_connection
    assert raw is not None
    cur = raw.cursor()
    try:
        cur.execute(f"{'EXPLAIN QUERY PLAN' if sqlite else 'EXPLAIN'} {statement}", params)
        return " | ".join(str(row[-1] if sqlite else row[0]) for row in cur.fetchall())
    finally:
        cur.close()


def test_the_reads_of_a_recommendation_use_the_indexes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/npo.db"
    upgrade(url)
    config = ScoringConfig()
    engine = make_engine(url)
    with engine.connect() as conn:
        recent = _plan(conn, recent_losses)
        context = _plan(conn, lambda c: context_evidence(c, "k", config))
        keys = _plan(conn, lambda c: scenario_evidence(c, [("pb-1", "k"), ("pb-2", "k")], config))
    engine.dispose()
    assert "ix_feedback_updated_at" in recent and "TEMP B-TREE" not in recent, recent
    assert "COVERING INDEX ix_feedback_scenario_live" in context, context
    assert "COVERING INDEX ix_feedback_scenario_live" in keys, keys


def test_revision_0006_goes_down_and_up(db_url: str) -> None:
    upgrade(db_url)
    command.downgrade(alembic_config(db_url), "0005")
    engine = make_engine(db_url)
    names = {ix["name"] for ix in inspect(engine).get_indexes("feedback")}
    engine.dispose()
    assert "ix_feedback_scenario" in names
    assert not {"ix_feedback_scenario_live", "ix_feedback_updated_at"} & names
    upgrade(db_url)
    assert current_revision(db_url) == "0006"
    engine = make_engine(db_url)
    names = {ix["name"] for ix in inspect(engine).get_indexes("feedback")}
    engine.dispose()
    assert {"ix_feedback_scenario_live", "ix_feedback_updated_at"} <= names
    assert "ix_feedback_scenario" not in names


def test_a_batch_reads_its_decisions_and_voters_by_key_beside_a_skewed_history(
    db_url: str,
) -> None:
    """One recommendation holding most votes (an old, busy incident) must not turn a
    batch's read into a scan of the vote table: on PostgreSQL a LEFT JOIN did (a hash join
    over every vote, 210 ms a batch at a million votes)."""
    upgrade(db_url)
    engine = make_engine(db_url)
    service = scripted_service(engine, FakeHit("pb-1", 0.8))
    busy = service.recommend(IncidentInput("an old incident", "test")).recommendation_id
    recs = [
        service.recommend(IncidentInput(f"incident {i}", "test")).recommendation_id
        for i in range(8)
    ]
    fill(engine, 50_000, busy)  # bulk votes on one recommendation, then ANALYZE
    service.record_feedback(FeedbackInput(recs[0], "U1", FeedbackKind.LIKE, "ev-1"))
    service.record_feedback(FeedbackInput(recs[0], "U2", FeedbackKind.LIKE, "ev-2"))
    with engine.connect() as conn:
        found, voted = decisions_and_voters(conn, [*recs, "no-such-recommendation"])
        assert set(found) == set(recs) and voted == {(recs[0], "U1"), (recs[0], "U2")}
        plan = _plan(conn, lambda c: decisions_and_voters(c, recs))
    engine.dispose()
    # no full scan of the votes: PostgreSQL's "Seq Scan on feedback", SQLite's "SCAN feedback"
    assert "Seq Scan on feedback" not in plan and "SCAN feedback" not in plan, plan
