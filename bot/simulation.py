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

from bot.native import load_torch_first
from core.policy import MemoisedEngine, SafetyPolicyEngine
from core.rego import RegoPolicyEngine
from core.simulator import RunResult, SimConfig, run, summarise, variant_spec


def _run_job(
    variant: str, seed: int, config: SimConfig, policy_modules: Mapping[str, str] | None
) -> RunResult:
    spe: SafetyPolicyEngine | None = None
    if policy_modules is not None:
        # Engines hold native state that cannot cross processes: each job builds its own.
        load_torch_first()
        spe = MemoisedEngine(RegoPolicyEngine(policy_modules))
    return run(variant, seed, config, spe)


def run_all(
    variants: Sequence[str],
    seeds: Sequence[int],
    config: SimConfig,
    policy_modules: Mapping[str, str] | None = None,
    workers: int = 1,
    on_result: Callable[[RunResult], object] | None = None,
) -> dict[str, list[RunResult]]:
    """Every (variant, seed) run, in parallel when ``workers`` > 1; ordered by seed."""
    for v in variants:
        variant_spec(v)  # fail fast on a bad name, before any process starts
    jobs = [(v, s) for s in seeds for v in variants]
    results: dict[tuple[str, int], RunResult] = {}
    if workers <= 1:
        for v, s in jobs:
            results[(v, s)] = _run_job(v, s, config, policy_modules)
            if on_result:
                on_result(results[(v, s)])
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(_run_job, v, s, config, policy_modules): (v, s) for v, s in jobs}
            for fut in as_completed(futures):
                results[futures[fut]] = fut.result()
                if on_result:
                    on_result(results[futures[fut]])
    return {v: [results[(v, s)] for s in seeds] for v in variants}


def summary_document(
    runs: Mapping[str, Sequence[RunResult]], episodes: int, seeds: int
) -> dict[str, object]:
    return {
        "episodes": episodes,
        "seeds": seeds,
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


def _write_csvs(runs: Mapping[str, Sequence[RunResult]], folder: Path) -> None:
    with (folder / "episodes.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["variant", "seed", "episode", "loss", "reward", "threshold"])
        for variant, rs in runs.items():
            for r in rs:
                for t in range(len(r.loss)):
                    w.writerow(
                        [
                            variant,
                            r.seed,
                            t + 1,
                            f"{r.loss[t]:.6f}",
                            f"{r.reward[t]:.3f}",
                            f"{r.threshold[t]:.2f}",
                        ]
                    )
    with (folder / "ticks.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["variant", "seed", "episode", "monitor_agrees_with_ideal"])
        for variant, rs in runs.items():
            for r in rs:
                for ep, agree in zip(r.tick_episode, r.tick_agree, strict=True):
                    w.writerow([variant, r.seed, ep, "" if agree != agree else int(agree)])


def _smooth(series: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(series) < window:
        return series
    kernel = np.ones(window) / window
    head = np.cumsum(series[: window - 1]) / np.arange(1, window)
    return np.concatenate([head, np.convolve(series, kernel, mode="valid")])


def _cumulative_mean(values: np.ndarray) -> np.ndarray:
    """Running mean that ignores NaN (ticks without a reference); NaN until the first value."""
    seen = ~np.isnan(values)
    counts = np.cumsum(seen)
    sums = np.cumsum(np.where(seen, values, 0.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _write_plots(runs: Mapping[str, Sequence[RunResult]], folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: dict[str, tuple[str, Callable[[RunResult], np.ndarray]]] = {
        "loss": ("alignment loss (rolling mean, 40 episodes)", lambda r: _smooth(r.loss, 40)),
        "reward": ("reward (rolling mean, 40 episodes)", lambda r: _smooth(r.reward, 40)),
        "threshold": (
            "threshold τ (rolling mean, 40 episodes)",
            lambda r: _smooth(r.threshold, 40),
        ),
    }
    for name, (title, series_of) in panels.items():
        fig, ax = plt.subplots(figsize=(9, 5))
        for variant, rs in runs.items():
            data = np.vstack([series_of(r) for r in rs])
            mean = data.mean(0)
            lo, hi = np.percentile(data, 25, axis=0), np.percentile(data, 75, axis=0)
            x = np.arange(1, data.shape[1] + 1)
            (line,) = ax.plot(x, mean, label=variant, linewidth=1.4)
            ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.12)
        ax.set(title=title, xlabel="episode")
        ax.legend(fontsize=8, ncol=2)
        fig.tight_layout()
        fig.savefig(folder / f"{name}.png", dpi=110)
        plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 5))
    for variant, rs in runs.items():
        if not rs[0].tick_agree:
            continue
        data = np.vstack([_cumulative_mean(np.asarray(r.tick_agree)) for r in rs])
        x = np.asarray(rs[0].tick_episode)
        with warnings.catch_warnings():  # early ticks have no reference in any seed
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(data, 0)
            lo, hi = np.nanpercentile(data, 25, axis=0), np.nanpercentile(data, 75, axis=0)
        (line,) = ax.plot(x, mean, label=variant, linewidth=1.4)
        ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.12)
    ax.set(title="meta-alignment fidelity (cumulative)", xlabel="episode", ylim=(0, 1.05))
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(folder / "meta_fidelity.png", dpi=110)
    plt.close(fig)
