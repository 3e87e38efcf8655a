"""Learning state is derived from live votes: a withdrawn or replaced vote takes back
exactly what it contributed (scores, threshold arms — also with discount — and the
monitor), a vote on a candidate the SPE did not allow credits no arm, and a change of the
threshold arms is an explicit, audited migration."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from bot.db.models import AuditEntry, BanditArm, MonitorDecisionRow
from bot.db.state import ArmsChangedError, migrate_arms
from bot.monitoring.ticker import MonitorTicker
from bot.service import FeedbackInput, FeedbackStatus, IncidentInput, NPOService
from core.bandit import BanditConfig
from core.decision import Outcome
from core.feedback import FeedbackKind
from core.learning import learn
from core.monitor import MonitorAction, MonitorConfig
from core.npo import NPOConfig, ThresholdMode
from core.policy import SafetyPolicyEngine, Verdict
from tests.fakes import FakeHit, FakeRetriever, ScriptedSPE

NOW = dt.datetime(2026, 12, 1, 3, tzinfo=dt.UTC)
TEXT = "CRC errors on leaf-12:eth1/3 severity=high redundancy=2 in maintenance window"


def _service(engine: Engine, spe: SafetyPolicyEngine | None = None, **config: object) -> NPOService:
    retriever = FakeRetriever(
        [FakeHit("link-optic", 0.9, "replace_optic"), FakeHit("link-drain", 0.6, "drain_link")]
    )
    base: dict[str, object] = {
        "threshold_mode": ThresholdMode.THOMPSON,
        "fixed_threshold": 0.5,
        "bandit": BanditConfig(arms=(0.5, 0.6)),
        "monitor": MonitorConfig(pause_min_decisions=8, min_labels=1000),
    }
    cfg = NPOConfig(**{**base, **config})  # type: ignore[arg-type]
    return NPOService(
        engine, retriever, spe or ScriptedSPE(), cfg, np.random.default_rng(1), clock=lambda: NOW
    )


def _arms(engine: Engine) -> list[tuple[float, float]]:
    with Session(engine) as s:
        rows = s.exec(select(BanditArm).order_by(BanditArm.arm_index)).all()  # type: ignore[arg-type]
        return [(a.alpha, a.beta) for a in rows]


def _vote(svc: NPOService, rec: str, user: str, kind: FeedbackKind, event: str) -> FeedbackStatus:
    return svc.record_feedback(FeedbackInput(rec, user, kind, event, source="reaction")).status


def test_add_remove_cycles_count_as_the_final_vote_only(engine: Engine) -> None:
    """One user adds and removes 🔴 eight times: no live vote is left, so the monitor sees
    no override and pauses nothing (it used to hold '8 overrides in 8 decisions')."""
    svc = _service(engine)
    rec = svc.recommend(IncidentInput(TEXT, "slack")).recommendation_id
    arms_before = _arms(engine)
    for i in range(8):
        assert _vote(svc, rec, "U1", FeedbackKind.OVERRIDE, f"add{i}") in {
            FeedbackStatus.STORED,
            FeedbackStatus.REPLACED,
        }
        assert svc.withdraw_feedback(rec, "U1", f"remove{i}").status is FeedbackStatus.WITHDRAWN
    assert svc.votes(rec) == []
    prior_a, prior_b = svc.config.bandit.prior()
    assert arms_before == [] and _arms(engine) == list(zip(prior_a, prior_b, strict=True))
    ticker = MonitorTicker(engine, svc.config, lambda: NOW, dt.timedelta(minutes=15))
    outcome = ticker.tick(force=True)
    assert outcome is not None
    assert outcome.action is MonitorAction.HOLD
    assert "no new labels" in outcome.reason


def test_a_replaced_vote_is_observed_once_in_its_final_form(engine: Engine) -> None:
    svc = _service(engine, monitor=MonitorConfig(pause_min_decisions=1, pause_override_rate=0.5))
    rec = svc.recommend(IncidentInput(TEXT, "slack")).recommendation_id
    for i, kind in enumerate([FeedbackKind.OVERRIDE] * 3 + [FeedbackKind.LIKE]):
        _vote(svc, rec, "U1", kind, f"e{i}")
    ticker = MonitorTicker(engine, svc.config, lambda: NOW, dt.timedelta(minutes=15))
    outcome = ticker.tick(force=True)
    assert outcome is not None
    assert outcome.action is not MonitorAction.PAUSE_PLAYBOOK  # one live like, no override
    # One like is left: each arm holds one unit of evidence from it, none from the overrides.
    prior_a, prior_b = svc.config.bandit.prior()
    arms = _arms(engine)
    assert [a + b for a, b in arms] == pytest.approx(
        [a + b + 1 for a, b in zip(prior_a, prior_b, strict=True)]
    )


def test_withdrawal_is_exact_with_a_discounted_bandit(engine: Engine) -> None:
    """With γ < 1 a withdrawal removes what the vote weighs now (γ^steps since), so the
    arms end where the other votes alone would have left them."""
    bandit = BanditConfig(arms=(0.5, 0.6), discount=0.8)
    svc = _service(engine, bandit=bandit)
    recorded = [svc.recommend(IncidentInput(TEXT, "slack")) for _ in range(4)]
    recs = [r.recommendation_id for r in recorded]
    _vote(svc, recs[0], "U1", FeedbackKind.LIKE, "v0")
    for i, rec in enumerate(recs[1:], 1):
        _vote(svc, rec, "U1", FeedbackKind.OVERRIDE, f"v{i}")
    svc.withdraw_feedback(recs[0], "U1", "w0")
    # The same learning without the withdrawn vote, through the core's one learning step.
    alone = svc.config.bandit
    from core.bandit import ThresholdBandit

    expected = ThresholdBandit(alone)
    for step, made in enumerate(recorded[1:], 2):
        learn(made.decision, None, FeedbackKind.OVERRIDE, step, svc.config.learning, expected)
    want = [
        pytest.approx((a, b), abs=1e-12) for a, b in zip(expected.alpha, expected.beta, strict=True)
    ]
    assert _arms(engine) == want


@pytest.mark.parametrize("verdict", [Verdict.DENY, Verdict.NEEDS_APPROVAL])
def test_a_vote_on_a_blocked_decision_credits_no_arm(engine: Engine, verdict: Verdict) -> None:
    """The candidate was never surfaced: no arm would have earned this like by showing it."""
    svc = _service(engine, ScriptedSPE({"replace_optic": verdict, "drain_link": verdict}))
    recorded = svc.recommend(IncidentInput(TEXT, "slack"))
    waits = verdict is Verdict.NEEDS_APPROVAL  # not surfaced until a second engineer approves
    assert recorded.decision.outcome is (Outcome.NEEDS_APPROVAL if waits else Outcome.BLOCKED)
    status = _vote(svc, recorded.recommendation_id, "U1", FeedbackKind.LIKE, "r1")
    assert status is FeedbackStatus.STORED  # still stored: it teaches the score
    prior_a, prior_b = svc.config.bandit.prior()
    assert _arms(engine) == list(zip(prior_a, prior_b, strict=True))


def test_confirming_a_candidate_of_an_abstention_teaches_the_arms_they_missed(
    engine: Engine,
) -> None:
    """Both arms abstained on link-drain (0.6); the operator confirms it: each arm learns
    it missed a good recommendation (−M on the utility scale)."""
    svc = _service(engine, bandit=BanditConfig(arms=(0.95, 0.99)), fixed_threshold=0.95)
    recorded = svc.recommend(IncidentInput(TEXT, "slack"))
    assert recorded.decision.outcome is Outcome.ABSTAIN
    fb = FeedbackInput(
        recorded.recommendation_id, "U1", FeedbackKind.LIKE, "c1", playbook_id="link-drain"
    )
    assert svc.record_feedback(fb).status is FeedbackStatus.STORED
    u = svc.config.utility
    miss = u.reward(-u.miss_cost)
    assert _arms(engine) == [pytest.approx((1.0 + miss, 2.0 - miss))] * 2


def test_changing_the_arms_is_refused_unless_migrated_explicitly(engine: Engine) -> None:
    old = _service(engine, bandit=BanditConfig(arms=(0.5, 0.6, 0.7)))
    rec = old.recommend(IncidentInput(TEXT, "slack")).recommendation_id
    _vote(old, rec, "U1", FeedbackKind.LIKE, "l1")
    learned = _arms(engine)
    new = _service(engine, bandit=BanditConfig(arms=(0.5, 0.65)))
    second = old.recommend(IncidentInput(TEXT, "slack")).recommendation_id
    with pytest.raises(ArmsChangedError, match="NPO_ARMS_MIGRATION"):
        new.record_feedback(FeedbackInput(second, "U2", FeedbackKind.LIKE, "l2"))
    assert _arms(engine) == learned  # never reset silently
    with engine.begin() as conn, pytest.raises(ArmsChangedError, match=r"0\.5,0\.6,0\.7"):
        migrate_arms(conn, new.config.bandit, "", "test", NOW)
    with engine.begin() as conn:
        assert migrate_arms(conn, new.config.bandit, "map", "test", NOW) is not None
    assert _arms(engine) == [learned[0], learned[2]]  # 0.5 ← 0.5, 0.65 ← 0.7 (nearest)
    # A vote on a decision made with the old arm 0.7 (index 2, which no longer exists).
    status = new.record_feedback(FeedbackInput(second, "U2", FeedbackKind.OVERRIDE, "l3"))
    assert status.status is FeedbackStatus.STORED
    with Session(engine) as s:
        audits = s.exec(select(AuditEntry).where(AuditEntry.action == "bandit:arms")).all()
        assert len(audits) == 1


def test_the_tick_counts_nothing_twice_after_replacements_and_withdrawals(
    engine: Engine,
) -> None:
    svc = _service(engine, monitor=MonitorConfig(min_labels=2, pause_min_decisions=50))
    recs = [svc.recommend(IncidentInput(TEXT, "slack")).recommendation_id for _ in range(3)]
    _vote(svc, recs[0], "U1", FeedbackKind.OVERRIDE, "a")
    _vote(svc, recs[0], "U1", FeedbackKind.LIKE, "b")  # replaces the override
    _vote(svc, recs[1], "U1", FeedbackKind.LIKE, "c")
    _vote(svc, recs[2], "U1", FeedbackKind.OVERRIDE, "d")
    svc.withdraw_feedback(recs[2], "U1", "e")
    ticker = MonitorTicker(engine, svc.config, lambda: NOW, dt.timedelta(minutes=15))
    outcome = ticker.tick(force=True)
    assert outcome is not None
    with Session(engine) as s:
        row = s.exec(select(MonitorDecisionRow)).one()
    # Two live likes, no live override: no retrain was requested by an override.
    assert row.action == "hold"
    assert row.reason.startswith("no override since the last retrain")
