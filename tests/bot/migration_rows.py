"""Rows written with plain SQL, for tests that migrate a database holding data: the
models follow the newest revision, so an older schema is filled by hand."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import text
from sqlalchemy.engine import Connection


def insert_decision(
    conn: Connection, at: dt.datetime, outcome: str, playbook_id: str | None, verdict: str
) -> None:
    """Incident ``i1`` and its posted recommendation ``r1``."""
    conn.execute(
        text(
            "INSERT INTO incident (id, source, channel, thread_ts, reporter, text, "
            "scenario_json, context_key, created_at) VALUES "
            "('i1', 'slack', 'C1', '1.0', 'U1', 'x', '{}', 'k', :t)"
        ),
        {"t": at},
    )
    conn.execute(
        text(
            "INSERT INTO recommendation (id, incident_id, outcome, playbook_id, score, "
            "threshold, arm_index, propensity, policy, spe_verdict, decision_json, channel, "
            "message_ts, status, post_state, created_at) VALUES ('r1', 'i1', :outcome, "
            ":pb, 0.8, 0.5, 0, 1.0, 'thompson', :verdict, '{}', 'C1', '1.0', "
            "'open', 'posted', :t)"
        ),
        {"t": at, "outcome": outcome, "pb": playbook_id, "verdict": verdict},
    )
