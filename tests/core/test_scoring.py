from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.feedback import FeedbackKind
from core.scoring import ScenarioScore, ScoreTable, ScoringConfig, blend


@settings(max_examples=40, deadline=None)
@given(st.floats(0.05, 0.95), st.floats(0.05, 0.5), st.integers(0, 2**31 - 1))
def test_refinement_converges_to_a_stationary_like_rate(p: float, eta: float, seed: int) -> None:
    """With likes at rate p and overrides otherwise, E[s] at the fixed point is p."""
    rng = np.random.default_rng(seed)
    score = ScenarioScore(0.5)
    tail: list[float] = []
    steps = 4000
    for t in range(steps):
        kind = FeedbackKind.LIKE if rng.uniform() < p else FeedbackKind.OVERRIDE
        score = score.refined(kind, eta)
        if t >= steps // 2:
            tail.append(score.value)
    # The stationary s has variance ≈ η·p(1−p)/(2−η) and correlation time ≈ 1/η.
    se = np.sqrt(eta * p * (1 - p) / (2 - eta) / (len(tail) * eta / 2))
    assert abs(np.mean(tail) - p) < 5 * se + 0.01


@given(st.floats(0, 1), st.floats(0.01, 1.0))
def test_one_step_moves_towards_the_label_by_eta_times_weight(s: float, eta: float) -> None:
    assert ScenarioScore(s).refined(FeedbackKind.LIKE, eta).value == pytest.approx(
        s + eta * (1 - s)
    )
    assert ScenarioScore(s).refined(FeedbackKind.OVERRIDE, eta).value == pytest.approx(s - eta * s)
    neutral = ScenarioScore(s).refined(FeedbackKind.NEUTRAL, eta).value
    assert neutral == pytest.approx(s + eta * 0.25 * (0.5 - s))


def test_skipped_changes_nothing() -> None:
    score = ScenarioScore(0.3, 4)
    assert score.refined(FeedbackKind.SKIPPED, 0.2) == score


@given(st.floats(0, 1), st.integers(0, 50), st.floats(0, 1), st.floats(0, 10))
def test_blend_is_a_weighted_mean(local: float, n: int, prior: float, k: float) -> None:
    value = blend(ScenarioScore(local, n), prior, k)
    if n == 0:
        assert value == prior
    else:
        assert value == pytest.approx((n * local + k * prior) / (n + k))
        assert min(local, prior) - 1e-12 <= value <= max(local, prior) + 1e-12


def test_blend_without_local_evidence_is_the_prior() -> None:
    assert blend(None, 0.42, 3.0) == 0.42


def test_table_starts_new_scenarios_from_the_prior_and_round_trips() -> None:
    table = ScoreTable(ScoringConfig(eta=0.5, blend_k=1.0))
    sid = ("pb-1", "abc")
    assert table.score(sid, 0.6) == 0.6
    assert table.update(sid, FeedbackKind.LIKE, 0.6) == pytest.approx(0.8)
    assert table.score(sid, 0.6) == pytest.approx((1 * 0.8 + 1.0 * 0.6) / 2)
    restored = ScoreTable.from_dict(table.to_dict(), table.config)
    assert restored.get(sid) == table.get(sid)
    assert len(restored) == 1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"eta": 0.0}, "eta"), ({"eta": 1.5}, "eta"), ({"blend_k": -1.0}, "blend_k")],
)
def test_invalid_scoring_config(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}:"):
        ScoringConfig(**kwargs)
