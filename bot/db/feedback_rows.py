"""Statements of the feedback path: claimed deliveries, the decisions votes refer to, and
the votes themselves. Built once and run on a plain connection, because every vote's
transaction runs them (see ``bot.db.state``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Text, bindparam, cast, null, select, union_all, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from bot.db.engine import table_of
from bot.db.models import Feedback, ProcessedEvent, Recommendation
from bot.db.prepared import Prepared

_EVENTS = table_of(ProcessedEvent)
_RECS = table_of(Recommendation)
_VOTES = table_of(Feedback)

# A claim is one statement: the insert that finds the id taken does nothing. On PostgreSQL
# a concurrent claim of the same id waits for the other transaction and then does nothing.
_CLAIM = {
    name: dialect.insert(_EVENTS)
    .on_conflict_do_nothing(index_elements=["event_id"])
    .returning(_EVENTS.c.event_id)  # a row back: claimed now (rowcount is -1 on psycopg)
    for name, dialect in (("sqlite", sqlite), ("postgresql", postgresql))
}
_CLAIM_ONE = {name: Prepared(claim, f"claim ({name})") for name, claim in _CLAIM.items()}
# Public: a decision's snapshot asks it as a subquery (``recommendation_rows``).
IS_CLAIMED = select(_EVENTS.c.event_id).where(_EVENTS.c.event_id == bindparam("id"))
_DECISIONS = select(_RECS.c.id, _RECS.c.decision_json).where(
    _RECS.c.id.in_(bindparam("ids", expanding=True))
)
# A batch of votes reads its decisions and who already voted on them in one statement: two
# key lookups glued by UNION ALL, each answered from its own index whatever the planner
# thinks of the vote table (a LEFT JOIN became a hash join over the whole table on
# PostgreSQL when one recommendation held most of a million votes: 210 ms a batch).
_DECISIONS_AND_VOTERS = union_all(
    _DECISIONS.add_columns(null().label("operator_id")),
    select(
        _VOTES.c.recommendation_id, cast(null(), Text).label("decision_json"), _VOTES.c.operator_id
    ).where(_VOTES.c.recommendation_id.in_(bindparam("ids", expanding=True))),
)
_VOTE = select(
    _VOTES.c.id,
    _VOTES.c.kind,
    _VOTES.c.label,
    _VOTES.c.weight,
    _VOTES.c.score,
    _VOTES.c.playbook_id,
    _VOTES.c.context_key,
    _VOTES.c.withdrawn,
    _VOTES.c.bandit_json,
).where(_VOTES.c.recommendation_id == bindparam("rec"), _VOTES.c.operator_id == bindparam("op"))
_WITHDRAW = (
    update(_VOTES)
    .where(_VOTES.c.id == bindparam("vote_id"))
    .values(withdrawn=True, updated_at=bindparam("now"))
)
_HISTORY = (
    select(_VOTES.c.kind, _VOTES.c.prior)
    .where(
        _VOTES.c.playbook_id == bindparam("pb"),
        _VOTES.c.context_key == bindparam("ctx"),
        _VOTES.c.withdrawn.is_(False),
    )
    .order_by(_VOTES.c.seq, _VOTES.c.id)
)
_RECENT_LOSSES = Prepared(  # every decision reads it
    select(_VOTES.c.loss)
    .where(_VOTES.c.withdrawn.is_(False))
    .order_by(_VOTES.c.updated_at.desc())
    .limit(bindparam("n")),
    "recent losses",
)


@dataclass(frozen=True, slots=True)
class StoredVote:
    """What replacing or withdrawing a vote needs to know of it."""

    id: int
    kind: str
    label: float | None
    weight: float
    score: float
    playbook_id: str
    context_key: str
    withdrawn: bool
    bandit_json: str  # what it added to the arms (empty when it added nothing)


def is_claimed(conn: Connection, event_id: str) -> bool:
    return conn.execute(IS_CLAIMED, {"id": event_id}).first() is not None


def claim_event(conn: Connection, event_id: str, now: dt.datetime) -> bool:
    """Mark a delivery handled; False if it already was (or a concurrent claim of the same
    id committed first)."""
    row = _CLAIM_ONE[conn.dialect.name].first(conn, {"event_id": event_id, "created_at": now})
    return row is not None  # every incident claims one: prepared


def claim_events(conn: Connection, event_ids: Collection[str], now: dt.datetime) -> set[str]:
    """Claim these deliveries in one statement; returns the ones claimed now (the others
    were handled already, or a concurrent claim committed first)."""
    if not event_ids:
        return set()
    rows = [{"event_id": e, "created_at": now} for e in sorted(set(event_ids))]
    return set(conn.execute(_CLAIM[conn.dialect.name], rows).scalars())


def decisions(conn: Connection, rec_ids: Collection[str]) -> dict[str, str]:
    """The stored decision JSON of each recommendation that exists (its arm is in it)."""
    rows = conn.execute(_DECISIONS, {"ids": sorted(rec_ids)})
    return {str(row.id): str(row.decision_json) for row in rows}


def decisions_and_voters(
    conn: Connection, rec_ids: Collection[str]
) -> tuple[dict[str, str], set[tuple[str, str]]]:
    """``decisions`` of these recommendations, and (recommendation id, operator id) of
    every vote stored on them, in one query."""
    found: dict[str, str] = {}
    voted: set[tuple[str, str]] = set()
    for rec, decision_json, operator in conn.execute(
        _DECISIONS_AND_VOTERS, {"ids": sorted(rec_ids)}
    ):
        if operator is None:
            found[str(rec)] = str(decision_json)
        else:
            voted.add((str(rec), str(operator)))
    return found, voted


def stored_vote(conn: Connection, rec_id: str, operator_id: str) -> StoredVote | None:
    row = conn.execute(_VOTE, {"rec": rec_id, "op": operator_id}).first()
    return StoredVote(*row) if row is not None else None


def replace_vote(conn: Connection, vote_id: int, fields: dict[str, Any]) -> None:
    conn.execute(update(_VOTES).where(_VOTES.c.id == vote_id).values(**fields))


def withdraw_vote(conn: Connection, vote_id: int, now: dt.datetime) -> None:
    conn.execute(_WITHDRAW, {"vote_id": vote_id, "now": now})


def scenario_history(
    conn: Connection, playbook_id: str, context_key: str
) -> list[tuple[str, float]]:
    """(kind, model prior at the time) of the scenario's current votes, in the order they
    were applied (a replaced vote counts where its new form was applied)."""
    rows = conn.execute(_HISTORY, {"pb": playbook_id, "ctx": context_key})
    return [(kind, prior) for kind, prior in rows]


def recent_losses(conn: Connection, n: int = 20) -> list[float]:
    """The alignment losses of the last ``n`` current votes, oldest first."""
    return [float(x) for x in reversed(_RECENT_LOSSES.scalars(conn, {"n": n}))]
