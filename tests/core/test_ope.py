"""Off-policy estimators on synthetic logs whose true policy values are known."""

from __future__ import annotations

import numpy as np
import pytest

from core.ope import LoggedDecision, evaluate_policy, thompson_propensities

TRUE_MEANS = np.array([0.2, 0.5, 0.8])


def _logs(n: int, behaviour: np.ndarray, seed: int) -> list[LoggedDecision]:
    rng = np.random.default_rng(seed)
    arms = rng.choice(3, size=n, p=behaviour)
    rewards = (rng.uniform(size=n) < TRUE_MEANS[arms]).astype(float)
    return [
        LoggedDecision(int(a), float(behaviour[a]), float(r))
        for a, r in zip(arms, rewards, strict=True)
    ]


@pytest.mark.parametrize("target", [[1, 0, 0], [0, 0, 1], [0.2, 0.3, 0.5]])
def test_estimators_recover_the_true_value(target: list[float]) -> None:
    logs = _logs(20000, np.array([0.5, 0.3, 0.2]), seed=4)
    truth = float(np.dot(target, TRUE_MEANS))
    for name, est in evaluate_policy(logs, target).items():
        assert est.value == pytest.approx(truth, abs=0.03), name
        assert est.low <= truth <= est.high, name


def test_clipping_bounds_the_weights() -> None:
    logs = [LoggedDecision(0, 0.001, 1.0), LoggedDecision(1, 0.999, 0.0)]
    assert evaluate_policy(logs, [1, 0], clip=10.0)["ips"].value == pytest.approx(5.0)


def test_thompson_propensities_match_the_posteriors() -> None:
    p = thompson_propensities([50, 1, 1], [1, 50, 50], np.random.default_rng(0))
    assert p[0] > 0.99 and p.sum() == pytest.approx(1.0)
    even = thompson_propensities([1, 1], [1, 1], np.random.default_rng(0), draws=20000)
    assert even == pytest.approx([0.5, 0.5], abs=0.02)


def test_invalid_inputs() -> None:
    with pytest.raises(ValueError, match="no logged"):
        evaluate_policy([], [1.0])
    with pytest.raises(ValueError, match="probability"):
        evaluate_policy([LoggedDecision(0, 1.0, 1.0)], [0.5, 0.6])
