"""The one learning step: what each arm would have earned, and exact inverses."""

from __future__ import annotations

import numpy as np
import pytest

from core.bandit import BanditConfig, BanditRule, ThresholdBandit
from core.decision import Candidate, decide
from core.feedback import FeedbackKind
from core.learning import LearningConfig, arm_rewards, judged, learn, unlearn
from core.policy import Action, PolicyVerdict, RuleHit, Verdict
from core.scenario import Scenario
from core.utility import UtilityConfig
from tests.fakes import ScriptedSPE

U = UtilityConfig()
SCENARIO = Scenario("link", "crc_errors", device="l1")


def _cand(pb: str, score: float, action: str = "replace_optic") -> Candidate:
    return Candidate(pb, pb, Action(action, "l1"), score, score, score)


class _DenyDrains:
    def evaluate(self, scenario: Scenario, action: Action) -> PolicyVerdict:
        if action.name == "drain_link":
            return PolicyVerdict(Verdict.DENY, (RuleHit("test", Verdict.DENY, "no drains"),))
        return PolicyVerdict(Verdict.ALLOW)


def _decision(cands: list[Candidate], threshold: float = 0.7, spe: object = None):  # type: ignore[no-untyped-def]
    bandit = ThresholdBandit(BanditConfig(start=0.7))
    arm = bandit.arm_for(threshold)
    return decide(SCENARIO, cands, arm, spe or ScriptedSPE())  # type: ignore[arg-type]


ARMS = (0.5, 0.6, 0.7, 0.8, 0.9)


def test_a_liked_candidate_teaches_surfacing_arms_and_missing_arms() -> None:
    d = _decision([_cand("a", 0.75)])  # recommended at τ = 0.7
    rewards = arm_rewards(d, d.candidates[0], FeedbackKind.LIKE, ARMS, U)
    assert rewards == [1.0, 1.0, 1.0, U.reward(-U.miss_cost), U.reward(-U.miss_cost)]


def test_an_overridden_recommendation_costs_the_arms_that_would_show_it() -> None:
    d = _decision([_cand("a", 0.75)])
    rewards = arm_rewards(d, d.candidates[0], FeedbackKind.OVERRIDE, ARMS, U)
    assert rewards[:3] == [0.0, 0.0, 0.0]  # −C is the bottom of the scale
    assert rewards[3:] == [U.reward(0.0)] * 2  # abstaining was right


def test_an_arm_that_would_show_another_candidate_learns_nothing() -> None:
    d = _decision([_cand("top", 0.85), _cand("second", 0.65)], threshold=0.9)
    second = next(c for c in d.candidates if c.playbook_id == "second")
    rewards = arm_rewards(d, second, FeedbackKind.LIKE, ARMS, U)
    # τ ≤ 0.8 would have shown "top"; 0.9 would have abstained and missed "second".
    assert rewards == [None, None, None, None, U.reward(-U.miss_cost)]


def test_a_candidate_the_spe_denied_teaches_no_arm() -> None:
    d = _decision([_cand("drain", 0.95, "drain_link")], spe=_DenyDrains())
    assert arm_rewards(d, d.candidates[0], FeedbackKind.LIKE, ARMS, U) == [None] * 5


def test_a_skip_teaches_nothing_but_is_logged() -> None:
    d = _decision([_cand("a", 0.75)])
    bandit = ThresholdBandit(BanditConfig(start=0.7))
    effect = learn(d, None, FeedbackKind.SKIPPED, 1, LearningConfig(), bandit)
    assert effect.evidence.empty and bandit.steps == 0
    assert effect.utility == 0.0 and effect.loss == pytest.approx(0.1)
    assert effect.logged().kind is FeedbackKind.SKIPPED


def test_utility_prices_a_wrong_recommendation_and_a_missed_one() -> None:
    shown = _decision([_cand("a", 0.75)])
    assert learn(shown, "a", FeedbackKind.OVERRIDE, 1, LearningConfig()).utility == -3.0
    assert learn(shown, "a", FeedbackKind.LIKE, 1, LearningConfig()).utility == 1.0
    held = _decision([_cand("a", 0.6)])
    assert not held.recommended
    assert learn(held, "a", FeedbackKind.LIKE, 1, LearningConfig()).utility == -U.miss_cost
    assert learn(held, "a", FeedbackKind.OVERRIDE, 1, LearningConfig()).utility == 0.0


def test_a_vote_without_a_name_judges_what_the_bot_showed() -> None:
    d = _decision([_cand("top", 0.85), _cand("second", 0.65)])
    assert judged(d, None).playbook_id == "top"  # type: ignore[union-attr]
    assert judged(d, "second").playbook_id == "second"  # type: ignore[union-attr]
    assert judged(d, "nope") is None


@pytest.mark.parametrize("rule", list(BanditRule))
def test_unlearn_is_the_exact_inverse(rule: BanditRule) -> None:
    config = BanditConfig(start=0.7, rule=rule, discount=0.9)
    with_vote, without = ThresholdBandit(config), ThresholdBandit(config)
    d = _decision([_cand("a", 0.75)])
    effect = learn(d, "a", FeedbackKind.LIKE, 1, LearningConfig(), with_vote)
    rng = np.random.default_rng(0)
    for step in range(2, 12):
        kind = FeedbackKind.LIKE if rng.uniform() < 0.5 else FeedbackKind.OVERRIDE
        other = _decision([_cand("b", float(rng.uniform(0.5, 1.0)))])
        learn(other, "b", kind, step, LearningConfig(), with_vote)
        learn(other, "b", kind, step, LearningConfig(), without)
    unlearn(effect, with_vote)
    np.testing.assert_allclose(with_vote.alpha, without.alpha, atol=1e-12)
    np.testing.assert_allclose(with_vote.beta, without.beta, atol=1e-12)
