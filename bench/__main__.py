"""``make bench``: measure the bot on this machine and print medians and ratios.

Each figure is compared with its floor or peer in the same run:
  pipeline   incident → recommendation posted to a fake Web API, 1,000 playbooks indexed,
             against the floor (one query embedding + one Chroma query), 5 interleaved
             repetitions (median, 95 % interval); Slack ack latency under 5 bursts of 200
             events (median of the bursts' p50/p99, 95 % interval)
  embeddings ONNX (float32, int8) against PyTorch in the same run: query p50, indexing,
             retrieval MRR on the runbook corpus's pairs.jsonl
  statements the decision's hot select through Connection.execute, prepared, and on the
             driver alone, hot and after a 32 MB cache sweep (5 interleaved repetitions)
  tick       one monitor tick on 1M stored votes (SQLite, PostgreSQL) while 8 writers vote
  ingest     durable feedback writes through the service: SQLite and PostgreSQL, 1 and 8
             writers, with exact final counts
  retrain    fitting the retrain model on 100k and 1M synthetic feedback rows (s, peak MB)
  simulate   400 episodes x 5 seeds x every variant, 1 worker vs 2 workers (episodes/s)
  spe        one Rego evaluation: compiled bundle vs the memoised cache (median ms, 5
             interleaved rounds, 95 % interval); one shared engine from 1 and 4 threads
Writes bench/results.json (not committed), with each section's seconds (``bench_*_s``).
``--quick`` shrinks every size and uses one PyTorch thread, for a smoke run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import embeddings, ingest, pipeline, retrain, spe_threads, statements, tick
from bench.stats import median_ci
from bot.governance.policies import read_policy_modules
from bot.native import load_torch_first, one_blas_thread
from bot.reporting.simulation import run_all
from bot.settings import PROJECT_ROOT, Settings
from core.policy import Action, MemoisedEngine, SafetyPolicyEngine
from core.rego import RegoPolicyEngine
from core.scenario import Scenario
from core.simulator import VARIANTS, SimConfig


def bench_simulate(episodes: int, seeds: int) -> dict[str, float]:
    config = SimConfig(episodes=episodes)
    out: dict[str, float] = {}
    for workers in (1, min(2, os.cpu_count() or 1)):
        start = time.perf_counter()
        run_all(VARIANTS, list(range(seeds)), config, None, workers)
        elapsed = time.perf_counter() - start
        out[f"simulate_{workers}w_s"] = elapsed
        out[f"simulate_{workers}w_episodes_per_s"] = len(VARIANTS) * seeds * episodes / elapsed
    return out


def bench_spe(evaluations: int, rounds: int = 5) -> dict[str, Any]:
    """One Rego evaluation, compiled bundle against the memoised cache and the engine's own
    verdict cache (a hit: the question asked again): ``rounds``
    interleaved rounds (the one that goes first alternating) of ``evaluations`` calls each;
    each round's median, reported as a median over the rounds with a 95 % interval."""
    modules = read_policy_modules(PROJECT_ROOT / "playbooks" / "policies")
    engine = RegoPolicyEngine(modules, cache_size=0)  # every call evaluates the bundle
    cached = RegoPolicyEngine(modules)  # the bot's engine: verdicts cached by policy input
    memo = MemoisedEngine(engine)
    scenario = Scenario("link", "crc_errors", severity="high", redundancy=1, device="leaf-1")
    action = Action("drain_link", "leaf-1")

    def median_ms(fn: SafetyPolicyEngine) -> float:
        times = []
        for _ in range(evaluations):
            t = time.perf_counter()
            fn.evaluate(scenario, action)
            times.append((time.perf_counter() - t) * 1000)
        return statistics.median(times)

    candidates: list[tuple[str, SafetyPolicyEngine]] = [
        ("spe_eval_ms_p50", engine),
        ("spe_memoised_ms_p50", memo),
        ("spe_cached_ms_p50", cached),
    ]
    rounds_ms: dict[str, list[float]] = {key: [] for key, _ in candidates}
    for round_ in range(rounds):
        for key, candidate in candidates if round_ % 2 == 0 else candidates[::-1]:
            rounds_ms[key].append(median_ms(candidate))
    figures: dict[str, Any] = {}
    for key, values in rounds_ms.items():
        figures.update(median_ci(key, values))
    # one engine shared by 1 and by 4 threads (bench/spe_threads.py compares the candidates)
    figures.update(spe_threads.engine_figures(engine, evaluations, rounds))
    return figures


def _one_torch_thread() -> None:
    """A smoke run on a shared machine: PyTorch's intra-op pool spins on busy cores (one
    query embedding took 5x longer with 2 threads than with 1 at a load of 9 on 2 cores)."""
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes for a smoke run")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results.json")
    args = parser.parse_args(argv)
    load_torch_first()
    one_blas_thread()  # as the bot runs: bot/wiring.py

    results: dict[str, Any] = {}
    quick = args.quick
    if quick:
        _one_torch_thread()
    tmp = tempfile.mkdtemp(prefix="npo-bench-")
    cache = Path(tempfile.gettempdir()) / "npo-bench-onnx"  # exports kept between runs
    steps: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        (
            "pipeline",
            lambda: pipeline.run(
                20 if quick else 1000,
                8 if quick else 100,
                8 if quick else 200,
                repeats=5,
                backend=Settings().embedding_backend,
                cache_dir=cache,
            ),
        ),
        (
            "embeddings",
            lambda: embeddings.run(5, 8 if quick else 60, 16 if quick else 192, quick, cache),
        ),
        ("statements", lambda: statements.run(5, 100 if quick else 300)),
        ("tick", lambda: tick.run(tmp, 50_000 if quick else 1_000_000)),
        ("ingest", lambda: ingest.run(tmp, 200 if quick else 2000)),
        ("retrain 100k", lambda: retrain.run(10_000 if quick else 100_000)),
        ("retrain 1M", lambda: retrain.run(100_000 if quick else 1_000_000)),
        ("simulate", lambda: bench_simulate(100 if quick else 400, 2 if quick else 5)),
        ("spe", lambda: bench_spe(200 if quick else 2000)),
    ]
    started = time.perf_counter()
    for name, step in steps:
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        section = time.perf_counter()
        figures = step()
        # Where a run's time goes: the budget of ``make bench`` is kept section by section.
        figures[f"bench_{name.replace(' ', '_')}_s"] = time.perf_counter() - section
        for key, value in figures.items():  # as it goes: a long run shows progress
            print(
                f"  {key} = {value:.3f}" if isinstance(value, float) else f"  {key} = {value}",
                file=sys.stderr,
                flush=True,
            )
        results.update(figures)
    one, two = results["simulate_1w_episodes_per_s"], results.get("simulate_2w_episodes_per_s")
    results["simulate_episodes_per_s"] = max(one, two or one)
    results["retrain_1m_s"] = results.get("retrain_1m_s", results.get("retrain_100k_s"))
    results["ingest_postgres_8w_per_s"] = results.get("ingest_postgres_8w_per_s")
    results["bench_total_s"] = time.perf_counter() - started
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    if args.json:
        print(json.dumps(results))
    else:
        width = max(len(k) for k in results)
        for key, value in results.items():
            shown = f"{value:12.3f}" if isinstance(value, float) else f"{value!s:>12s}"
            print(f"{key:{width}s}  {shown}")
        if two:
            print(f"{'2 workers / 1 worker':{width}s}  {two / one:12.2f}x")
        print(
            f"{'SPE bundle / memoised':{width}s}  "
            f"{results['spe_eval_ms_p50'] / results['spe_memoised_ms_p50']:12.1f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
