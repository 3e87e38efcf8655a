"""Revision 0005 (the scenario code of each vote) on a database that already holds votes:
every stored vote gets the code the vote path would have written, and the tick reads
them by it; the revision goes down and up again cleanly."""

from __future__ import annotations

import datetime as dt
import json

from alembic import command
from sqlalchemy import inspect, text

from bot.db.engine import make_engine, read_only
from bot.db.migrate import alembic_config, current_revision, upgrade
from bot.db.scenario_code import scenario_hash
from bot.db.vote_log import _coded_rows
from tests.bot.migration_rows import insert_decision

_VOTE = (
    "INSERT INTO feedback (recommendation_id, playbook_id, context_key, operator_id, kind, "
    "label, weight, score, prior, similarity, context_json, loss, reason, source, "
    "source_event_id, withdrawn, seq, bandit_json, created_at, updated_at) VALUES "
    "('r1', :pb, 'k', :op, :kind, NULL, 1.0, 0.5, 0.5, 0.7, :ctx, 0.1, '', 'button', :ev, "
    ":withdrawn, :seq, '{}', :t, :t)"
)


def test_upgrade_to_0005_codes_every_stored_vote(db_url: str) -> None:
    upgrade(db_url, "0004")
    engine = make_engine(db_url)
    t0 = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)
    contexts = [json.dumps({"component": "link"}), json.dumps({"component": "server"})]
    with engine.begin() as conn:
        insert_decision(conn, t0, "recommend", "pb-1", "allow")
        for i in range(12):
            conn.execute(
                text(_VOTE),
                {
                    "pb": f"pb-{i % 3}" if i % 4 else "",
                    "op": f"U{i}",
                    "kind": ["like", "override", "neutral"][i % 3],
                    "ctx": contexts[i % 2],
                    "ev": f"e{i}",
                    "withdrawn": i == 5,
                    "seq": i + 1,
                    "t": t0,
                },
            )
    upgrade(db_url, "0005")
    assert current_revision(db_url) == "0005"
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT kind, playbook_id, context_json, scenario_hash FROM feedback")
        ).all()
    assert len(rows) == 12
    assert all(code == scenario_hash(kind, pb, ctx) for kind, pb, ctx, code in rows)
    with read_only(engine).connect() as conn:
        coded = _coded_rows(conn)
    assert coded is not None and len(coded[0][0]) == 11  # the withdrawn vote is not live
    engine.dispose()

    command.downgrade(alembic_config(db_url), "0004")
    engine = make_engine(db_url)
    assert "scenario_hash" not in {c["name"] for c in inspect(engine).get_columns("feedback")}
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM feedback")).scalar_one() == 12
    engine.dispose()
    upgrade(db_url, "0005")
    assert current_revision(db_url) == "0005"
