"""Upgrading a database that already holds votes, a live model and a monitor document."""

from __future__ import annotations

import datetime as dt
import json

from sqlalchemy import text

from bot.db.engine import make_engine
from bot.db.migrate import upgrade


def test_upgrade_keeps_history_and_turns_tallies_into_watermarks(db_url: str) -> None:
    upgrade(db_url, "0001")
    engine = make_engine(db_url)
    t0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO incident (id, source, channel, thread_ts, reporter, text, "
                "scenario_json, context_key, created_at) VALUES "
                "('i1', 'slack', 'C1', '', 'U1', 'x', '{}', 'k', :t)"
            ),
            {"t": t0},
        )
        conn.execute(
            text(
                "INSERT INTO recommendation (id, incident_id, outcome, playbook_id, score, "
                "threshold, arm_index, propensity, policy, spe_verdict, decision_json, channel, "
                "message_ts, status, created_at) VALUES ('r1', 'i1', 'recommend', 'pb', 0.8, "
                "0.5, 0, 1.0, 'thompson', 'allow', '{}', 'C1', '1.0', 'judged', :t)"
            ),
            {"t": t0},
        )
        for i in range(1, 4):
            conn.execute(
                text(
                    "INSERT INTO feedback (recommendation_id, playbook_id, context_key, "
                    "operator_id, kind, label, weight, score, prior, similarity, context_json, "
                    "loss, reason, source, source_event_id, withdrawn, created_at, updated_at) "
                    "VALUES ('r1', 'pb', 'k', :op, 'like', 1.0, 1.0, 0.8, 0.5, 0.8, '{}', 0.2, "
                    "'', 'button', :ev, false, :t, :t)"
                ),
                {"op": f"U{i}", "ev": f"e{i}", "t": t0 + dt.timedelta(minutes=i)},
            )
        conn.execute(
            text(
                "INSERT INTO modelversion (trained_on, live, accepted, metrics_json, "
                "weights_json, created_at) VALUES (2, true, true, '{}', '{}', :t)"
            ),
            {"t": t0 + dt.timedelta(minutes=2, seconds=30)},
        )
        conn.execute(
            text(
                "INSERT INTO audit_log (actor, action, subject, detail_json, created_at) "
                "VALUES ('U9', 'playbook:resume', 'pb', '{}', :t)"
            ),
            {"t": t0 + dt.timedelta(minutes=1, seconds=30)},
        )
        conn.execute(
            text(
                "INSERT INTO banditarm (arm_index, threshold, alpha, beta) VALUES "
                "(0, 0.5, 4.0, 1.0), (1, 0.9, 1.0, 1.0)"
            )
        )
        old = {"labels_since_retrain": 1, "paused": ["other"], "ewma": 0.2}
        conn.execute(
            text("INSERT INTO monitor_state (id, state_json, updated_at) VALUES (1, :s, :t)"),
            {"s": json.dumps(old), "t": t0},
        )
    upgrade(db_url, "0002")
    with engine.connect() as conn:
        seqs = [r[0] for r in conn.execute(text("SELECT seq FROM feedback ORDER BY id"))]
        clock = conn.execute(text("SELECT step FROM learning_clock")).scalar_one()
        upto = conn.execute(text("SELECT trained_upto FROM modelversion")).scalar_one()
        doc = json.loads(conn.execute(text("SELECT state_json FROM monitor_state")).scalar_one())
        posted = conn.execute(text("SELECT post_state FROM recommendation")).scalar_one()
        deltas = [json.loads(r[0]) for r in conn.execute(text("SELECT bandit_json FROM feedback"))]
    engine.dispose()
    assert seqs == [1, 2, 3]  # votes keep their order as learning steps
    assert clock == 3
    assert upto == 2  # the model saw the votes stored before it
    assert doc == {"retrained_at": 2, "paused": ["other"], "resumed_at": {"pb": 1}}
    assert posted == "posted"  # old recommendations are never posted again
    # Each like cleared arm 0 (score 0.8 ≥ 0.5): what the old code added there, to take back.
    assert deltas == [{"arms": [0.5, 0.9], "alpha": [1.0, 0.0], "beta": [0.0, 0.0], "step": 3}] * 3
    # 0003: the arms learn utility now; acceptance counts restart from the prior, audited,
    # and no old vote takes anything back from the new arms.
    upgrade(db_url)
    with engine.connect() as conn:
        deltas = [r[0] for r in conn.execute(text("SELECT bandit_json FROM feedback"))]
        arms = conn.execute(text("SELECT COUNT(*) FROM banditarm")).scalar_one()
        reset = conn.execute(
            text("SELECT COUNT(*) FROM audit_log WHERE action = 'arms:reset'")
        ).scalar_one()
    engine.dispose()
    assert deltas == ["{}"] * 3
    assert (arms, reset) == (0, 1)
