"""The approval path through the service: a needs-approval candidate waits for a second
engineer; the requester and non-approvers are refused (audited); an approval makes it a
recommendation that votes then treat as surfaced; a rejection is an override with its
reason; a second click changes nothing."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bot.console.chat import run_console
from bot.db.models import Approval, AuditEntry, Feedback, Recommendation, RetrainRequest
from bot.service import FeedbackInput, FeedbackStatus, IncidentInput, NPOService
from bot.service.approvals import ApprovalStatus, approve, reject
from core.bandit import BanditConfig
from core.decision import Outcome
from core.feedback import FeedbackKind
from core.npo import NPOConfig, ThresholdMode
from core.policy import Verdict
from tests.fakes import FakeHit, FakeRetriever, ScriptedSPE

NOW = dt.datetime(2026, 12, 1, 3, tzinfo=dt.UTC)
TEXT = "CRC errors on leaf-12:eth1/3 severity=high redundancy=1"


def _service(engine: Engine) -> NPOService:
    retriever = FakeRetriever(
        [FakeHit("link-drain", 0.9, "drain_link"), FakeHit("link-optic", 0.6, "replace_optic")]
    )
    cfg = NPOConfig(
        threshold_mode=ThresholdMode.THOMPSON,
        fixed_threshold=0.5,
        bandit=BanditConfig(arms=(0.5, 0.6)),
    )
    spe = ScriptedSPE({"drain_link": Verdict.NEEDS_APPROVAL})
    return NPOService(engine, retriever, spe, cfg, np.random.default_rng(1), clock=lambda: NOW)


def _audits(engine: Engine, prefix: str) -> list[tuple[str, str, dict[str, object]]]:
    with Session(engine) as s:
        rows = s.exec(select(AuditEntry).order_by(col(AuditEntry.id))).all()
        return [
            (a.actor, a.action, json.loads(a.detail_json))
            for a in rows
            if a.action.startswith(prefix)
        ]


def test_a_needs_approval_candidate_waits_for_a_second_engineer(engine: Engine) -> None:
    svc = _service(engine)
    rec = svc.recommend(IncidentInput(TEXT, "slack", channel="C1", reporter="U1"))
    d = rec.decision
    assert d.outcome is Outcome.NEEDS_APPROVAL and d.chosen is None
    assert d.pending is not None and d.pending.playbook_id == "link-drain"
    with Session(engine) as s:
        row = s.get(Approval, rec.recommendation_id)
        assert row is not None and (row.state, row.requester) == ("pending", "U1")

    assert approve(svc, rec.recommendation_id, "U1", True).status is ApprovalStatus.OWN_REQUEST
    not_allowed = approve(svc, rec.recommendation_id, "U3", False).status
    assert not_allowed is ApprovalStatus.NOT_AN_APPROVER
    refused = _audits(engine, "approval:")
    assert [(a, act, det["why"]) for a, act, det in refused] == [
        ("U1", "approval:approve:refused", "own_request"),
        ("U3", "approval:approve:refused", "not_an_approver"),
    ]
    with Session(engine) as s:
        assert s.get(Approval, rec.recommendation_id).state == "pending"  # type: ignore[union-attr]

    done = approve(svc, rec.recommendation_id, "U2", True)
    assert done.status is ApprovalStatus.APPROVED and done.decision is not None
    assert done.decision.outcome is Outcome.RECOMMEND and done.decision.approved_by == "U2"
    assert done.decision.chosen == d.pending
    again = approve(svc, rec.recommendation_id, "U2", True)  # the same click, delivered twice
    assert (again.status, again.decided_by) == (ApprovalStatus.ALREADY_DECIDED, "U2")
    late = reject(svc, rec.recommendation_id, "U4", True, "too late")
    assert late.status is ApprovalStatus.ALREADY_DECIDED
    with Session(engine) as s:
        stored = s.get(Recommendation, rec.recommendation_id)
        assert stored is not None and (stored.outcome, stored.playbook_id) == (
            "recommend",
            "link-drain",
        )
    assert [act for _, act, _ in _audits(engine, "approval:approve")][-1] == "approval:approve"
    reloaded = svc.decision(rec.recommendation_id)
    assert reloaded is not None and reloaded.recommended


def test_an_approved_recommendation_counts_as_surfaced_for_learning(engine: Engine) -> None:
    """The same like is worth a surfaced recommendation (utility +1) only once the
    candidate was approved; before that nobody was shown it, and it counts as missed."""
    svc = _service(engine)
    first = svc.recommend(IncidentInput(TEXT, "slack", reporter="U1"))
    second = svc.recommend(IncidentInput(TEXT, "slack", reporter="U1"))
    like = FeedbackInput(first.recommendation_id, "U5", FeedbackKind.LIKE, "e1")
    assert svc.record_feedback(like).status is FeedbackStatus.STORED
    assert approve(svc, second.recommendation_id, "U2", True).changed
    like = FeedbackInput(second.recommendation_id, "U5", FeedbackKind.LIKE, "e2")
    assert svc.record_feedback(like).status is FeedbackStatus.STORED
    [unapproved, approved_like] = [det for _, _, det in _audits(engine, "feedback:like")]
    assert approved_like["utility"] == 1.0
    assert unapproved["utility"] != 1.0 and float(str(unapproved["utility"])) <= 0.0


def test_a_rejection_is_an_override_of_that_candidate_with_who_when_why(engine: Engine) -> None:
    svc = _service(engine)
    rec = svc.recommend(IncidentInput(TEXT, "slack", reporter="U1"))
    no_reason = reject(svc, rec.recommendation_id, "U2", True, "  ")
    assert no_reason.status is ApprovalStatus.NO_REASON
    result = reject(svc, rec.recommendation_id, "U2", True, "leaf-12 is the last path")
    assert result.status is ApprovalStatus.REJECTED
    assert reject(svc, rec.recommendation_id, "U2", True, "again").status is (
        ApprovalStatus.ALREADY_DECIDED
    )
    assert approve(svc, rec.recommendation_id, "U3", True).status is (
        ApprovalStatus.ALREADY_DECIDED
    )
    with Session(engine) as s:
        votes = s.exec(select(Feedback)).all()
        assert [(v.operator_id, v.kind, v.playbook_id, v.reason, v.source) for v in votes] == [
            ("U2", "override", "link-drain", "leaf-12 is the last path", "approval")
        ]
        assert votes[0].created_at == NOW
        row = s.get(Approval, rec.recommendation_id)
        assert row is not None and (row.state, row.decided_by) == ("rejected", "U2")
        assert len(s.exec(select(RetrainRequest)).all()) == 1  # every override asks for one
        assert s.get(Recommendation, rec.recommendation_id).outcome == "needs_approval"  # type: ignore[union-attr]


def test_an_allowed_decision_opens_no_approval(engine: Engine) -> None:
    svc = _service(engine)
    svc.spe = ScriptedSPE()
    rec = svc.recommend(IncidentInput(TEXT, "slack", reporter="U1"))
    assert rec.decision.recommended
    assert approve(svc, rec.recommendation_id, "U2", True).status is ApprovalStatus.UNKNOWN


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_console_approves_as_a_second_operator(engine: Engine) -> None:
    out: list[str] = []
    script = [
        TEXT,
        "approve",  # the requester ("console") may not
        "as",
        "as alice",
        "approve",
        "approve",
        TEXT,
        "as bob",
        "reject",
        "reject drain during the freeze",
        "like",  # bob's own judgment of the rejected candidate replaces nothing: a new vote
    ]
    svc = _service(engine)
    assert run_console(svc, script, out.append) == 0
    text = "\n".join(out)
    assert "AWAITING A SECOND ENGINEER" in text and "→ as <name> · approve" in text
    assert "refused: console asked for it" in text
    assert "operator: console" in text and "operator: alice" in text
    assert "approved by alice (second engineer)" in text
    assert "not recorded: already decided by alice" in text
    assert "refused: say why" in text
    assert "rejected by bob: drain during the freeze (stored as an override)" in text
    with Session(engine) as s:
        rows = s.exec(select(Approval).order_by(col(Approval.created_at))).all()
        assert sorted((r.state, r.decided_by) for r in rows) == [
            ("approved", "alice"),
            ("rejected", "bob"),
        ]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_console_keeps_to_the_configured_approvers(engine: Engine) -> None:
    out: list[str] = []
    svc = _service(engine)
    run_console(
        svc, [TEXT, "as mallory", "approve", "as alice", "approve"], out.append, approvers=["alice"]
    )
    text = "\n".join(out)
    assert "refused: mallory is not an approver" in text
    assert "approved by alice" in text


def test_a_retried_rejection_stores_the_override_a_dead_process_did_not(engine: Engine) -> None:
    """The rejection was stored, then the process died before its override was: the retried
    submission stores the override, once; a different engineer's retry stores nothing."""
    from bot.service.approvals import _decide

    svc = _service(engine)
    rec = svc.recommend(IncidentInput(TEXT, "slack", reporter="U1"))
    first = _decide(svc, rec.recommendation_id, "U2", True, "rejected", "freeze")
    assert first.status is ApprovalStatus.REJECTED
    with Session(engine) as s:
        assert s.exec(select(Feedback)).all() == []
    assert reject(svc, rec.recommendation_id, "U3", True, "me too").status is (
        ApprovalStatus.ALREADY_DECIDED
    )
    for _ in range(2):
        retry = reject(svc, rec.recommendation_id, "U2", True, "freeze")
        assert retry.status is ApprovalStatus.ALREADY_DECIDED
    with Session(engine) as s:
        votes = s.exec(select(Feedback)).all()
        assert [(v.operator_id, v.kind, v.reason) for v in votes] == [("U2", "override", "freeze")]


def test_expiry_waits_for_the_approval_and_counts_from_it(engine: Engine) -> None:
    """Nobody can judge a recommendation awaiting approval: the expiry leaves it alone, and
    once approved, gives it the full time from the approval."""
    from bot.monitoring.ticker import expire_unanswered

    clock = {"now": NOW}
    svc = _service(engine)
    svc.clock = lambda: clock["now"]
    rec = svc.recommend(IncidentInput(TEXT, "slack", reporter="U1"))
    day = dt.timedelta(hours=24)
    clock["now"] = NOW + dt.timedelta(hours=30)
    assert expire_unanswered(svc, clock["now"], day) == 0
    assert approve(svc, rec.recommendation_id, "U2", True).changed
    clock["now"] = NOW + dt.timedelta(hours=31)
    assert expire_unanswered(svc, clock["now"], day) == 0
    clock["now"] = NOW + dt.timedelta(hours=54, minutes=1)
    assert expire_unanswered(svc, clock["now"], day) == 1
