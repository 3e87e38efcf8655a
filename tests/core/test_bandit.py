from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.bandit import ArmDelta, BanditConfig, ThresholdBandit
from core.feedback import FeedbackKind


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 4), st.integers(0, 2**31 - 1))
def test_thompson_prefers_the_arm_that_earns_likes(good: int, seed: int) -> None:
    """Recommendations are always surfaced; only arm ``good`` is liked."""
    rng = np.random.default_rng(seed)
    bandit = ThresholdBandit()
    for _ in range(300):
        arm = bandit.choose(rng)
        kind = FeedbackKind.LIKE if arm.index == good else FeedbackKind.OVERRIDE
        bandit.update(arm.index, 1.0, kind)
    picks = [bandit.choose(rng).index for _ in range(200)]
    assert picks.count(good) / len(picks) > 0.8


def test_paper_rule_updates_only_the_chosen_arm_and_only_when_surfaced() -> None:
    bandit = ThresholdBandit()
    bandit.update(2, 0.75, FeedbackKind.LIKE)  # τ=0.7 surfaced it
    bandit.update(3, 0.75, FeedbackKind.OVERRIDE)  # τ=0.8 did not: no update
    bandit.update(1, 0.65, FeedbackKind.OVERRIDE)
    assert bandit.alpha.tolist() == [1, 1, 2, 1, 1]
    assert bandit.beta.tolist() == [1, 2, 1, 1, 1]


def test_neutral_is_a_quarter_weight_split_and_skip_is_nothing() -> None:
    bandit = ThresholdBandit()
    bandit.update(0, 0.9, FeedbackKind.NEUTRAL)
    bandit.update(0, 0.9, FeedbackKind.SKIPPED)
    assert bandit.alpha[0] == pytest.approx(1.125)
    assert bandit.beta[0] == pytest.approx(1.125)


def test_counterfactual_credits_arms_between_the_chosen_one_and_the_score() -> None:
    bandit = ThresholdBandit(BanditConfig(counterfactual=True))
    bandit.update(1, 0.85, FeedbackKind.LIKE)  # chosen τ=0.6; τ=0.7 and 0.8 would surface too
    assert bandit.alpha.tolist() == [1, 2, 2, 2, 1]
    assert bandit.beta.tolist() == [1, 1, 1, 1, 1]
    bandit.update(0, 0.55, FeedbackKind.OVERRIDE)  # only τ=0.5 would have surfaced it
    assert bandit.beta.tolist() == [2, 1, 1, 1, 1]


def test_discount_forgets_towards_the_prior() -> None:
    bandit = ThresholdBandit(
        BanditConfig(discount=0.5), alpha=[9, 1, 1, 1, 1], beta=[1, 1, 1, 1, 5]
    )
    bandit.update(2, 0.1, FeedbackKind.LIKE)  # not surfaced: only the discount applies
    assert bandit.alpha.tolist() == [5, 1, 1, 1, 1]
    assert bandit.beta.tolist() == [1, 1, 1, 1, 3]


def test_state_round_trips_through_json() -> None:
    rng = np.random.default_rng(3)
    bandit = ThresholdBandit(BanditConfig(discount=0.9, counterfactual=True))
    for _ in range(20):
        arm = bandit.choose(rng)
        bandit.update(arm.index, float(rng.uniform()), FeedbackKind.LIKE)
    restored = ThresholdBandit.from_dict(json.loads(json.dumps(bandit.to_dict())))
    assert restored.config == bandit.config
    assert restored.alpha.tolist() == bandit.alpha.tolist()
    assert restored.beta.tolist() == bandit.beta.tolist()
    a, b = np.random.default_rng(9), np.random.default_rng(9)
    assert restored.choose(a) == bandit.choose(b)


def test_choice_reports_its_posterior() -> None:
    bandit = ThresholdBandit(alpha=[1, 1, 30, 1, 1], beta=[30, 30, 1, 30, 30])
    arm = bandit.choose(np.random.default_rng(0))
    assert (arm.index, arm.threshold, arm.alpha, arm.beta) == (2, 0.7, 30.0, 1.0)
    assert arm.posterior_mean == pytest.approx(30 / 31)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"arms": ()}, "arms"),
        ({"arms": (0.5, 1.5)}, "arms"),
        ({"arms": (0.7, 0.5)}, "arms"),
        ({"arms": (0.5, 0.5)}, "arms"),
        ({"discount": 0.0}, "discount"),
        ({"discount": 1.1}, "discount"),
    ],
)
def test_invalid_bandit_config(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}:"):
        BanditConfig(**kwargs)  # type: ignore[arg-type]


def test_invalid_posteriors() -> None:
    with pytest.raises(ValueError, match="one per arm"):
        ThresholdBandit(alpha=[1, 1])
    with pytest.raises(ValueError, match="> 0"):
        ThresholdBandit(alpha=[0, 1, 1, 1, 1])


@pytest.mark.parametrize("counterfactual", [False, True])
@pytest.mark.parametrize("discount", [1.0, 0.9])
def test_take_back_is_the_exact_inverse_of_a_vote_also_with_discount(
    counterfactual: bool, discount: float
) -> None:
    """A vote added, buried under later votes, then taken back leaves exactly what the later
    votes alone would have left."""
    config = BanditConfig(discount=discount, counterfactual=counterfactual)
    with_vote, without = ThresholdBandit(config), ThresholdBandit(config)
    delta = with_vote.update(1, 0.85, FeedbackKind.LIKE)
    rng = np.random.default_rng(3)
    for _ in range(20):
        arm, score = int(rng.integers(5)), float(rng.uniform())
        kind = FeedbackKind.OVERRIDE if rng.uniform() < 0.4 else FeedbackKind.LIKE
        with_vote.update(arm, score, kind)
        without.update(arm, score, kind)
    assert not np.allclose(with_vote.alpha, without.alpha)
    with_vote.take_back(delta)
    np.testing.assert_allclose(with_vote.alpha, without.alpha, rtol=0, atol=1e-12)
    np.testing.assert_allclose(with_vote.beta, without.beta, rtol=0, atol=1e-12)


@pytest.mark.parametrize("counterfactual", [False, True])
def test_a_candidate_nobody_surfaced_credits_no_arm(counterfactual: bool) -> None:
    """A vote on a blocked or abstained decision: no arm showed the candidate."""
    bandit = ThresholdBandit(BanditConfig(counterfactual=counterfactual))
    delta = bandit.update(0, 0.95, FeedbackKind.LIKE, surfaced=False)
    assert bandit.alpha.tolist() == [1.0] * 5
    assert bandit.beta.tolist() == [1.0] * 5
    assert delta.alpha == (0.0,) * 5
    assert bandit.steps == 0  # no evidence: the discount's clock does not move


def test_arm_delta_round_trips_through_json() -> None:
    bandit = ThresholdBandit(BanditConfig(counterfactual=True))
    delta = bandit.update(1, 0.75, FeedbackKind.NEUTRAL)
    assert ArmDelta.from_dict(json.loads(json.dumps(delta.to_dict()))) == delta


def test_the_prior_favours_the_arm_nearest_the_start_threshold() -> None:
    bandit = ThresholdBandit(BanditConfig(start=0.667, start_strength=6.0))
    means = bandit.posterior_means()
    assert int(np.argmax(means)) == 2  # τ = 0.7
    assert means[1] == pytest.approx(means[3])
    assert means[0] < means[1]
    picks = [bandit.choose(np.random.default_rng(s)).index for s in range(400)]
    assert picks.count(2) / len(picks) > 0.5


@pytest.mark.parametrize("discount", [1.0, 0.8])
def test_credit_adds_fractional_evidence_and_takes_it_back_to_the_prior(discount: float) -> None:
    bandit = ThresholdBandit(BanditConfig(start=0.7, discount=discount))
    delta = bandit.credit([1.0, 0.25, None, 0.0, 0.5])
    assert bandit.steps == 1
    gained = (bandit.alpha - bandit.prior_alpha).tolist()
    assert gained == pytest.approx([1.0, 0.25, 0.0, 0.0, 0.5])
    bandit.take_back(delta)
    assert bandit.alpha.tolist() == pytest.approx(bandit.prior_alpha.tolist())
    assert bandit.beta.tolist() == pytest.approx(bandit.prior_beta.tolist())


def test_credit_with_nothing_known_is_no_step() -> None:
    bandit = ThresholdBandit()
    bandit.credit([None] * 5)
    assert bandit.steps == 0
    with pytest.raises(ValueError, match="one per arm"):
        bandit.credit([0.5])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        bandit.credit([2.0, None, None, None, None])
