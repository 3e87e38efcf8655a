"""Statements of the follow-ups of a decision: approvals (a second engineer's yes or no)
and deferral jobs (judge a deferred candidate again later). Each changes state with a
conditional update, so a second click, a Slack retry or a second replica changes nothing;
a due job is claimed with a lease like the outbox's posts (``outbox_rows``)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, insert, or_, select, update
from sqlalchemy.engine import Connection

from bot.db.engine import table_of
from bot.db.models import Approval, DeferralJob, Recommendation
from core.codec import decision_from_dict, decision_to_dict
from core.decision import Decision, Outcome

_APPROVALS = table_of(Approval)
_JOBS = table_of(DeferralJob)
_RECS = table_of(Recommendation)


def open_follow_up(
    conn: Connection,
    *,
    recommendation_id: str,
    decision: Decision,
    requester: str,
    incident_json: str,
    channel: str,
    thread_ts: str,
    now: dt.datetime,
) -> None:
    """An approval for a decision awaiting a second engineer, a job for a deferred one;
    nothing for any other outcome. In the transaction that stores the decision."""
    pending = decision.pending
    if pending is None:
        return
    if decision.outcome is Outcome.NEEDS_APPROVAL:
        open_approval(conn, recommendation_id, pending.playbook_id, requester, now)
    elif decision.outcome is Outcome.DEFERRED and decision.deferral is not None:
        conn.execute(
            insert(_JOBS),
            {
                "recommendation_id": recommendation_id,
                "playbook_id": pending.playbook_id,
                "incident_json": incident_json,
                "channel": channel,
                "thread_ts": thread_ts,
                "due_at": decision.deferral.at,
                "attempts": 0,
                "max_attempts": decision.deferral.max_attempts,
                "state": "waiting",
                "outcome": "",
                "claimed_until": None,
                "created_at": now,
                "updated_at": now,
            },
        )


def open_approval(
    conn: Connection, recommendation_id: str, playbook_id: str, requester: str, now: dt.datetime
) -> None:
    conn.execute(
        insert(_APPROVALS),
        {
            "recommendation_id": recommendation_id,
            "playbook_id": playbook_id,
            "requester": requester,
            "state": "pending",
            "decided_by": None,
            "reason": "",
            "created_at": now,
            "decided_at": None,
        },
    )


@dataclass(frozen=True, slots=True)
class ApprovalRow:
    recommendation_id: str
    playbook_id: str
    requester: str
    state: str
    decided_by: str | None
    reason: str


def approval(conn: Connection, recommendation_id: str) -> ApprovalRow | None:
    row = conn.execute(
        select(
            _APPROVALS.c.recommendation_id,
            _APPROVALS.c.playbook_id,
            _APPROVALS.c.requester,
            _APPROVALS.c.state,
            _APPROVALS.c.decided_by,
            _APPROVALS.c.reason,
        ).where(_APPROVALS.c.recommendation_id == recommendation_id)
    ).first()
    return ApprovalRow(*row) if row else None


def decide_approval(
    conn: Connection,
    recommendation_id: str,
    state: str,
    decided_by: str,
    reason: str,
    now: dt.datetime,
) -> bool:
    """Pending → ``state`` (approved or rejected); False when it was decided already."""
    result = conn.execute(
        update(_APPROVALS)
        .where(
            _APPROVALS.c.recommendation_id == recommendation_id,
            _APPROVALS.c.state == "pending",
        )
        .values(state=state, decided_by=decided_by, reason=reason, decided_at=now)
    )
    return result.rowcount == 1


def stored_decision(conn: Connection, recommendation_id: str) -> Decision | None:
    text = conn.execute(
        select(_RECS.c.decision_json).where(_RECS.c.id == recommendation_id)
    ).scalar()
    return decision_from_dict(json.loads(text)) if text else None


def posted_message(conn: Connection, recommendation_id: str) -> str:
    """The ts of the recommendation's own message ("" until it is posted)."""
    ts = conn.execute(select(_RECS.c.message_ts).where(_RECS.c.id == recommendation_id)).scalar()
    return str(ts or "")


def store_decision(conn: Connection, recommendation_id: str, decision: Decision) -> None:
    """Replace a stored decision by what became of it (approved, re-evaluated): the vote
    path then sees the candidate as surfaced exactly when it was recommended."""
    chosen = decision.chosen.playbook_id if decision.chosen else None
    conn.execute(
        update(_RECS)
        .where(_RECS.c.id == recommendation_id)
        .values(
            decision_json=json.dumps(decision_to_dict(decision)),
            outcome=decision.outcome.value,
            playbook_id=chosen,
            spe_verdict=decision.explanation.compliance.verdict.value,
        )
    )


def awaiting_or_recent(
    conn: Connection, recommendation_ids: Sequence[str], cutoff: dt.datetime
) -> set[str]:
    """Of these recommendations, those nobody could judge before ``cutoff``: still awaiting
    an approval or a window, or surfaced by an approval or a re-evaluation after it. The
    expiry of unanswered recommendations leaves them alone."""
    if not recommendation_ids:
        return set()
    ids = list(recommendation_ids)
    waiting = conn.execute(
        select(_RECS.c.id).where(
            _RECS.c.id.in_(ids),
            _RECS.c.outcome.in_((Outcome.NEEDS_APPROVAL.value, Outcome.DEFERRED.value)),
        )
    ).scalars()
    approved = conn.execute(
        select(_APPROVALS.c.recommendation_id).where(
            _APPROVALS.c.recommendation_id.in_(ids), _APPROVALS.c.decided_at >= cutoff
        )
    ).scalars()
    judged_again = conn.execute(
        select(_JOBS.c.recommendation_id).where(
            _JOBS.c.recommendation_id.in_(ids), _JOBS.c.updated_at >= cutoff
        )
    ).scalars()
    return {str(i) for i in (*waiting, *approved, *judged_again)}


# -- deferral jobs ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DueJob:
    recommendation_id: str
    playbook_id: str
    incident_json: str
    channel: str
    thread_ts: str
    attempts: int
    max_attempts: int
    claimed_until: dt.datetime


_UNHELD = or_(_JOBS.c.claimed_until.is_(None), _JOBS.c.claimed_until < bindparam("now"))
_DUE = (
    select(_JOBS.c.recommendation_id)
    .where(_JOBS.c.state == "waiting", _JOBS.c.due_at <= bindparam("now"), _UNHELD)
    .order_by(_JOBS.c.due_at)
    .limit(bindparam("limit"))
)
_CLAIM = (
    update(_JOBS)
    .where(
        _JOBS.c.recommendation_id == bindparam("rec"),
        _JOBS.c.state == "waiting",
        _JOBS.c.due_at <= bindparam("now"),
        _UNHELD,
    )
    .values(claimed_until=bindparam("until"))
)


def claim_due(conn: Connection, now: dt.datetime, lease: dt.timedelta, limit: int) -> list[DueJob]:
    """Jobs due by ``now`` that nobody holds, each claimed for ``lease``: of two replicas
    claiming the same job, the second's conditional update matches no row."""
    until = now + lease
    ids = [str(i) for i in conn.execute(_DUE, {"now": now, "limit": limit}).scalars()]
    claimed = [
        i for i in ids if conn.execute(_CLAIM, {"rec": i, "now": now, "until": until}).rowcount == 1
    ]
    if not claimed:
        return []
    rows = conn.execute(
        select(
            _JOBS.c.recommendation_id,
            _JOBS.c.playbook_id,
            _JOBS.c.incident_json,
            _JOBS.c.channel,
            _JOBS.c.thread_ts,
            _JOBS.c.attempts,
            _JOBS.c.max_attempts,
        ).where(_JOBS.c.recommendation_id.in_(claimed))
    ).all()
    by_id = {str(r[0]): r for r in rows}
    return [DueJob(*by_id[i], claimed_until=until) for i in claimed if i in by_id]


def _held(job: DueJob) -> Any:
    """The job is still ours: our lease, not one a later claimer took over."""
    return (_JOBS.c.recommendation_id == job.recommendation_id) & (
        _JOBS.c.claimed_until == job.claimed_until
    )


def finish_job(conn: Connection, job: DueJob, state: str, outcome: str, now: dt.datetime) -> bool:
    """The job is done (or gave up) after its outcome was posted; False if it was not ours."""
    result = conn.execute(
        update(_JOBS)
        .where(_held(job))
        .values(
            state=state,
            outcome=outcome,
            attempts=job.attempts + 1,
            claimed_until=None,
            updated_at=now,
        )
    )
    return result.rowcount == 1


def postpone_job(conn: Connection, job: DueJob, due_at: dt.datetime, now: dt.datetime) -> bool:
    """Still deferred: wait until ``due_at``, one attempt used."""
    result = conn.execute(
        update(_JOBS)
        .where(_held(job))
        .values(
            due_at=due_at,
            attempts=job.attempts + 1,
            outcome=Outcome.DEFERRED.value,
            claimed_until=None,
            updated_at=now,
        )
    )
    return result.rowcount == 1


def release_job(conn: Connection, job: DueJob) -> None:
    """Give a claimed job back after a failed attempt (Slack down): the next run retries."""
    conn.execute(update(_JOBS).where(_held(job)).values(claimed_until=None))
