from __future__ import annotations

import json

import numpy as np
import pytest

from core.feedback import FeedbackKind
from core.monitor import (
    LoggedVote,
    MetaMonitor,
    MonitorAction,
    MonitorConfig,
    MonitorDecision,
    MonitorPolicy,
    MonitorSignals,
    MonitorState,
    fidelity,
    history_from_list,
    history_to_list,
    meta_agreement,
    page_hinkley,
)


def test_page_hinkley_detects_an_upward_shift_and_not_noise() -> None:
    rng = np.random.default_rng(1)
    calm = rng.normal(0.1, 0.05, 500)
    assert page_hinkley(calm, delta=0.02, threshold=1.5) < 1.5
    shifted = np.concatenate([calm, rng.normal(0.6, 0.05, 10)])
    assert page_hinkley(shifted, delta=0.02, threshold=1.5) > 1.5


class _Monitor:
    """A meta-monitor fed one vote at a time, as the in-memory loop does."""

    def __init__(self, **kwargs: object) -> None:
        self.monitor = MetaMonitor(MonitorConfig(**kwargs))  # type: ignore[arg-type]
        self.votes: list[LoggedVote] = []
        self.state = self.monitor.state

    def observe(self, kind: FeedbackKind, loss: float, playbook: str | None = None) -> None:
        self.votes.append(LoggedVote(len(self.votes) + 1, kind, loss, playbook))

    def decide(self) -> MonitorDecision:
        return self.monitor.decide(self.monitor.signals(self.votes))

    def retrained(self) -> None:
        self.monitor.retrained(len(self.votes))

    def pause(self, playbook: str) -> None:
        self.monitor.pause(playbook)

    def resume(self, playbook: str) -> None:
        self.monitor.resume(playbook, len(self.votes))


def _monitor(**kwargs: object) -> _Monitor:
    return _Monitor(**kwargs)


def test_holds_without_labels() -> None:
    m = _monitor()
    m.observe(FeedbackKind.SKIPPED, 0.1)
    assert m.decide().action is MonitorAction.HOLD


def test_an_override_requests_a_retrain_that_waits_for_enough_labels() -> None:
    m = _monitor(min_labels=5)
    m.observe(FeedbackKind.OVERRIDE, 0.2)
    held = m.decide()
    assert held.action is MonitorAction.HOLD
    assert "pending" in held.reason
    for _ in range(4):
        m.observe(FeedbackKind.LIKE, 0.1)
    decision = m.decide()
    assert decision.action is MonitorAction.RETRAIN
    assert "override" in decision.reason


def test_retrain_needs_new_labels_to_be_a_material_share() -> None:
    m = _monitor(min_labels=2, min_growth=0.5)
    for _ in range(10):
        m.observe(FeedbackKind.LIKE, 0.05)
    m.retrained()  # the model now knows 10 labels
    m.observe(FeedbackKind.OVERRIDE, 0.1)
    m.observe(FeedbackKind.LIKE, 0.05)
    assert m.decide().action is MonitorAction.HOLD  # 2 new labels = 20% < 50%
    for _ in range(3):
        m.observe(FeedbackKind.LIKE, 0.05)
    assert m.decide().action is MonitorAction.RETRAIN  # 5 new = 50%


def test_high_loss_ewma_retrains_without_an_override() -> None:
    m = _monitor(min_labels=3, ewma_bound=0.3)
    for _ in range(3):
        m.observe(FeedbackKind.NEUTRAL, 0.9)
    decision = m.decide()
    assert decision.action is MonitorAction.RETRAIN
    assert "EWMA" in decision.reason


def test_drift_retrains_even_with_few_labels() -> None:
    m = _monitor(min_labels=1000, ph_threshold=0.5)
    for _ in range(50):
        m.observe(FeedbackKind.LIKE, 0.05)
    for _ in range(10):
        m.observe(FeedbackKind.LIKE, 0.9)
    decision = m.decide()
    assert decision.action is MonitorAction.RETRAIN
    assert "Page" in decision.reason


def test_a_playbook_with_too_many_overrides_is_paused_then_resumed() -> None:
    m = _monitor(pause_min_decisions=4, pause_override_rate=0.75)
    for kind in (FeedbackKind.OVERRIDE,) * 3 + (FeedbackKind.LIKE,):
        m.observe(kind, 0.5, "bad-playbook")
    m.observe(FeedbackKind.LIKE, 0.1, "good-playbook")
    decision = m.decide()
    assert (decision.action, decision.playbook_id) == (MonitorAction.PAUSE_PLAYBOOK, "bad-playbook")
    m.pause("bad-playbook")
    assert m.decide().action is not MonitorAction.PAUSE_PLAYBOOK
    m.resume("bad-playbook")
    assert "bad-playbook" not in m.state.paused
    assert m.decide().action is not MonitorAction.PAUSE_PLAYBOOK  # a clean tally after resume


def test_retrained_resets_the_since_counters() -> None:
    m = _monitor()
    m.observe(FeedbackKind.OVERRIDE, 0.8)
    m.retrained()
    s = m.monitor.signals(m.votes)
    assert (s.labels_since_retrain, s.overrides_since_retrain, s.retrain_requested) == (0, 0, False)
    assert s.labels_at_retrain == 1


def test_withdrawn_votes_no_longer_steer_the_monitor() -> None:
    """Eight add/remove cycles of an override leave no live vote: nothing to pause."""
    m = _monitor(pause_min_decisions=8)
    for _ in range(8):
        m.observe(FeedbackKind.OVERRIDE, 0.9, "p")
        m.votes.pop()  # withdrawn: the live log no longer holds it
    signals = m.monitor.signals(m.votes)
    assert signals.overrides_since_retrain == 0
    assert signals.playbooks == {}
    assert m.decide().action is MonitorAction.HOLD


def test_state_round_trips_through_json() -> None:
    m = _monitor()
    for kind in (FeedbackKind.OVERRIDE, FeedbackKind.LIKE, FeedbackKind.NEUTRAL):
        m.observe(kind, 0.3, "p")
    m.pause("q")
    m.retrained()
    m.resume("p")
    restored = MonitorState.from_dict(json.loads(json.dumps(m.state.to_dict())))
    assert restored == m.state


def test_fidelity() -> None:
    r, h, p = MonitorAction.RETRAIN, MonitorAction.HOLD, MonitorAction.PAUSE_PLAYBOOK
    assert fidelity([r, h, p, r], [r, h, h, h]) == pytest.approx(0.75)
    assert fidelity([], []) == 0.0
    with pytest.raises(ValueError, match="paired"):
        fidelity([r], [])


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"ewma_alpha": 0.0}, "ewma_alpha"),
        ({"ewma_bound": 0.0}, "ewma_bound"),
        ({"min_labels": 0}, "min_labels"),
        ({"min_growth": -0.1}, "min_growth"),
        ({"ph_threshold": 0.0}, "ph_"),
        ({"pause_override_rate": 0.0}, "pause_override_rate"),
        ({"pause_min_decisions": 0}, "pause_min_decisions"),
        ({"learned_min_each": 0}, "learned_min_each"),
        ({"learned_l2": 0.0}, "learned_l2"),
        ({"learned_history": 4}, "learned_history"),
    ],
)
def test_invalid_monitor_config(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}"):
        MonitorConfig(**kwargs)  # type: ignore[arg-type]


def test_meta_agreement_reads_fidelity_against_the_base_rate() -> None:
    ideal = [True] * 2 + [False] * 8
    always_hold = meta_agreement([False] * 10, ideal)
    assert always_hold.fidelity == pytest.approx(0.8)  # looks good …
    assert always_hold.base_rate == pytest.approx(0.2)
    assert always_hold.kappa == pytest.approx(0.0)  # … and is no better than chance
    assert meta_agreement(ideal, ideal).kappa == pytest.approx(1.0)
    assert meta_agreement([not x for x in ideal], ideal).kappa < 0.0
    # Cohen's κ by hand: p_o = 0.7, p_e = 0.5·0.2 + 0.5·0.8 = 0.5 → κ = 0.4
    m = [True, True] + [True] * 3 + [False] * 5
    assert meta_agreement(m, ideal).kappa == pytest.approx(0.4)
    assert meta_agreement([], []).ticks == 0
    with pytest.raises(ValueError, match="paired"):
        meta_agreement([True], [])


def _signals(since: int, at: int = 100, overrides: int = 0, ewma: float = 0.2) -> MonitorSignals:
    return MonitorSignals(ewma, 0.0, False, since, at, overrides, {})


def _learned(**kwargs: object) -> MetaMonitor:
    return MetaMonitor(MonitorConfig(policy=MonitorPolicy.LEARNED, **kwargs))  # type: ignore[arg-type]


def test_the_learned_monitor_defers_to_the_rule_until_it_has_seen_both_verdicts() -> None:
    m = _learned(learned_min_ticks=6, learned_min_each=2)
    rule = MetaMonitor(MonitorConfig(policy=MonitorPolicy.RULE))
    for _ in range(10):
        m.observe(_signals(50), True)  # only one verdict so far: nothing to learn from
    assert m.learned_decision(_signals(3)) is None
    assert m.decide(_signals(3)) == rule.decide(_signals(3))


def test_the_learned_monitor_learns_what_made_past_retrains_pay() -> None:
    """Past ticks say: a retrain helped when many new labels had arrived since the last one.
    The rule would hold on these (no override, low loss); the learned M has learned otherwise."""
    m = _learned()
    for since in (2, 4, 5, 6, 8, 9, 40, 50, 60, 70, 80, 90):
        m.observe(_signals(since), since >= 40)
    busy, quiet = m.decide(_signals(75)), m.decide(_signals(3))
    assert busy.action is MonitorAction.RETRAIN and "learned monitor" in busy.reason
    assert quiet.action is MonitorAction.HOLD and "learned monitor" in quiet.reason
    rule = MetaMonitor(MonitorConfig(policy=MonitorPolicy.RULE))
    assert rule.decide(_signals(75)).action is MonitorAction.HOLD
    model = m.learned_model()
    assert model is not None
    assert (
        model.probability(_signals(75).features()) > 0.5 > model.probability(_signals(3).features())
    )
    assert m.learned_decision(_signals(0)) == MonitorDecision(
        MonitorAction.HOLD, "no new labels since the last retrain"
    )


def test_a_pause_comes_first_under_either_policy() -> None:
    for policy in MonitorPolicy:
        m = _Monitor(policy=policy, pause_min_decisions=3)
        for _ in range(4):
            m.observe(FeedbackKind.OVERRIDE, 0.9, "bad")
        assert m.decide().action is MonitorAction.PAUSE_PLAYBOOK


def test_the_learned_monitor_keeps_a_bounded_history_that_survives_restarts() -> None:
    m = _learned(learned_min_ticks=8, learned_history=10)
    for k in range(25):
        m.observe(_signals(k), k % 2 == 0)
    assert len(m.state.history) == 10
    assert m.state.history[-1].features == _signals(24).features()
    state = MonitorState.from_dict(json.loads(json.dumps(m.state.to_dict())))
    state.history = history_from_list(json.loads(json.dumps(history_to_list(m.state.history))))
    restored = MetaMonitor(m.config, state)
    assert [t.retrain for t in restored.state.history] == [t.retrain for t in m.state.history]
    for kept, live in zip(restored.state.history, m.state.history, strict=True):
        assert kept.features == pytest.approx(live.features, abs=1e-6)  # stored to 6 places
    assert restored.decide(_signals(30)) == m.decide(_signals(30))
    assert "history" not in m.state.to_dict()  # stored apart from the document votes read
    assert history_from_list([[1.0, 2.0, 1.0]]) == []  # a row of another width is dropped
