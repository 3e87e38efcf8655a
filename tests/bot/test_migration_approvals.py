"""Revision 0004 (approvals, deferral jobs) on a database that already holds decisions: the
old rows stay as they were, the new tables take follow-ups of them, and the revision goes
down and up again cleanly."""

from __future__ import annotations

import datetime as dt

from alembic import command
from sqlalchemy import inspect, text

from bot.db.engine import make_engine
from bot.db.migrate import alembic_config, current_revision, upgrade
from tests.bot.migration_rows import insert_decision


def test_upgrade_to_0004_keeps_decisions_and_follow_ups_attach_to_them(db_url: str) -> None:
    upgrade(db_url, "0003")
    engine = make_engine(db_url)
    t0 = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)
    with engine.begin() as conn:
        insert_decision(conn, t0, "blocked", None, "needs_approval")
    upgrade(db_url, "0004")
    assert current_revision(db_url) == "0004"
    with engine.begin() as conn:
        old = conn.execute(text("SELECT outcome, spe_verdict FROM recommendation")).one()
        assert tuple(old) == ("blocked", "needs_approval")  # nobody can act on it: unchanged
        for table in ("approval", "deferral_job"):
            assert conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one() == 0
        conn.execute(
            text(
                "INSERT INTO approval (recommendation_id, playbook_id, requester, state, "
                "decided_by, reason, created_at, decided_at) VALUES "
                "('r1', 'pb', 'U1', 'pending', NULL, '', :t, NULL)"
            ),
            {"t": t0},
        )
        conn.execute(
            text(
                "INSERT INTO deferral_job (recommendation_id, playbook_id, incident_json, "
                "channel, thread_ts, due_at, attempts, max_attempts, state, outcome, "
                "claimed_until, created_at, updated_at) VALUES ('r1', 'pb', '{}', 'C1', '1.0', "
                ":t, 0, 5, 'waiting', '', NULL, :t, :t)"
            ),
            {"t": t0},
        )
    indexes = {i["name"] for i in inspect(engine).get_indexes("deferral_job")}
    assert {"ix_deferral_job_due_at", "ix_deferral_job_state"} <= indexes
    engine.dispose()

    command.downgrade(alembic_config(db_url), "0003")
    engine = make_engine(db_url)
    names = set(inspect(engine).get_table_names())
    assert "approval" not in names and "deferral_job" not in names
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM recommendation")).scalar_one() == 1
    engine.dispose()
    upgrade(db_url, "0004")
    assert current_revision(db_url) == "0004"
