"""The monitor tick on a large feedback log, with votes flowing: SQLite and PostgreSQL.

The bench fills the database itself (bulk insert of synthetic historical votes, then the
learning clock moved past them), then runs one ``MonitorTicker.tick`` — load, shadow
retrain, decision, controlled retrain, save — while 8 writer threads vote through the
service's real path at a steady pace. It reports the tick's seconds, the votes' latency
during the tick (p50/p99) and, as its peer, during 3 s before it, votes that failed, and the
peak memory of the tick.

Each database runs in a spawned child so its peak RSS is its own; the child resets the
kernel's high-water mark after the fill, so the figure is the tick's (plus the writers).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import multiprocessing as mp
import threading
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import create_engine, insert, text, update
from sqlalchemy.engine import Engine

from bench.retrain import _peak_rss_mb
from bot.db.engine import make_engine, table_of
from bot.db.migrate import upgrade
from bot.db.models import LearningClock
from bot.db.scenario_code import scenario_hash
from bot.monitoring.ticker import MonitorTicker
from bot.service import FeedbackInput, FeedbackStatus, IncidentInput
from core.feedback import FeedbackKind, alignment_loss, signal
from core.npo import NPOConfig
from testkit.fakes import FakeHit, scripted_service

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
WRITERS = 8
VOTES_PER_WRITER_PER_S = 25.0  # 200 votes/s in all: 24x Slack's event cap for one app
_KINDS = [FeedbackKind.LIKE, FeedbackKind.OVERRIDE, FeedbackKind.NEUTRAL, FeedbackKind.SKIPPED]
_COLUMNS = (
    "recommendation_id",
    "playbook_id",
    "context_key",
    "operator_id",
    "kind",
    "label",
    "weight",
    "score",
    "prior",
    "similarity",
    "context_json",
    "loss",
    "reason",
    "source",
    "source_event_id",
    "withdrawn",
    "seq",
    "bandit_json",
    "created_at",
    "updated_at",
    "scenario_hash",
)


def _synthetic_rows(
    start: int, count: int, rec_id: str, rng: np.random.Generator, stamp: object
) -> list[tuple[object, ...]]:
    """Historical votes: 40 playbooks, 64 contexts, a mix of likes, overrides, neutral, skips."""
    components = ["link", "switch", "server", "service"]
    hours = ["night", "morning", "afternoon", "evening"]
    severities = ["low", "medium", "high", "critical"]
    contexts = [
        json.dumps(
            {"component": components[c % 4], "hour": hours[(c // 4) % 4], "severity": sev},
            sort_keys=True,
        )
        for c, sev in ((c, severities[c // 16]) for c in range(64))
    ]
    pbs = rng.integers(0, 40, count)
    ctx = rng.integers(0, 64, count)
    sims = rng.uniform(0.3, 0.9, count).tolist()
    scores = rng.uniform(0.2, 0.95, count).tolist()
    ks = rng.choice(4, count, p=[0.5, 0.25, 0.15, 0.1]).tolist()
    withdrawn = (rng.random(count) < 0.02).tolist()
    codes: dict[tuple[int, int, int], int] = {}
    rows: list[tuple[object, ...]] = []
    for j, (p, c, k, score) in enumerate(zip(pbs.tolist(), ctx.tolist(), ks, scores, strict=True)):
        i = start + j
        kind = _KINDS[k]
        sig = signal(kind)
        code = codes.get((k, p, c))
        if code is None:
            code = codes[k, p, c] = scenario_hash(kind.value, f"pb-{p}", contexts[c])
        rows.append(
            (
                rec_id,
                f"pb-{p}",
                f"ctx-{c}",
                f"H{i}",
                kind.value,
                sig.label,
                sig.weight,
                score,
                0.5,
                sims[j],
                contexts[c],
                alignment_loss(kind, score),
                "",
                "bench",
                f"bulk-{i}",
                withdrawn[j],
                i + 1,
                "{}",
                stamp,
                stamp,
                code,
            )
        )
    return rows


def fill(engine: Engine, rows: int, rec_id: str) -> float:
    """Bulk-insert ``rows`` historical votes on ``rec_id``; the seconds it took."""
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        postgres = engine.dialect.name == "postgresql"
        if not postgres:  # one transaction (the engine's connections are in autocommit)
            cur.execute("PRAGMA synchronous=OFF")  # a bench fill: durability is not measured
            cur.execute("BEGIN IMMEDIATE")
        now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        stamp = now if postgres else now.isoformat(" ")
        for start in range(0, rows, 50_000):
            part = _synthetic_rows(start, min(50_000, rows - start), rec_id, rng, stamp)
            if postgres:
                with cur.copy(f"COPY feedback ({', '.join(_COLUMNS)}) FROM STDIN") as copy:
                    for row in part:
                        copy.write_row(row)
            else:
                marks = ", ".join("?" for _ in _COLUMNS)
                cur.executemany(
                    f"INSERT INTO feedback ({', '.join(_COLUMNS)}) VALUES ({marks})", part
                )
        if postgres:
            raw.commit()
            cur.execute("ANALYZE feedback")
            raw.commit()
        else:
            cur.execute("COMMIT")
            cur.execute("ANALYZE feedback")
            # The history into the database file: a deployment's million votes are not a
            # fresh 500 MB write-ahead log that the first measured commits checkpoint. The
            # checkpoint syncs the file (synchronous back to FULL first): else the fill's
            # unsynced pages were flushed by the first measured checkpoint, stalling one
            # batch of votes 260 ms.
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        if not postgres:
            cur.execute("PRAGMA synchronous=FULL")  # the pooled connection as the engine made it
        raw.close()
    with engine.begin() as conn:  # the next vote's learning step comes after the history
        conn.execute(update(table_of(LearningClock)).values(step=rows))
    return time.perf_counter() - started


def _run_tick(url: str, rows: int) -> dict[str, Any]:
    """In the child: fill, then one tick with 8 paced writers voting through the service."""
    upgrade(url)
    engine = make_engine(url)
    with engine.begin() as conn:  # the clock row exists before the fill moves it
        if conn.execute(text("SELECT count(*) FROM learning_clock")).scalar_one() == 0:
            conn.execute(insert(table_of(LearningClock)), {"id": 1, "step": 0, "bandit_steps": 0})
    service = scripted_service(engine, FakeHit("pb-1", 0.8))
    history = service.recommend(IncidentInput("historical votes", "bench")).recommendation_id
    recs = [
        service.recommend(IncidentInput(f"link errors {i}", "bench")).recommendation_id
        for i in range(400)
    ]
    fill_s = fill(engine, rows, history)
    ticker = MonitorTicker(
        engine, NPOConfig(), lambda: dt.datetime.now(dt.UTC), dt.timedelta(minutes=5)
    )
    latencies: list[float] = []
    failed: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def writer(w: int) -> None:
        period = 1.0 / VOTES_PER_WRITER_PER_S
        n = 0
        next_at = time.perf_counter()
        while not stop.is_set():
            rec = recs[(w + n * WRITERS) % len(recs)]
            operator = f"U{w}-{(w + n * WRITERS) // len(recs)}"
            kind = _KINDS[n % 3]
            t = time.perf_counter()
            try:
                result = service.record_feedback(
                    FeedbackInput(rec, operator, kind, f"tick-{w}-{n}-{uuid.uuid4().hex[:6]}")
                )
                ok = result.status is FeedbackStatus.STORED
                detail = f"status {result.status.value}"
            except Exception as exc:  # a failed vote is what this bench counts
                ok, detail = False, f"{type(exc).__name__}: {exc}"
            elapsed = (time.perf_counter() - t) * 1000
            with lock:
                latencies.append(elapsed)
                if not ok:
                    failed.append(detail[:200])
            n += 1
            next_at += period
            time.sleep(max(0.0, next_at - time.perf_counter()))

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
    for t in threads:
        t.start()
    time.sleep(0.5)  # the writers are voting before the tick starts
    with lock:
        warm = len(latencies)
    time.sleep(3.0)  # the peer: the same votes on the same database, no tick running
    with lock:
        before = len(latencies)
        idle = latencies[warm:before]
    _reset_peak_rss()
    started = time.perf_counter()
    outcome = ticker.tick(force=True)
    tick_s = time.perf_counter() - started
    with lock:
        during = latencies[before:]
        failed_during = len(failed)
    stop.set()
    for t in threads:
        t.join()
    peak_mb = _peak_rss_mb()
    engine.dispose()
    return {
        "fill_s": fill_s,
        "tick_s": tick_s,
        "action": outcome.action.value if outcome else "skipped",
        "votes": len(during),
        "vote_p50_ms": float(np.percentile(during, 50)) if during else float("nan"),
        "vote_p99_ms": float(np.percentile(during, 99)) if during else float("nan"),
        "idle_votes": len(idle),
        "idle_vote_p99_ms": float(np.percentile(idle, 99)) if idle else float("nan"),
        "failed": failed_during,
        "failures": sorted(set(failed))[:3],
        "peak_mb": peak_mb,
    }


def _reset_peak_rss() -> None:
    """Start the kernel's peak-RSS counter (VmHWM) again from the current size."""
    with contextlib.suppress(OSError):  # not Linux: the peak then includes the fill
        Path("/proc/self/clear_refs").write_text("5")


def _in_child(url: str, rows: int) -> dict[str, Any]:
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(_run_tick, url, rows).result()


def _figures(r: dict[str, Any], suffix: str) -> dict[str, Any]:
    return {
        f"tick_1m_s{suffix}": r["tick_s"],
        f"tick_1m_vote_p50_ms{suffix}": r["vote_p50_ms"],
        f"tick_1m_vote_p99_ms{suffix}": r["vote_p99_ms"],
        f"tick_1m_votes_failed{suffix}": r["failed"],
        f"tick_1m_votes{suffix}": r["votes"],
        f"tick_1m_idle_vote_p99_ms{suffix}": r["idle_vote_p99_ms"],
        f"tick_1m_idle_votes{suffix}": r["idle_votes"],
        f"tick_1m_peak_mb{suffix}": r["peak_mb"],
        f"tick_1m_fill_s{suffix}": r["fill_s"],
        f"tick_1m_action{suffix}": r["action"],
    }


def run(tmp: str, rows: int) -> dict[str, Any]:
    out: dict[str, Any] = {"tick_rows": rows}
    sqlite = _in_child(f"sqlite:///{tmp}/tick.db", rows)
    out.update(_figures(sqlite, ""))
    if sqlite["failures"]:
        out["tick_1m_failures"] = "; ".join(sqlite["failures"])
    try:
        admin = create_engine(PG, connect_args={"connect_timeout": 3})
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        try:
            pg = _in_child(f"{PG}?options=-csearch_path%3D{schema}", rows)
        finally:
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        out.update(_figures(pg, "_pg"))
        if pg["failures"]:
            out["tick_1m_failures_pg"] = "; ".join(pg["failures"])
    except Exception as exc:  # report, do not fail the other benchmarks
        out["tick_pg_error"] = f"{type(exc).__name__}: {exc}"
    return out
