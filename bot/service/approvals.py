"""The approval path: a candidate the policies let through only with a second engineer's
approval (``needs_approval``) waits until someone allowed to approve, who is not the person
who asked, approves it (it becomes a recommendation, surfaced for learning) or rejects it
with a reason (an override of that candidate, stored as feedback).

Each approval changes state once (a conditional update): a second click, a Slack retry or
a second replica finds it decided and changes nothing. Refusals are audited.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.engine import Connection

from bot.db.follow_up_rows import approval, decide_approval, store_decision, stored_decision
from bot.db.state import audit
from bot.service.types import FeedbackInput
from core.decision import Decision, approved
from core.feedback import FeedbackKind

if TYPE_CHECKING:
    from bot.service.facade import NPOService

log = logging.getLogger(__name__)


class ApprovalStatus(enum.StrEnum):
    APPROVED = "approved"
    REJECTED = "rejected"
    ALREADY_DECIDED = "already_decided"  # by this click's earlier delivery or someone else
    NOT_AN_APPROVER = "not_an_approver"
    OWN_REQUEST = "own_request"  # the requester may not approve their own incident
    UNKNOWN = "unknown"  # no approval is waiting for this recommendation
    NO_REASON = "no_reason"  # a rejection says why


REFUSED = frozenset(
    {ApprovalStatus.NOT_AN_APPROVER, ApprovalStatus.OWN_REQUEST, ApprovalStatus.NO_REASON}
)


@dataclass(frozen=True, slots=True)
class ApprovalResult:
    status: ApprovalStatus
    decision: Decision | None = None  # the stored decision after the change
    decided_by: str | None = None
    reason: str = ""
    state: str = ""  # of the approval: pending, approved or rejected
    playbook_id: str | None = None  # the candidate it is about

    @property
    def changed(self) -> bool:
        return self.status in (ApprovalStatus.APPROVED, ApprovalStatus.REJECTED)


class Approvers:
    """Who may approve: the configured ``NPO_APPROVER_USERS``, or (none configured)
    everyone allowed to override."""

    def __init__(self, users: Collection[str], may_override: Callable[[str], bool]) -> None:
        self._users = frozenset(users)
        self._may_override = may_override

    def may_approve(self, user: str) -> bool:
        return user in self._users if self._users else self._may_override(user)


def refusal(
    service: NPOService, recommendation_id: str, user: str, allowed: bool, action: str
) -> ApprovalStatus | None:
    """Why ``user`` may not ``action`` (approve or reject) this one, audited; None if they
    may (or there is nothing waiting: the use case itself says so). Read before the reject
    modal opens, so a refused engineer is told at once instead of after typing a reason."""
    now = service.clock()
    with service.uow.write() as conn:
        row = approval(conn, recommendation_id)
        if row is None:
            return None
        why = _refusal(row.requester, user, allowed)
        if why is not None:
            _audit_refusal(conn, user, action, recommendation_id, why, row.playbook_id, now)
        return why


def _refusal(requester: str, user: str, allowed: bool) -> ApprovalStatus | None:
    if not allowed:
        return ApprovalStatus.NOT_AN_APPROVER
    if requester and user == requester:
        return ApprovalStatus.OWN_REQUEST
    return None


def _audit_refusal(
    conn: Connection,
    user: str,
    action: str,
    recommendation_id: str,
    why: ApprovalStatus,
    playbook_id: str,
    now: dt.datetime,
) -> None:
    detail = {"why": why.value, "playbook": playbook_id}
    audit(conn, user, f"approval:{action}:refused", recommendation_id, detail, now)


def approve(
    service: NPOService, recommendation_id: str, user: str, allowed: bool
) -> ApprovalResult:
    """``user`` approves the waiting candidate; ``allowed``: whether they may approve."""
    return _decide(service, recommendation_id, user, allowed, "approved", "")


def reject(
    service: NPOService, recommendation_id: str, user: str, allowed: bool, reason: str
) -> ApprovalResult:
    """``user`` rejects the waiting candidate with ``reason``: stored as their override of
    it (feedback: who, when, why), which also asks for a controlled retrain."""
    reason = reason.strip()
    result = _decide(service, recommendation_id, user, allowed, "rejected", reason)
    mine = result.state == "rejected" and result.decided_by == user
    if result.status is ApprovalStatus.REJECTED or (
        result.status is ApprovalStatus.ALREADY_DECIDED and mine
    ):
        # Also when this rejection was stored before (a retried submission): the vote has
        # one event id, so it is stored once, even if the first attempt died in between.

        service.record_feedback(
            FeedbackInput(
                recommendation_id,
                user,
                FeedbackKind.OVERRIDE,
                f"approval:reject:{recommendation_id}",
                source="approval",
                reason=result.reason,
                playbook_id=result.playbook_id,
            )
        )
    return result


def _decide(
    service: NPOService,
    recommendation_id: str,
    user: str,
    allowed: bool,
    state: str,
    reason: str,
) -> ApprovalResult:
    now = service.clock()
    action = "approve" if state == "approved" else "reject"
    with service.uow.write() as conn:
        row = approval(conn, recommendation_id)
        if row is None:
            return ApprovalResult(ApprovalStatus.UNKNOWN)
        why = _refusal(row.requester, user, allowed)
        if why is None and state == "rejected" and not reason:
            why = ApprovalStatus.NO_REASON
        if why is not None:
            _audit_refusal(conn, user, action, recommendation_id, why, row.playbook_id, now)
            return ApprovalResult(why, decided_by=row.decided_by, state=row.state)
        if not decide_approval(conn, recommendation_id, state, user, reason, now):
            return ApprovalResult(
                ApprovalStatus.ALREADY_DECIDED,
                decided_by=row.decided_by,
                reason=row.reason,
                state=row.state,
                playbook_id=row.playbook_id,
            )
        decision = stored_decision(conn, recommendation_id)
        if decision is None:
            raise LookupError(f"approval of {recommendation_id}: its decision is gone")
        if state == "approved":
            decision = approved(decision, user, now)
            store_decision(conn, recommendation_id, decision)
        audit(
            conn,
            user,
            f"approval:{action}",
            recommendation_id,
            {"playbook": row.playbook_id, "reason": reason, "requester": row.requester},
            now,
        )
    status = ApprovalStatus.APPROVED if state == "approved" else ApprovalStatus.REJECTED
    return ApprovalResult(status, decision, user, reason, state, row.playbook_id)
