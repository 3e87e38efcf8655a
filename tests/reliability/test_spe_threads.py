"""One shared Rego SPE evaluated from several threads at once returns each caller its own
verdict (Bolt's listener pool and the HTTP server's threads share the engine).

A shared interpreter used to hand verdicts to the wrong request (a DENY came back as ALLOW)
and could crash the process, so the threaded part runs in a child process: a crash is a
failed exit code here, not a dead test run.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

from core.policy import Action, PolicyVerdict, Verdict
from core.rego import RegoPolicyEngine
from core.scenario import Scenario

ROOT = Path(__file__).resolve().parents[2]
THREADS = 4
PER_THREAD = 1000

_CALM = Scenario(
    "link", "crc_errors", severity="high", redundancy=2, maintenance_window=True, device="leaf-1"
)
# Questions whose verdicts differ, with the verdict the bundled policies must return.
CASES: list[tuple[Scenario, Action, Verdict]] = [
    (_CALM, Action("drain_link", "leaf-1", blast_radius=50), Verdict.DENY),  # blast radius
    (_CALM, Action("drain_link", "leaf-1"), Verdict.ALLOW),  # redundancy 2, in a window
    (  # the last redundant path
        Scenario("link", "crc_errors", severity="high", redundancy=1, maintenance_window=True),
        Action("drain_device", "spine-2"),
        Verdict.NEEDS_APPROVAL,
    ),
    (  # outside a window, three rules fire
        Scenario("server", "disk_full", severity="medium", redundancy=1, device="db-3"),
        Action("drain_server", blast_radius=5),
        Verdict.DEFER,
    ),
    (  # another change is touching the device
        Scenario("server", "oom", severity="critical", device="app-7", active_changes=("app-7",)),
        Action("restart_service", risk="low"),
        Verdict.DENY,
    ),
]


def _fields(obj: Scenario | Action) -> dict[str, object]:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.init}


# The child: one engine shared by every thread; each verdict (and its rules) is compared with
# the one computed single-threaded by the parent. It loads no torch, so regopy may come first.
CHILD = """
import json, sys, threading
from core.policy import Action
from core.rego import RegoPolicyEngine
from core.scenario import Scenario

job = json.load(sys.stdin)
kwargs = {"max_interpreters": job["max_interpreters"]} if job["max_interpreters"] else {}
engine = RegoPolicyEngine(job["modules"], cache_size=0, **kwargs)  # every call evaluates
cases = [
    (Scenario(**{**s, "active_changes": tuple(s["active_changes"])}), Action(**a))
    for s, a in job["cases"]
]
expected = job["expected"]
wrong, deny_as_allow, done = [0], [0], [0]
lock = threading.Lock()
start = threading.Barrier(job["threads"])

def shape(v):
    return [v.verdict.value, [[r.policy, r.verdict.value, r.message] for r in v.rules]]

def work(offset):
    start.wait()
    bad = denied_allowed = 0
    for i in range(job["per_thread"]):
        k = (offset + i) % len(cases)
        got = shape(engine.evaluate(*cases[k]))
        if got != expected[k]:
            bad += 1
            denied_allowed += expected[k][0] == "deny" and got[0] == "allow"
    with lock:
        wrong[0] += bad
        deny_as_allow[0] += denied_allowed
        done[0] += job["per_thread"]

threads = [threading.Thread(target=work, args=(t,)) for t in range(job["threads"])]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps({
    "evaluations": done[0], "wrong": wrong[0], "deny_as_allow": deny_as_allow[0],
    "interpreters": getattr(engine, "interpreters", None),
}))
"""


def _shape(verdict: PolicyVerdict) -> list[object]:
    return [verdict.verdict.value, [[r.policy, r.verdict.value, r.message] for r in verdict.rules]]


def _run_child(policy_modules: dict[str, str], max_interpreters: int | None) -> dict[str, int]:
    single = RegoPolicyEngine(policy_modules)  # the reference, computed on one thread
    expected = []
    for scenario, action, verdict in CASES:
        got = single.evaluate(scenario, action)
        assert got.verdict is verdict, (scenario, action, got)
        expected.append(_shape(got))
    job = {
        "modules": policy_modules,
        "cases": [[_fields(s), _fields(a)] for s, a, _ in CASES],
        "expected": expected,
        "threads": THREADS,
        "per_thread": PER_THREAD,
        "max_interpreters": max_interpreters,
    }
    child = subprocess.run(
        [sys.executable, "-c", CHILD],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert child.returncode == 0, (
        f"child exited with {child.returncode} (negative: killed by that signal, e.g. -11 is "
        f"a segfault)\nstdout: {child.stdout[-2000:]}\nstderr: {child.stderr[-2000:]}"
    )
    report: dict[str, int] = json.loads(child.stdout.strip().splitlines()[-1])
    return report


def test_one_shared_engine_gives_every_thread_its_own_verdict(
    policy_modules: dict[str, str],
) -> None:
    report = _run_child(policy_modules, None)
    assert report["evaluations"] == THREADS * PER_THREAD
    assert report["wrong"] == 0, report


def test_a_capped_pool_makes_the_extra_threads_wait(policy_modules: dict[str, str]) -> None:
    report = _run_child(policy_modules, 2)
    assert report["evaluations"] == THREADS * PER_THREAD
    assert report["wrong"] == 0, report
    assert 1 <= report["interpreters"] <= 2, report
