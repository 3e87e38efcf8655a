from __future__ import annotations

import numpy as np
import pytest

from core.feedback import FeedbackKind
from core.model import Example, SimilarityPrior
from core.monitor import MonitorAction, MonitorConfig
from core.npo import NPO, Match, NPOConfig, RetrainConfig, ThresholdMode, holdout_loss
from core.policy import Action
from core.scenario import Scenario
from tests.fakes import ScriptedSPE

NIGHT = Scenario("link", "crc_errors", hour_of_day=2, maintenance_window=True, device="l1")
DAY = Scenario("link", "crc_errors", hour_of_day=14, maintenance_window=True, device="l1")
DRAIN = Match("drain", "Drain the link", Action("drain_link", "l1"), 0.8)
OPTIC = Match("optic", "Replace the optic", Action("replace_optic", "l1"), 0.6)


def _npo(**kwargs: object) -> NPO:
    config = NPOConfig(**kwargs)  # type: ignore[arg-type]
    return NPO(ScriptedSPE(), config, np.random.default_rng(0))


def test_feedback_refines_the_scenario_score_and_the_bandit() -> None:
    npo = _npo(threshold_mode=ThresholdMode.FIXED, fixed_threshold=0.7)
    d = npo.decide(NIGHT, [DRAIN, OPTIC])
    assert d.chosen is not None
    assert d.chosen.playbook_id == "drain"
    fixed_alpha = npo.bandit.alpha.copy()
    loss = npo.feedback(d, "drain", FeedbackKind.OVERRIDE)
    assert loss == pytest.approx(0.8)
    k, w = npo.config.scoring.prior_strength, npo.config.scoring.override_weight
    assert npo.scores.score(("drain", NIGHT.context_key), 0.8) == pytest.approx(k * 0.8 / (k + w))
    assert npo.bandit.alpha.tolist() == fixed_alpha.tolist()  # fixed mode does not learn τ
    assert npo.monitor.signals(npo.votes).retrain_requested


def test_thompson_mode_teaches_every_arm_what_it_would_have_earned() -> None:
    """A like of a candidate at 0.8: arms ≤ 0.8 would have surfaced it (+1), the 0.9 arm
    would have missed it (−M); every arm learns whatever the arm used was."""
    npo = _npo()
    d = npo.decide(NIGHT, [DRAIN])
    before_a, before_b = npo.bandit.alpha.copy(), npo.bandit.beta.copy()
    npo.feedback(d, "drain", FeedbackKind.LIKE)
    gained_a = npo.bandit.alpha - before_a
    gained_b = npo.bandit.beta - before_b
    u = npo.config.utility
    assert gained_a[:4].tolist() == pytest.approx([1.0] * 4)
    assert gained_a[4] == pytest.approx(u.reward(-u.miss_cost))
    assert (gained_a + gained_b).tolist() == pytest.approx([1.0] * 5)


def test_a_second_vote_replaces_the_first_and_withdrawal_takes_it_all_back() -> None:
    npo = _npo()
    d = npo.decide(NIGHT, [DRAIN, OPTIC])
    alpha, beta = npo.bandit.alpha.copy(), npo.bandit.beta.copy()
    npo.feedback(d, "drain", FeedbackKind.LIKE, voter="ana")
    npo.feedback(d, "drain", FeedbackKind.OVERRIDE, voter="ana")  # changed her mind
    assert len(npo.votes) == 1 and npo.votes[0].kind is FeedbackKind.OVERRIDE
    sid = ("drain", NIGHT.context_key)
    assert npo.scores.get(sid).failures > 0 and npo.scores.get(sid).successes == 0  # type: ignore[union-attr]
    npo.withdraw(d, "ana")
    assert npo.votes == [] and npo.log == [] and npo.scores.get(sid) is None
    assert npo.bandit.alpha.tolist() == pytest.approx(alpha.tolist())
    assert npo.bandit.beta.tolist() == pytest.approx(beta.tolist())


def test_always_abstain_never_recommends() -> None:
    npo = _npo(threshold_mode=ThresholdMode.ABSTAIN)
    d = npo.decide(NIGHT, [Match("sure", "Sure thing", Action("replace_optic", "l1"), 1.0)])
    assert not d.recommended


def test_static_mode_never_learns() -> None:
    npo = _npo(learn=False)
    for _ in range(5):
        d = npo.decide(NIGHT, [DRAIN])
        npo.feedback(d, "drain", FeedbackKind.OVERRIDE)
    assert len(npo.scores) == 0
    assert npo.bandit.alpha.tolist() == npo.bandit.prior_alpha.tolist()
    assert npo.bandit.beta.tolist() == npo.bandit.prior_beta.tolist()
    assert npo.tick().decision.action is MonitorAction.HOLD
    assert isinstance(npo.prior, SimilarityPrior)


def test_skips_are_logged_as_losses_but_teach_nothing() -> None:
    npo = _npo()
    d = npo.decide(NIGHT, [DRAIN])
    assert npo.feedback(d, None, FeedbackKind.SKIPPED) == pytest.approx(0.1)
    assert npo.log == []
    assert len(npo.scores) == 0


def _teach(npo: NPO, rounds: int) -> None:
    """Operators like draining at night and override it by day."""
    for _ in range(rounds):
        for scenario, kind in ((NIGHT, FeedbackKind.LIKE), (DAY, FeedbackKind.OVERRIDE)):
            npo.feedback(npo.decide(scenario, [DRAIN]), "drain", kind)


def test_a_retrain_that_helps_is_accepted_and_changes_the_prior() -> None:
    npo = _npo(monitor=MonitorConfig(min_labels=4))
    _teach(npo, 10)
    report = npo.tick()
    assert report.decision.action is MonitorAction.RETRAIN
    assert report.retrain is not None
    assert report.retrain.accepted
    assert report.retrain.gain > 0
    assert npo.prior.predict("drain", DAY.context(), 0.8) < 0.3
    assert npo.prior.predict("drain", NIGHT.context(), 0.8) > 0.7
    assert npo.trained_upto == len(npo.log)


def test_a_retrain_that_does_not_help_is_rejected_and_the_live_model_stays() -> None:
    npo = _npo(retrain=RetrainConfig(min_gain=0.05), monitor=MonitorConfig(min_labels=4))
    _teach(npo, 10)
    npo.tick()
    live = npo.prior
    _teach(npo, 10)  # more of the same: a new candidate cannot beat the live model by δ
    result = npo.retrain()
    assert not result.accepted
    assert "does not lower" in result.reason
    assert npo.prior is live
    assert npo.retrains_rejected == 1


def test_too_little_fresh_feedback_gives_no_candidate() -> None:
    npo = _npo()
    _teach(npo, 2)
    result, candidate = npo.evaluate_retrain()
    assert candidate is None
    assert not result.accepted
    assert "labelled decisions since the live model" in result.reason


def test_a_paused_playbook_is_no_longer_a_candidate() -> None:
    npo = _npo(monitor=MonitorConfig(pause_min_decisions=3, pause_override_rate=0.9))
    for _ in range(3):
        npo.feedback(npo.decide(DAY, [DRAIN, OPTIC]), "drain", FeedbackKind.OVERRIDE)
    report = npo.tick()
    assert (report.decision.action, report.decision.playbook_id) == (
        MonitorAction.PAUSE_PLAYBOOK,
        "drain",
    )
    assert [c.playbook_id for c in npo.decide(DAY, [DRAIN, OPTIC]).candidates] == ["optic"]


def test_invalid_npo_config() -> None:
    with pytest.raises(ValueError, match=r"^fixed_threshold"):
        NPOConfig(fixed_threshold=0.75)
    with pytest.raises(ValueError, match=r"^skip_loss"):
        NPOConfig(skip_loss=-1)
    with pytest.raises(ValueError, match=r"^holdout_fraction"):
        RetrainConfig(holdout_fraction=1.0)
    with pytest.raises(ValueError, match=r"^min_holdout"):
        RetrainConfig(min_holdout=0)
    with pytest.raises(ValueError, match=r"^min_gain"):
        RetrainConfig(min_gain=-0.1)


class _Constant:
    def __init__(self, p: float) -> None:
        self.p = p

    def predict(self, playbook_id: str, context: object, similarity: float) -> float:
        return self.p


def test_the_retrain_gate_scores_with_a_proper_rule() -> None:
    """Seven likes in ten: |p − y| prefers the over-confident p = 1 (loss 0.3 < 0.42), the
    Brier score prefers the truth p = 0.7 — a gate on |p − y| rewards over-confidence."""
    ctx = DAY.context()
    kinds = [FeedbackKind.LIKE] * 7 + [FeedbackKind.OVERRIDE] * 3 + [FeedbackKind.SKIPPED]
    examples = [Example("drain", ctx, 0.8, k, i) for i, k in enumerate(kinds)]
    calibrated, overconfident = _Constant(0.7), _Constant(1.0)
    assert holdout_loss(calibrated, examples) == pytest.approx(0.21)  # skips carry no label
    assert holdout_loss(overconfident, examples) == pytest.approx(0.3)
    assert holdout_loss(calibrated, examples) < holdout_loss(overconfident, examples)
    neutral = [Example("drain", ctx, 0.8, FeedbackKind.NEUTRAL, 0)]
    assert holdout_loss(_Constant(0.5), neutral) == 0.0
    assert holdout_loss(calibrated, []) == 0.0


def test_abstain_mode_never_recommends_and_teaches_no_arm() -> None:
    npo = _npo(threshold_mode=ThresholdMode.ABSTAIN)
    for _ in range(5):
        decision = npo.decide(NIGHT, [DRAIN, OPTIC])
        assert not decision.recommended
        assert [c.playbook_id for c in decision.candidates] == ["drain", "optic"]
        npo.feedback(decision, "drain", FeedbackKind.LIKE)
    assert npo.bandit.alpha.tolist() == npo.bandit.prior_alpha.tolist()
    assert npo.bandit.beta.tolist() == npo.bandit.prior_beta.tolist()


def test_a_tick_reports_both_monitors_and_adds_its_verdict_to_the_history() -> None:
    npo = _npo(monitor=MonitorConfig(min_labels=4))
    _teach(npo, 10)
    report = npo.tick()
    assert report.signals is not None and report.rule is not None
    assert report.learned is None  # nothing to learn from before the first judged tick
    assert len(npo.monitor.state.history) == 1
    assert npo.monitor.state.history[0].retrain is report.shadow.accepted
    assert npo.monitor.state.history[0].features == report.signals.features()


def test_a_static_tick_fits_nothing() -> None:
    npo = _npo(learn=False)
    _teach(npo, 10)
    report = npo.tick()
    assert report.decision.action is MonitorAction.HOLD
    assert report.candidate is None and report.shadow.holdout == 0
    assert npo.monitor.state.history == []
