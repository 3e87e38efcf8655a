"""``python -m bench.spe_threads``: the thread-safe SPE candidates, measured side by side.

regopy's interpreter cannot serve two threads at once. Candidates:
  lock        one interpreter, one lock around set_input + query
  per-thread  one interpreter per thread (threading.local), compiled on a thread's first use
  pool        the engine in core/rego.py: an interpreter lent per evaluation, built on demand
Each runs the same mixed evaluations from 1 thread and from 4 threads (a pool of threads that
lives for the whole benchmark, as Bolt's listener pool does), and from 4 threads that start
anew for every request of a few evaluations (an HTTP server with a thread per request). Runs
are interleaved (every candidate once per round) and repeated; each figure is the median over
the rounds with the min–max. Latency is the median wall time of one ``evaluate`` call.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from bench.stats import median_ci
from bot.governance.policies import read_policy_modules
from bot.native import load_torch_first
from bot.settings import PROJECT_ROOT
from core.policy import Action, PolicyVerdict, SafetyPolicyEngine
from core.rego import RegoPolicyEngine, compile_policies, policy_input, verdict_of
from core.scenario import Scenario

REQUEST_SIZE = 5  # evaluations per request in the thread-per-request mode


class LockedEngine:
    """Candidate (a): one interpreter behind one lock."""

    def __init__(self, modules: Mapping[str, str], policies: tuple[str, ...]) -> None:
        self._compiled = compile_policies(modules)
        self._lock = threading.Lock()
        self._policies = policies

    def evaluate(self, scenario: Scenario, action: Action) -> PolicyVerdict:
        document = policy_input(scenario, action)
        with self._lock:
            raw = self._compiled.query(document)
        return verdict_of(raw, self._policies)


class PerThreadEngine:
    """Candidate (b): an interpreter per thread, compiled lazily on the thread's first use."""

    def __init__(self, modules: Mapping[str, str], policies: tuple[str, ...]) -> None:
        self._modules = dict(modules)
        self._local = threading.local()
        self._policies = policies

    def evaluate(self, scenario: Scenario, action: Action) -> PolicyVerdict:
        compiled = getattr(self._local, "compiled", None)
        if compiled is None:
            compiled = self._local.compiled = compile_policies(self._modules)
        return verdict_of(compiled.query(policy_input(scenario, action)), self._policies)


def cases() -> list[tuple[Scenario, Action]]:
    """Questions whose verdicts differ: deny, allow, needs approval, defer."""
    calm = Scenario(
        "link",
        "crc_errors",
        severity="high",
        redundancy=2,
        maintenance_window=True,
        device="leaf-1",
    )
    last_path = Scenario(
        "link", "crc_errors", severity="high", redundancy=1, maintenance_window=True
    )
    outside_window = Scenario("server", "disk_full", severity="medium", redundancy=2)
    return [
        (calm, Action("drain_link", "leaf-1", blast_radius=50)),
        (calm, Action("drain_link", "leaf-1")),
        (last_path, Action("drain_link")),
        (outside_window, Action("drain_server")),
    ]


@dataclass(frozen=True)
class Run:
    evals_per_s: float
    median_ms: float


def _timed_calls(engine: SafetyPolicyEngine, work: list[tuple[Scenario, Action]]) -> list[float]:
    times = []
    for scenario, action in work:
        started = time.perf_counter()
        engine.evaluate(scenario, action)
        times.append(time.perf_counter() - started)
    return times


def _spread(evaluations: int, threads: int) -> list[list[tuple[Scenario, Action]]]:
    questions = cases()
    return [
        [questions[(t + i) % len(questions)] for i in range(evaluations // threads)]
        for t in range(threads)
    ]


def run_pooled(
    engine: SafetyPolicyEngine, pool: ThreadPoolExecutor, threads: int, evaluations: int
) -> Run:
    """Each of ``threads`` workers of a long-lived thread pool evaluates its share."""
    shares = _spread(evaluations, threads)
    started = time.perf_counter()
    times = [t for f in [pool.submit(_timed_calls, engine, s) for s in shares] for t in f.result()]
    return Run(len(times) / (time.perf_counter() - started), statistics.median(times) * 1000)


def run_thread_per_request(engine: SafetyPolicyEngine, evaluations: int, threads: int) -> Run:
    """``threads`` at a time, each a new thread that serves one request of a few evaluations."""
    requests = [
        share[i : i + REQUEST_SIZE]
        for share in _spread(evaluations, 1)
        for i in range(0, len(share), REQUEST_SIZE)
    ]
    times: list[float] = []
    started = time.perf_counter()
    for wave in range(0, len(requests), threads):
        workers = [
            threading.Thread(target=lambda w=w: times.extend(_timed_calls(engine, w)))
            for w in requests[wave : wave + threads]
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    return Run(len(times) / (time.perf_counter() - started), statistics.median(times) * 1000)


MODES = ("1 thread", "4 threads", "4 threads, new thread per request")


def measure(evaluations: int, repeats: int) -> dict[str, dict[str, list[Run]]]:
    """``repeats`` interleaved rounds of every candidate in every mode (after one warm-up)."""
    modules = read_policy_modules(PROJECT_ROOT / "playbooks" / "policies")
    pool_engine = RegoPolicyEngine(modules, cache_size=0)  # every call evaluates
    candidates: dict[str, SafetyPolicyEngine] = {
        "lock": LockedEngine(modules, pool_engine.policies),
        "per-thread": PerThreadEngine(modules, pool_engine.policies),
        "pool": pool_engine,
    }
    one, four = ThreadPoolExecutor(1), ThreadPoolExecutor(4)
    modes: dict[str, Callable[[SafetyPolicyEngine], Run]] = {
        MODES[0]: lambda e: run_pooled(e, one, 1, evaluations),
        MODES[1]: lambda e: run_pooled(e, four, 4, evaluations),
        MODES[2]: lambda e: run_thread_per_request(e, evaluations, 4),
    }
    runs: dict[str, dict[str, list[Run]]] = {c: {m: [] for m in modes} for c in candidates}
    try:
        for round_ in range(repeats + 1):
            for name, engine in candidates.items():
                for mode, run in modes.items():
                    result = run(engine)
                    if round_:  # round 0 warms up: first compiles, caches
                        runs[name][mode].append(result)
    finally:
        one.shutdown()
        four.shutdown()
    return runs


def engine_figures(engine: SafetyPolicyEngine, evaluations: int, repeats: int) -> dict[str, object]:
    """The engine's own figures for ``python -m bench``: medians over interleaved rounds
    (1 and 4 threads, the one that goes first alternating), with 95 % intervals."""
    runs: dict[int, list[Run]] = {1: [], 4: []}
    pools = {threads: ThreadPoolExecutor(threads) for threads in runs}
    try:
        for round_ in range(repeats + 1):
            order = list(pools.items())
            for threads, pool in order if round_ % 2 else order[::-1]:
                result = run_pooled(engine, pool, threads, evaluations)
                if round_:  # round 0 warms up
                    runs[threads].append(result)
    finally:
        for pool in pools.values():
            pool.shutdown()
    return {
        **median_ci("spe_1thread_evals_per_s", [r.evals_per_s for r in runs[1]]),
        **median_ci("spe_4threads_evals_per_s", [r.evals_per_s for r in runs[4]]),
        **median_ci("spe_4threads_ms_p50", [r.median_ms for r in runs[4]]),
    }


def _fmt(values: list[float], digits: int) -> str:
    median, low, high = statistics.median(values), min(values), max(values)
    return f"{median:.{digits}f} ({low:.{digits}f}–{high:.{digits}f})"


def report(runs: dict[str, dict[str, list[Run]]]) -> str:
    lines = [f"{'candidate':11s} {'mode':34s} {'evals/s':>22s} {'median ms/eval':>22s}"]
    for name, by_mode in runs.items():
        for mode, rs in by_mode.items():
            rate = _fmt([r.evals_per_s for r in rs], 0)
            latency = _fmt([r.median_ms for r in rs], 3)
            lines.append(f"{name:11s} {mode:34s} {rate:>22s} {latency:>22s}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.spe_threads", description=__doc__)
    parser.add_argument("--evaluations", type=int, default=2000, help="per run (default 2000)")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (default 5)")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.evaluations < 4 * REQUEST_SIZE:
        parser.error("--repeats must be >= 1 and --evaluations >= 20")
    load_torch_first()  # before regopy: see bot/native.py
    print(
        f"bench.spe_threads: {args.evaluations} evaluations per run, {args.repeats} rounds; "
        "median (min–max) over rounds",
        file=sys.stderr,
    )
    print(report(measure(args.evaluations, args.repeats)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
