from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.feedback import FeedbackKind, RollingLoss, alignment_loss, signal

scores = st.floats(0.0, 1.0, allow_nan=False)


@given(scores)
def test_loss_table(s: float) -> None:
    assert alignment_loss(FeedbackKind.LIKE, s) == pytest.approx(1.0 - s)
    assert alignment_loss(FeedbackKind.OVERRIDE, s) == pytest.approx(s)
    assert alignment_loss(FeedbackKind.NEUTRAL, s) == pytest.approx(0.25 * abs(s - 0.5))
    assert alignment_loss(FeedbackKind.SKIPPED, s) == pytest.approx(0.1)
    assert alignment_loss(FeedbackKind.SKIPPED, s, skip_loss=0.3) == pytest.approx(0.3)


def test_labels_and_weights() -> None:
    assert (signal(FeedbackKind.LIKE).label, signal(FeedbackKind.LIKE).weight) == (1.0, 1.0)
    assert (signal(FeedbackKind.OVERRIDE).label, signal(FeedbackKind.OVERRIDE).weight) == (0.0, 1.0)
    assert (signal(FeedbackKind.NEUTRAL).label, signal(FeedbackKind.NEUTRAL).weight) == (0.5, 0.25)
    assert (signal(FeedbackKind.SKIPPED).label, signal(FeedbackKind.SKIPPED).weight) == (None, 0.0)


@pytest.mark.parametrize("bad", [-0.01, 1.01, float("nan")])
def test_loss_rejects_scores_outside_unit_interval(bad: float) -> None:
    with pytest.raises(ValueError, match="score"):
        alignment_loss(FeedbackKind.LIKE, bad)


@given(
    st.lists(st.tuples(st.sampled_from(list(FeedbackKind)), scores), min_size=1, max_size=60),
    st.integers(1, 20),
)
def test_rolling_aggregates_match_a_direct_computation(
    items: list[tuple[FeedbackKind, float]], window: int
) -> None:
    rolling = RollingLoss(window=window, ewma_alpha=0.3)
    rolling.extend(items)
    tail = items[-window:]
    summary = rolling.summary()
    assert summary.count == len(tail)
    assert summary.mean == pytest.approx(sum(loss for _, loss in tail) / len(tail))
    assert summary.overrides == sum(k is FeedbackKind.OVERRIDE for k, _ in tail)
    assert summary.likes == sum(k is FeedbackKind.LIKE for k, _ in tail)
    ewma = items[0][1]
    for _, loss in items[1:]:
        ewma += 0.3 * (loss - ewma)
    assert summary.ewma == pytest.approx(ewma)


def test_rolling_loss_validation() -> None:
    with pytest.raises(ValueError, match="window"):
        RollingLoss(window=0)
    with pytest.raises(ValueError, match="ewma_alpha"):
        RollingLoss(ewma_alpha=0.0)
