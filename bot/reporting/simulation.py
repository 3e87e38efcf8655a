"""Running the simulator across processes and writing its CSV, summary and plots."""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from bot.native import load_torch_first
from core.policy import MemoisedEngine, SafetyPolicyEngine
from core.rego import RegoPolicyEngine
from core.simulator import (
    RunResult,
    SimConfig,
    kappa_over_time,
    run,
    summarise,
    variant_spec,
    world,
)


def _run_seed(
    variants: Sequence[str],
    seed: int,
    config: SimConfig,
    policy_modules: Mapping[str, str] | None,
) -> list[RunResult]:
    """Every variant of one seed in one process: the seed's world (incidents, operator
    draws, M* probe) is built once and shared. One BLAS thread per job: the pool already
    has a process per core, and the model's small solves only lose time to more threads."""
    spe: SafetyPolicyEngine | None = None
    if policy_modules is not None:
        # Engines hold native state that cannot cross processes: each job builds its own.
        load_torch_first()
        spe = MemoisedEngine(RegoPolicyEngine(policy_modules))
    with threadpool_limits(limits=1, user_api="blas"):
        shared = world(seed, config)
        return [run(v, seed, config, spe, shared) for v in variants]


def run_all(
    variants: Sequence[str],
    seeds: Sequence[int],
    config: SimConfig,
    policy_modules: Mapping[str, str] | None = None,
    workers: int = 1,
    on_result: Callable[[RunResult], object] | None = None,
) -> dict[str, list[RunResult]]:
    """Every (variant, seed) run, one job per seed on a process pool when ``workers`` > 1;
    ordered by seed."""
    for v in variants:
        variant_spec(v)  # fail fast on a bad name, before any process starts
    results: dict[tuple[str, int], RunResult] = {}

    def collect(batch: list[RunResult]) -> None:
        for r in batch:
            results[(r.variant, r.seed)] = r
            if on_result:
                on_result(r)

    if workers <= 1:
        for s in seeds:
            collect(_run_seed(variants, s, config, policy_modules))
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(_run_seed, variants, s, config, policy_modules) for s in seeds]
            for fut in as_completed(futures):
                collect(fut.result())
    return {v: [results[(v, s)] for s in seeds] for v in variants}


def summary_document(
    runs: Mapping[str, Sequence[RunResult]], config: SimConfig, seeds: int
) -> dict[str, object]:
    return {
        "episodes": config.episodes,
        "seeds": seeds,
        "operator": config.operator.value,
        "variants": {v: summarise(rs).as_dict() for v, rs in runs.items()},
    }


def write_outputs(runs: Mapping[str, Sequence[RunResult]], out: Path, summary: object) -> None:
    """Write CSVs, summary and plots (mean over seeds, band = interquartile range) into
    ``out`` all at once: a failure leaves the previous contents of ``out`` untouched
    (everything is staged in a sibling folder first)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        _write_csvs(runs, staging)
        (staging / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        _write_plots(runs, staging)
        if out.exists():
            backup = out.with_name(f".{out.name}-old")
            shutil.rmtree(backup, ignore_errors=True)
            os.replace(out, backup)
            os.replace(staging, out)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _cell(x: float) -> str:
    return "" if x != x else f"{x:g}"


def _write_csvs(runs: Mapping[str, Sequence[RunResult]], folder: Path) -> None:
    with (folder / "episodes.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            ["variant", "seed", "episode", "utility", "helped", "overridden", "loss", "threshold"]
        )
        for variant, rs in runs.items():
            for r in rs:
                for t in range(len(r.loss)):
                    w.writerow(
                        [
                            variant,
                            r.seed,
                            t + 1,
                            f"{r.utility[t]:g}",
                            int(r.helped[t]),
                            int(r.overridden[t]),
                            f"{r.loss[t]:.6f}",
                            _cell(round(float(r.threshold[t]), 2)),
                        ]
                    )
    with (folder / "ticks.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["variant", "seed", "episode", "ideal", "action", "rule", "learned"])
        for variant, rs in runs.items():
            for r in rs:
                for k, ep in enumerate(r.tick_episode):
                    w.writerow(
                        [
                            variant,
                            r.seed,
                            ep,
                            _cell(r.tick_ideal[k]),
                            _cell(r.tick_action[k]),
                            _cell(r.tick_rule[k]),
                            _cell(r.tick_learned[k]),
                        ]
                    )


def _smooth(series: np.ndarray, window: int) -> np.ndarray:
    """Rolling mean over the last ``window`` values that exist (NaN: no value, e.g. the
    loss of an abstention nobody answered)."""
    if window <= 1 or len(series) < window:
        return series
    present = ~np.isnan(series)
    values = np.where(present, series, 0.0)
    kernel = np.ones(window)
    total = np.convolve(values, kernel)[: len(series)]
    count = np.convolve(present.astype(np.float64), kernel)[: len(series)]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _nan_percentile(data: np.ndarray, q: float) -> np.ndarray:
    """``np.nanpercentile(data, q, axis=0)`` (linear interpolation) in one sort: numpy's
    own falls back to a Python loop over the columns when any value is NaN, which made
    the plots of a 30-seed study cost more than its runs. NaN where a column has none."""
    ordered = np.sort(data, axis=0)  # NaNs sort last
    present = (~np.isnan(data)).sum(axis=0)
    position = np.maximum(present - 1, 0) * (q / 100.0)
    below = np.floor(position).astype(np.int64)
    above = np.minimum(below + 1, np.maximum(present - 1, 0))
    columns = np.arange(data.shape[1])
    fraction = position - below
    value = ordered[below, columns] * (1.0 - fraction) + ordered[above, columns] * fraction
    return np.where(present > 0, value, np.nan)


def _write_plots(runs: Mapping[str, Sequence[RunResult]], folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: dict[str, tuple[str, Callable[[RunResult], np.ndarray]]] = {
        "utility": ("utility per incident (rolling mean, 40 episodes)", lambda r: r.utility),
        "help_rate": ("help rate (rolling mean, 40 episodes)", lambda r: r.helped),
        "loss": ("alignment loss (rolling mean, 40 episodes)", lambda r: r.loss),
        "threshold": ("threshold τ (rolling mean, 40 episodes)", lambda r: r.threshold),
    }
    for name, (title, series_of) in panels.items():
        fig, ax = plt.subplots(figsize=(9, 5))
        for variant, rs in runs.items():
            data = np.vstack([_smooth(series_of(r), 40) for r in rs])
            if np.isnan(data).all():
                continue  # always_abstain has no threshold
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                mean = np.nanmean(data, 0)
                lo, hi = _nan_percentile(data, 25), _nan_percentile(data, 75)
            x = np.arange(1, data.shape[1] + 1)
            (line,) = ax.plot(x, mean, label=variant, linewidth=1.2)
            ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.08)
        ax.set(title=f"{title}; band: interquartile range over seeds", xlabel="episode")
        ax.legend(fontsize=7, ncol=3)
        fig.tight_layout()
        fig.savefig(folder / f"{name}.png", dpi=110)
        plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 5))
    for variant in ("full", "drift"):
        rs = runs.get(variant, ())
        if not rs or not rs[0].tick_episode:
            continue
        for series, label in (("tick_rule", "rule M"), ("tick_learned", "learned M")):
            episodes, kappa = kappa_over_time(rs, series)
            ax.plot(episodes, kappa, label=f"{variant}: {label}", linewidth=1.4)
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.set(
        title="Cohen's κ of M against the ideal M* (cumulative, pooled over seeds)",
        xlabel="episode",
        ylabel="κ",
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "meta_kappa.png", dpi=110)
    plt.close(fig)
