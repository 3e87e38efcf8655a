"""The interval the bench reports around each median."""

from __future__ import annotations

import math

from bench.stats import median_ci, median_interval


def test_interval_brackets_the_median_and_shrinks_with_agreement() -> None:
    spread = [10.0, 12.0, 9.0, 30.0, 11.0]
    low, high = median_interval(spread)
    assert low <= 11.0 <= high
    assert low >= 9.0 and high <= 30.0
    tight_low, tight_high = median_interval([11.0, 11.1, 10.9, 11.0, 11.05])
    assert tight_high - tight_low < (high - low) / 10
    assert median_interval(spread) == (low, high)  # seeded: the same run prints the same


def test_median_ci_keys_and_degenerate_inputs() -> None:
    figures = median_ci("ratio_p50", [1.2, 1.4, 1.3])
    assert figures["ratio_p50"] == 1.3
    interval = figures["ratio_p50_ci"]
    assert isinstance(interval, list)
    assert 1.2 <= interval[0] <= 1.3 <= interval[1] <= 1.4
    assert median_interval([2.0]) == (2.0, 2.0)
    assert all(math.isnan(x) for x in median_interval([]))
