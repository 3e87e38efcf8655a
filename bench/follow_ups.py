"""``python -m bench.follow_ups``: what the approval and deferral paths cost on this machine.

  idle     one run of the deferral job with nothing due, while ``--waiting`` jobs wait for a
           later window (every replica runs it every 30 s: it must cost next to nothing)
  due      ``--due`` jobs due at once, judged again by the bundled Rego policies and
           "posted" to a poster that keeps them (no network): ms per job
  approve  one approval (conditional update, decision rewritten, audit): median ms

SQLite in a temporary folder; PostgreSQL too when ``NPO_TEST_POSTGRES_URL`` (default:
127.0.0.1:5432 db ``test``) answers. Prints medians (and the range) as JSON.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from sqlalchemy import create_engine, text

from bot.db.engine import make_engine
from bot.db.migrate import upgrade
from bot.native import load_torch_first
from bot.service import FeedbackInput, IncidentInput, NPOService
from bot.service.approvals import approve
from bot.service.deferrals import DeferralPolicy, FollowUp, run_due
from bot.settings import PROJECT_ROOT
from bot.wiring import policy_engine
from core.decision import Outcome
from core.feedback import FeedbackKind
from core.npo import NPOConfig, ThresholdMode

T0 = dt.datetime(2026, 12, 3, 14, 5, tzinfo=dt.UTC)  # Thursday afternoon: changes wait
TEXT = "CRC errors on leaf-{i}:eth1/3 severity=high redundancy=2"


class _Hit:
    def __init__(self, doc_id: str, action: str, risk: str) -> None:
        self.doc_id, self.title, self.similarity = doc_id, doc_id, 0.9
        self.metadata: dict[str, Any] = {"action": action, "risk": risk, "blast_radius": 1}


class _Retriever:
    def __init__(self, hit: _Hit) -> None:
        self.hit = hit

    def search(self, query: str, k: int = 5) -> list[_Hit]:
        return [self.hit]


class _Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now


def _ms(fn: Callable[[], object], runs: int) -> dict[str, float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return {"median_ms": round(statistics.median(times), 3), "max_ms": round(max(times), 3)}


def _databases() -> Iterator[tuple[str, str]]:
    with tempfile.TemporaryDirectory(prefix="npo-bench-") as tmp:
        yield "sqlite", f"sqlite:///{tmp}/npo.db"
    pg = os.environ.get(
        "NPO_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    try:
        probe = create_engine(pg, connect_args={"connect_timeout": 3})
        with probe.connect() as conn:
            conn.execute(text("select 1"))
        probe.dispose()
    except Exception:
        return
    schema = f"b_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield "postgresql", f"{pg}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _service(url: str, hit: _Hit, clock: _Clock, policy: DeferralPolicy) -> NPOService:
    upgrade(url)
    spe = policy_engine(PROJECT_ROOT / "playbooks" / "policies")
    cfg = NPOConfig(threshold_mode=ThresholdMode.FIXED, fixed_threshold=0.7)
    return NPOService(
        make_engine(url),
        _Retriever(hit),
        spe,
        cfg,
        np.random.default_rng(0),
        clock,
        deferral=policy,
    )


def measure(url: str, waiting: int, due: int, approvals: int) -> dict[str, Any]:
    clock = _Clock()
    later = DeferralPolicy(None, dt.timedelta(days=7), max_attempts=1)
    soon = DeferralPolicy(None, dt.timedelta(minutes=30), max_attempts=1)
    svc = _service(url, _Hit("link-optic", "replace_optic", "medium"), clock, later)
    for i in range(waiting):  # deferred a week: waiting, never due in this run
        svc.recommend(IncidentInput(TEXT.format(i=i), "bench", channel="C1"))
    kept: list[FollowUp] = []
    idle = _ms(lambda: run_due(svc, soon, kept.append), 200)
    svc.deferral = soon
    for i in range(due):
        svc.recommend(IncidentInput(TEXT.format(i=i), "bench", channel="C1"))
    clock.now = T0 + dt.timedelta(minutes=30)
    started = time.perf_counter()
    while run_due(svc, soon, kept.append, limit=50)["posted"]:
        pass
    per_job = (time.perf_counter() - started) * 1000 / max(due, 1)
    assert len(kept) == due, (len(kept), due)
    # Approvals: the bundled min_redundancy policy asks for one on a drain of the last path.
    clock.now = T0
    drain = _service(url, _Hit("link-drain", "drain_link", "medium"), clock, soon)
    recs = [
        drain.recommend(
            IncidentInput(
                f"leaf-{i} CRC errors severity=critical redundancy=1", "bench", reporter="U1"
            )
        )
        for i in range(approvals)
    ]
    assert all(r.decision.outcome is Outcome.NEEDS_APPROVAL for r in recs)
    pending = iter(r.recommendation_id for r in recs)
    approve_ms = _ms(lambda: approve(drain, next(pending), "U2", True), approvals)
    like = FeedbackInput(recs[0].recommendation_id, "U3", FeedbackKind.LIKE, "b1")
    assert drain.record_feedback(like).changed
    for s in (svc, drain):
        s.engine.dispose()
    return {
        "idle_run": {**idle, "waiting_jobs": waiting},
        "due_jobs": {"jobs": due, "ms_per_job": round(per_job, 3)},
        "approve": {**approve_ms, "approvals": approvals},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--waiting", type=int, default=1000)
    parser.add_argument("--due", type=int, default=200)
    parser.add_argument("--approvals", type=int, default=200)
    args = parser.parse_args()
    load_torch_first()
    out = {}
    for name, url in _databases():
        out[name] = measure(url, args.waiting, args.due, args.approvals)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
