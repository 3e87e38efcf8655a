from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bot.reporting.simulation import _nan_percentile, run_all, summary_document, write_outputs
from core.simulator import SimConfig


@pytest.mark.parametrize("q", [0.0, 25.0, 50.0, 75.0, 100.0])
def test_nan_percentile_is_numpys(q: float) -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(size=(9, 40))
    data[rng.uniform(size=data.shape) < 0.3] = np.nan
    data[:, 3] = np.nan  # a column without a value
    data[:8, 4] = np.nan  # … and one with a single value
    with pytest.warns(RuntimeWarning):
        expected = np.nanpercentile(data, q, axis=0)
    np.testing.assert_allclose(_nan_percentile(data, q), expected, rtol=1e-12, equal_nan=True)


def test_a_small_study_writes_its_outputs(tmp_path: Path) -> None:
    config = SimConfig(episodes=40)
    runs = run_all(["full", "always_abstain"], [0, 1], config, workers=2)
    assert [r.seed for r in runs["full"]] == [0, 1]
    out = tmp_path / "sim"
    write_outputs(runs, out, summary_document(runs, config, 2))
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["variants"]) == {"full", "always_abstain"}
    assert len((out / "episodes.csv").read_text().splitlines()) == 1 + 2 * 2 * 40
    assert (out / "utility.png").stat().st_size > 0
