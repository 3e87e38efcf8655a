"""Statements of the recommendation path, built once: the single-valued part of a
decision's snapshot, storing a decision, attaching the posted message, and the reporter's
display preference."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import Connection

from bot.db.engine import table_of
from bot.db.feedback_rows import IS_CLAIMED
from bot.db.models import AuditEntry, Incident, OperatorPrefs, Recommendation
from bot.db.prepared import Prepared
from bot.db.state import LIVE_MODEL, READ_MONITOR

_RECS = table_of(Recommendation)
_PREFS = table_of(OperatorPrefs)
# Every recommendation runs these: prepared (``bot.db.prepared``).
_INSERT_INCIDENT = Prepared(insert(table_of(Incident)), "insert incident")
_INSERT_RECOMMENDATION = Prepared(insert(_RECS), "insert recommendation")
_INSERT_AUDIT = Prepared(insert(table_of(AuditEntry)), "insert audit")
_ATTACH = Prepared(
    update(_RECS)
    .where(_RECS.c.id == bindparam("rec_id"))
    .values(channel=bindparam("channel"), message_ts=bindparam("ts"), post_state="posted"),
    "attach message",
)
_VERBOSITY = select(_PREFS.c.verbosity).where(_PREFS.c.operator_id == bindparam("op"))
# Four single values a decision reads, as scalar subqueries of one statement: a round trip
# through the driver costs more than any of these lookups (they are all by key).
DECISION_SCALARS = Prepared(
    select(
        IS_CLAIMED.exists().label("claimed"),
        LIVE_MODEL.limit(1).scalar_subquery(),
        READ_MONITOR.scalar_subquery(),
        _VERBOSITY.scalar_subquery(),
    ),
    "decision scalars",
)


@dataclass(frozen=True, slots=True)
class DecisionScalars:
    claimed: bool  # the delivery was handled already
    live_model: int | None  # the model that gives priors, if a retrain was accepted
    monitor_json: str | None  # the meta-monitor's state document (None: none stored yet)
    verbosity: str  # the reporter's display preference ("": none)


def decision_scalars(conn: Connection, event_id: str | None, reporter: str) -> DecisionScalars:
    """The single-valued part of a decision's snapshot, in one statement."""
    row = DECISION_SCALARS.first(conn, {"id": event_id or "", "op": reporter})
    assert row is not None  # a select of scalar subqueries has one row
    claimed, live, monitor_json, verbosity = row
    return DecisionScalars(
        claimed=bool(event_id) and bool(claimed),
        live_model=None if live is None else int(live),
        monitor_json=monitor_json,
        verbosity=(verbosity or "") if reporter else "",
    )


def store_recommendation(
    conn: Connection,
    incident: dict[str, Any],
    recommendation: dict[str, Any],
    audit: dict[str, Any],
) -> None:
    _INSERT_INCIDENT.run(conn, incident)
    _INSERT_RECOMMENDATION.run(conn, recommendation)
    _INSERT_AUDIT.run(conn, audit)


def store_message_ts(conn: Connection, rec_id: str, channel: str, message_ts: str) -> None:
    _ATTACH.run(conn, {"rec_id": rec_id, "channel": channel, "ts": message_ts})


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
