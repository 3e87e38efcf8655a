"""What every recommendation reads of the votes is answered from indexes (revision 0006):
the recent losses without scanning or sorting the table, a scenario's counts without
reading its rows; the revision goes down and up again cleanly."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic import command
from sqlalchemy import event, inspect
from sqlalchemy.engine import Connection

from bot.db.engine import make_engine
from bot.db.feedback_rows import recent_losses
from bot.db.migrate import alembic_config, current_revision, upgrade
from bot.db.scores import context_evidence, scenario_evidence
from core.scoring import ScoringConfig


def _plan(url: str, read: Callable[[Connection], object]) -> str:
    """SQLite's plan of the one statement ``read`` sends."""
    engine = make_engine(url)
    sent: list[tuple[str, Any]] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _seen(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            sent.append((statement, params))

    with engine.connect() as conn:
        read(conn)
        assert len(sent) == 1, sent
        statement, params = sent[0]
        raw = conn.connection.dbapi_connection
        assert raw is not None
        rows = raw.execute(f"EXPLAIN QUERY PLAN {statement}", params).fetchall()
    engine.dispose()
    return " | ".join(str(row[-1]) for row in rows)


def test_the_reads_of_a_recommendation_use_the_indexes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/npo.db"
    upgrade(url)
    config = ScoringConfig()
    recent = _plan(url, recent_losses)
    assert "ix_feedback_updated_at" in recent and "TEMP B-TREE" not in recent, recent
    context = _plan(url, lambda conn: context_evidence(conn, "k", config))
    assert "COVERING INDEX ix_feedback_scenario_live" in context, context
    keys = _plan(url, lambda conn: scenario_evidence(conn, [("pb-1", "k"), ("pb-2", "k")], config))
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
