"""Medians of repeated measurements with a 95 % interval (percentile bootstrap over the
repetitions): a figure from one run on a shared machine says little; this says how much."""

from __future__ import annotations

import statistics

import numpy as np


def median_interval(
    values: list[float], resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """The 95 % percentile-bootstrap interval of the median of ``values``."""
    if len(values) < 2:
        return (values[0], values[0]) if values else (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    data = np.asarray(values, dtype=float)
    medians = np.median(rng.choice(data, size=(resamples, len(data)), replace=True), axis=1)
    low, high = np.percentile(medians, [2.5, 97.5])
    return float(low), float(high)


def median_ci(key: str, values: list[float]) -> dict[str, object]:
    """``{key: median, key_ci: [low, high]}`` (``key_ci`` after the unit, as in results.json)."""
    low, high = median_interval(values)
    return {key: statistics.median(values), f"{key}_ci": [low, high]}
