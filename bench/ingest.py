"""Feedback ingest throughput: durable writes through the service, 1 and 8 writers."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from sqlalchemy import create_engine, text
from sqlmodel import Session, func, select

from bot.db.engine import make_engine
from bot.db.migrate import upgrade
from bot.db.models import Feedback
from bot.service import FeedbackInput, IncidentInput
from core.feedback import FeedbackKind
from testkit.fakes import FakeHit, scripted_service

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _throughput(url: str, writers: int, events: int) -> dict[str, Any]:
    upgrade(url)
    engine = make_engine(url)
    service = scripted_service(engine, FakeHit("pb", 0.8))
    recs = [
        service.recommend(IncidentInput(f"link errors {i}", "bench")).recommendation_id
        for i in range(events)
    ]
    errors: list[BaseException] = []

    def work(w: int) -> None:
        try:
            for i in range(w, events, writers):
                service.record_feedback(
                    FeedbackInput(recs[i], f"U{w}", FeedbackKind.LIKE, f"ev-{i}")
                )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(writers)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    with Session(engine) as s:
        stored = int(s.exec(select(func.count()).select_from(Feedback)).one())
    engine.dispose()
    if errors:
        raise errors[0]
    return {"per_s": events / elapsed, "stored": stored, "expected": events}


def run(tmp: str, events: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for writers in (1, 8):
        r = _throughput(f"sqlite:///{tmp}/ingest-{writers}.db", writers, events)
        out[f"ingest_sqlite_{writers}w_per_s"] = r["per_s"]
        out[f"ingest_sqlite_{writers}w_exact"] = r["stored"] == r["expected"]
    # The headline is 8 writers: Slack delivers votes concurrently (one HTTP request thread
    # each), and concurrent votes are what group commit batches. 1 writer is reported too.
    out["ingest_sqlite_per_s"] = out["ingest_sqlite_8w_per_s"]
    try:
        admin = create_engine(PG, connect_args={"connect_timeout": 3})
        for writers in (1, 8):
            schema = f"bench_{uuid.uuid4().hex[:8]}"
            with admin.begin() as conn:
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            try:
                r = _throughput(f"{PG}?options=-csearch_path%3D{schema}", writers, events)
            finally:
                with admin.begin() as conn:
                    conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            out[f"ingest_postgres_{writers}w_per_s"] = r["per_s"]
            out[f"ingest_postgres_{writers}w_exact"] = r["stored"] == r["expected"]
    except Exception as exc:  # report, do not fail the other benchmarks
        out["ingest_postgres_error"] = f"{type(exc).__name__}: {exc}"
    return out
