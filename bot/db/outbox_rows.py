"""Statements of the inbox (incidents acknowledged, not yet decided) and the outbox
(recommendations stored, not yet posted). Each item is claimed with a lease, so a slow
worker keeps its item and a dead one's item is taken over by any replica, once."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import ColumnElement, bindparam, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from bot.db.engine import table_of
from bot.db.models import IncidentInbox, Recommendation
from bot.db.prepared import Prepared

_INBOX = table_of(IncidentInbox)
_RECS = table_of(Recommendation)


def _unheld(claimed_until: ColumnElement[Any]) -> ColumnElement[bool]:
    """Nobody holds the item: never claimed, or its lease ran out before ``now``."""
    return or_(claimed_until.is_(None), claimed_until < bindparam("now"))


_DONE = Prepared(  # every incident from Slack runs it
    update(_INBOX)
    .where(_INBOX.c.event_id == bindparam("id"), _INBOX.c.done_at.is_(None))
    .values(done_at=bindparam("now")),
    "mark decided",
)
_WAITING = (
    select(_INBOX.c.event_id, _INBOX.c.incident_json)
    .where(
        _INBOX.c.done_at.is_(None),
        _INBOX.c.received_at < bindparam("before"),
        _unheld(_INBOX.c.claimed_until),
    )
    .order_by(_INBOX.c.received_at)
    .limit(bindparam("limit"))
)
_CLAIM_INCIDENT = (
    update(_INBOX)
    .where(
        _INBOX.c.event_id == bindparam("id"),
        _INBOX.c.done_at.is_(None),
        _unheld(_INBOX.c.claimed_until),
    )
    .values(claimed_until=bindparam("until"))
)
_UNPOSTED = (
    select(_RECS.c.id)
    .where(_RECS.c.post_state == "pending", _unheld(_RECS.c.post_claimed_until))
    .order_by(_RECS.c.created_at)
    .limit(bindparam("limit"))
)
_CLAIM_POST = (
    update(_RECS)
    .where(
        _RECS.c.id == bindparam("rec"),
        _RECS.c.post_state == "pending",
        _unheld(_RECS.c.post_claimed_until),
    )
    .values(post_claimed_until=bindparam("until"))
)
_RELEASE_POST = (
    update(_RECS)
    .where(_RECS.c.id == bindparam("rec"), _RECS.c.post_state == "pending")
    .values(post_claimed_until=None)
)


def accept(conn: Connection, event_id: str, incident_json: str, now: dt.datetime) -> bool:
    """Put an acknowledged incident in the inbox; False if it is there already (a retry,
    possibly arriving at another replica at the same moment: the insert skips conflicts)."""
    row = {"event_id": event_id, "incident_json": incident_json, "received_at": now}
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(_INBOX).values(**row).on_conflict_do_nothing()
    return conn.execute(statement.returning(_INBOX.c.event_id)).first() is not None


def mark_decided(conn: Connection, event_id: str, now: dt.datetime) -> None:
    _DONE.run(conn, {"id": event_id, "now": now})


def claim_waiting(
    conn: Connection, now: dt.datetime, before: dt.datetime, lease: dt.timedelta, limit: int
) -> list[tuple[str, str]]:
    """Inbox items older than ``before`` that nobody holds, each claimed for ``lease``."""
    rows = conn.execute(_WAITING, {"now": now, "before": before, "limit": limit}).all()
    claimed = []
    for event_id, incident_json in rows:
        result = conn.execute(_CLAIM_INCIDENT, {"id": event_id, "now": now, "until": now + lease})
        if result.rowcount == 1:
            claimed.append((event_id, incident_json))
    return claimed


def claim_post(conn: Connection, rec_id: str, now: dt.datetime, lease: dt.timedelta) -> bool:
    result = conn.execute(_CLAIM_POST, {"rec": rec_id, "now": now, "until": now + lease})
    return result.rowcount == 1


def release_post(conn: Connection, rec_id: str) -> None:
    conn.execute(_RELEASE_POST, {"rec": rec_id})


def claim_unposted(
    conn: Connection, now: dt.datetime, lease: dt.timedelta, limit: int
) -> list[str]:
    """Ids of stored recommendations whose post nobody holds, each claimed for ``lease``."""
    ids = list(conn.execute(_UNPOSTED, {"now": now, "limit": limit}).scalars())
    return [str(rec_id) for rec_id in ids if claim_post(conn, str(rec_id), now, lease)]
