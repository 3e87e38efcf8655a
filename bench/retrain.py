"""Retrain cost: fitting the retrain model on synthetic feedback logs, in a fresh process.

The fit runs in a spawned child so its peak memory is its own (the child reports it);
the functions live here, not in ``bench/__main__``, because a spawned child cannot import
a package's ``__main__`` module.
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from core.feedback import FeedbackKind
from core.model import Example, FitConfig, fit


def synthetic_log(rows: int, rng: np.random.Generator) -> list[Example]:
    kinds = [FeedbackKind.LIKE, FeedbackKind.OVERRIDE, FeedbackKind.NEUTRAL, FeedbackKind.SKIPPED]
    components = ["link", "switch", "server", "service"]
    hours = ["night", "morning", "afternoon", "evening"]
    severities = ("low", "medium", "high", "critical")
    pbs = rng.integers(0, 40, rows)
    comps = rng.integers(0, 4, rows)
    hrs = rng.integers(0, 4, rows)
    sev = rng.integers(0, 4, rows)
    sims = rng.uniform(0.3, 0.9, rows)
    ks = rng.choice(4, rows, p=[0.5, 0.25, 0.15, 0.1])
    return [
        Example(
            f"pb-{pbs[i]}",
            {
                "component": components[comps[i]],
                "hour": hours[hrs[i]],
                "severity": severities[sev[i]],
            },
            float(sims[i]),
            kinds[ks[i]],
        )
        for i in range(rows)
    ]


def _peak_rss_mb() -> float:
    """This process's own peak RSS. Linux carries ``ru_maxrss`` across fork and exec, so a
    child spawned by a large parent would report the parent's size: read VmHWM instead."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _fit_in_child(rows: int) -> tuple[float, int, float]:
    """(seconds to fit, rows trained on, this process's peak RSS in MB)."""
    log = synthetic_log(rows, np.random.default_rng(0))
    start = time.perf_counter()
    model = fit(log, FitConfig())
    elapsed = time.perf_counter() - start
    return elapsed, model.trained_on, _peak_rss_mb()


def run(rows: int) -> dict[str, float]:
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        elapsed, trained, peak_mb = pool.submit(_fit_in_child, rows).result()
    label = f"{rows // 1_000_000}m" if rows >= 1_000_000 else f"{rows // 1000}k"
    return {
        f"retrain_{label}_s": elapsed,
        f"retrain_{label}_rows": trained,
        f"retrain_{label}_peak_mb": peak_mb,
    }
