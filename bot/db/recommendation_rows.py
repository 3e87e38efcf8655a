"""Statements of the recommendation path, built once: storing a decision, attaching the
posted message, and the reporter's display preference."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import Connection

from bot.db.engine import table_of
from bot.db.models import AuditEntry, Incident, OperatorPrefs, Recommendation

_RECS = table_of(Recommendation)
_PREFS = table_of(OperatorPrefs)
_INSERT_INCIDENT = insert(table_of(Incident))
_INSERT_RECOMMENDATION = insert(_RECS)
_INSERT_AUDIT = insert(table_of(AuditEntry))
_ATTACH = (
    update(_RECS)
    .where(_RECS.c.id == bindparam("rec_id"))
    .values(channel=bindparam("channel"), message_ts=bindparam("ts"), post_state="posted")
)
_VERBOSITY = select(_PREFS.c.verbosity).where(_PREFS.c.operator_id == bindparam("op"))


def store_recommendation(
    conn: Connection,
    incident: dict[str, Any],
    recommendation: dict[str, Any],
    audit: dict[str, Any],
) -> None:
    conn.execute(_INSERT_INCIDENT, incident)
    conn.execute(_INSERT_RECOMMENDATION, recommendation)
    conn.execute(_INSERT_AUDIT, audit)


def store_message_ts(conn: Connection, rec_id: str, channel: str, message_ts: str) -> None:
    conn.execute(_ATTACH, {"rec_id": rec_id, "channel": channel, "ts": message_ts})


def operator_verbosity(conn: Connection, operator_id: str) -> str | None:
    return conn.execute(_VERBOSITY, {"op": operator_id}).scalar_one_or_none()


def expire_open(conn: Connection, rec_ids: Sequence[str]) -> list[str]:
    """Close these recommendations as ``expired`` if they are still open; the ids closed."""
    if not rec_ids:
        return []
    still_open = [
        str(r)
        for r in conn.execute(
            select(_RECS.c.id).where(_RECS.c.id.in_(list(rec_ids)), _RECS.c.status == "open")
        ).scalars()
    ]
    if still_open:
        conn.execute(update(_RECS).where(_RECS.c.id.in_(still_open)).values(status="expired"))
    return still_open
