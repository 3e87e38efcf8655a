"""Retention: processed events and audit entries older than their cutoff go (audit rows
archived first, completely), newer ones stay; a broken archive deletes nothing; one run a
day however many replicas try."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bot.cli.commands import main
from bot.db.engine import make_engine, transaction
from bot.db.models import AuditEntry, ProcessedEvent, SchedulerState
from bot.monitoring.retention import (
    LOCKED,
    NOT_DUE,
    RetentionPolicy,
    RetentionReport,
    run_retention,
)
from bot.reporting.audit import export
from bot.settings import Settings

NOW = dt.datetime(2026, 12, 1, 3, 15, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
SECOND = dt.timedelta(seconds=1)

# (id, age): the first ones are past their cutoff (30 days / 365 days), the rest are not.
EVENT_AGES = {
    "ev-old-1": 400 * DAY,
    "ev-old-2": 31 * DAY,
    "ev-old-3": 30 * DAY + SECOND,
    "ev-keep-1": 30 * DAY - SECOND,
    "ev-keep-2": DAY,
    "ev-keep-3": dt.timedelta(0),
}
AUDIT_AGES = {
    "old-1": 800 * DAY,
    "old-2": 400 * DAY,
    "old-3": 365 * DAY + SECOND,
    "keep-1": 365 * DAY - SECOND,
    "keep-2": 31 * DAY,
    "keep-3": dt.timedelta(0),
}


def _fill(engine: Engine) -> None:
    with transaction(engine) as session:
        for event_id, age in EVENT_AGES.items():
            session.add(ProcessedEvent(event_id=event_id, created_at=NOW - age))
        for subject, age in AUDIT_AGES.items():
            session.add(
                AuditEntry(
                    actor="U1",
                    action="feedback:like",
                    subject=subject,
                    detail_json=json.dumps({"subject": subject, "n": [1, "é"]}),
                    created_at=NOW - age,
                )
            )


def _left(engine: Engine) -> tuple[list[str], list[str]]:
    with Session(engine) as session:
        events = session.exec(select(ProcessedEvent.event_id)).all()
        audit = session.exec(select(AuditEntry.subject).order_by(col(AuditEntry.id))).all()
    return sorted(events), list(audit)


def _runs(engine: Engine) -> int:
    with Session(engine) as session:
        state = session.get(SchedulerState, "retention")
        return state.runs if state else 0


def _exported(engine: Engine) -> list[dict[str, Any]]:
    out = io.StringIO()
    export(engine, dt.datetime(1970, 1, 1, tzinfo=dt.UTC), "jsonl", out)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def _archived(folder: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for path in sorted(folder.glob("audit-*.jsonl"))
        for line in path.read_text(encoding="utf-8").splitlines()
    ]


KEPT_EVENTS = ["ev-keep-1", "ev-keep-2", "ev-keep-3"]
KEPT_AUDIT = ["keep-1", "keep-2", "keep-3"]


def test_rows_older_than_each_cutoff_go_and_newer_ones_stay(engine: Engine) -> None:
    _fill(engine)
    report = run_retention(engine, RetentionPolicy(batch_size=2), NOW)  # 2 batches each
    assert (report.ran, report.events, report.audit, report.archive) == (True, 3, 3, None)
    assert _left(engine) == (KEPT_EVENTS, KEPT_AUDIT)
    assert _runs(engine) == 1


def test_audit_days_zero_keeps_the_audit_log_forever(engine: Engine) -> None:
    _fill(engine)
    report = run_retention(engine, RetentionPolicy(events_days=1, audit_days=0), NOW)
    assert (report.events, report.audit, report.audit_cutoff) == (4, 0, None)
    assert _left(engine) == (["ev-keep-2", "ev-keep-3"], list(AUDIT_AGES))  # 1 day: kept


def test_the_archive_is_complete_and_synced_before_the_first_delete(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fill(engine)
    old_rows = [row for row in _exported(engine) if row["subject"].startswith("old-")]
    archive = tmp_path / "archive"
    seen_at_delete: list[list[dict[str, Any]]] = []
    synced: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr("bot.monitoring.retention.os.fsync", fsync)

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE FROM AUDIT_LOG"):
            assert synced, "an audit row was deleted before the archive was fsynced"
            seen_at_delete.append(_archived(archive))

    event.listen(engine, "before_cursor_execute", before)
    try:
        report = run_retention(engine, RetentionPolicy(archive_dir=archive, batch_size=2), NOW)
    finally:
        event.remove(engine, "before_cursor_execute", before)
    assert report.audit == 3 and report.archive is not None and report.archive.exists()
    assert seen_at_delete and all(rows == old_rows for rows in seen_at_delete)
    assert _archived(archive) == old_rows  # exactly the deleted rows, in the export's format
    assert [p.name for p in archive.iterdir()] == [report.archive.name]  # no partial file
    assert _left(engine) == (KEPT_EVENTS, KEPT_AUDIT)


def test_an_archive_that_cannot_be_written_deletes_nothing(
    engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _fill(engine)
    not_a_folder = tmp_path / "archive"
    not_a_folder.write_text("a file where the archive folder should be")
    with caplog.at_level(logging.ERROR, logger="bot.monitoring.retention"):
        report = run_retention(engine, RetentionPolicy(archive_dir=not_a_folder), NOW)
    assert report.error and str(not_a_folder) in report.error
    assert (report.events, report.audit) == (0, 0)
    assert "nothing deleted" in caplog.text
    assert _left(engine) == (sorted(EVENT_AGES), list(AUDIT_AGES))


def test_dry_run_counts_only(engine: Engine, tmp_path: Path) -> None:
    _fill(engine)
    archive = tmp_path / "archive"
    report = run_retention(engine, RetentionPolicy(archive_dir=archive), NOW, dry_run=True)
    assert (report.dry_run, report.events, report.audit) == (True, 3, 3)
    assert _left(engine) == (sorted(EVENT_AGES), list(AUDIT_AGES))
    assert not archive.exists() and _runs(engine) == 0  # the day's run is still to come


def test_two_replicas_at_once_run_it_once(engine: Engine, db_url: str, tmp_path: Path) -> None:
    _fill(engine)
    archive = tmp_path / "archive"
    policy = RetentionPolicy(archive_dir=archive)
    other = make_engine(db_url)
    barrier = threading.Barrier(2)
    reports: list[RetentionReport] = []

    def replica(eng: Engine) -> None:
        barrier.wait()
        reports.append(run_retention(eng, policy, NOW))

    threads = [threading.Thread(target=replica, args=(eng,)) for eng in (engine, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    other.dispose()
    assert sorted(r.ran for r in reports) == [False, True]
    [skipped] = [r for r in reports if not r.ran]
    assert skipped.skipped in (LOCKED, NOT_DUE)
    assert sum(r.events for r in reports) == 3 and sum(r.audit for r in reports) == 3
    assert len(list(archive.glob("audit-*.jsonl"))) == 1 and _runs(engine) == 1

    later = run_retention(engine, policy, NOW + 6 * dt.timedelta(hours=1))
    assert (later.ran, later.skipped) == (False, NOT_DUE)
    assert run_retention(engine, policy, NOW + DAY).ran and _runs(engine) == 2


def test_fewer_than_one_day_of_processed_events_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="retention_events_days"):
        RetentionPolicy(events_days=0.5)
    with pytest.raises(ValueError, match="retention_audit_days"):
        RetentionPolicy(audit_days=0.5)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NPO_RETENTION_EVENTS_DAYS", "0.04")
    with pytest.raises(ValidationError, match="retention_events_days"):
        Settings()
    monkeypatch.setenv("NPO_RETENTION_EVENTS_DAYS", "2")
    monkeypatch.setenv("NPO_RETENTION_AUDIT_DAYS", "0.5")
    with pytest.raises(ValidationError, match="retention_audit_days"):
        Settings()
    monkeypatch.setenv("NPO_RETENTION_AUDIT_DAYS", "0")
    monkeypatch.setenv("NPO_AUDIT_ARCHIVE_DIR", str(tmp_path / "arch"))
    policy = RetentionPolicy.from_settings(Settings())
    assert (policy.events_days, policy.audit_days, policy.archive_dir) == (2, 0, tmp_path / "arch")


def test_the_cli_runs_retention(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NPO_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("NPO_AUDIT_ARCHIVE_DIR", str(tmp_path / "archive"))
    assert main(["db", "upgrade"]) == 0
    engine = make_engine(f"sqlite:///{tmp_path}/npo.db")
    now = dt.datetime.now(dt.UTC)
    with transaction(engine) as session:
        session.add(ProcessedEvent(event_id="old", created_at=now - 40 * DAY))
        session.add(AuditEntry(actor="U1", action="a", created_at=now - 400 * DAY))
        session.add(AuditEntry(actor="U1", action="b", created_at=now))
    capsys.readouterr()
    assert main(["retention", "run", "--dry-run", "--json"]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert (dry["dry_run"], dry["processed_event"], dry["audit_log"]) == (True, 1, 1)
    assert main(["retention", "run"]) == 0
    out = capsys.readouterr().out
    assert "processed_event: deleted 1" in out and "audit_log: deleted 1" in out
    assert "archived to" in out and len(_archived(tmp_path / "archive")) == 1
    with Session(engine) as session:
        assert [e.action for e in session.exec(select(AuditEntry))] == ["b"]
    engine.dispose()

    (tmp_path / "blocked").write_text("")
    monkeypatch.setenv("NPO_AUDIT_ARCHIVE_DIR", str(tmp_path / "blocked"))
    assert main(["retention", "run"]) == 1
    assert "nothing was deleted" in capsys.readouterr().err


def test_the_scheduler_runs_retention_daily_when_given_a_policy(engine: Engine) -> None:
    import numpy as np

    from bot.monitoring.scheduler import build_scheduler
    from bot.monitoring.ticker import MonitorTicker
    from bot.service import NPOService
    from core.npo import NPOConfig
    from tests.fakes import FakeRetriever, ScriptedSPE

    service = NPOService(
        engine, FakeRetriever([]), ScriptedSPE(), NPOConfig(), np.random.default_rng(0)
    )
    ticker = MonitorTicker(engine, NPOConfig(), lambda: NOW, dt.timedelta(minutes=15))
    assert build_scheduler(ticker, service, lambda: NOW, DAY).get_job("retention") is None
    scheduler = build_scheduler(ticker, service, lambda: NOW, DAY, retention=RetentionPolicy())
    job = scheduler.get_job("retention")
    assert job is not None and "hour='3'" in str(job.trigger)


def test_decided_inbox_items_go_with_the_delivery_claims(engine: Engine) -> None:
    """The inbox would grow with every incident: decided items older than the delivery
    claims' cutoff are dropped; undecided ones stay whatever their age."""
    from bot.db.models import IncidentInbox

    old = NOW - dt.timedelta(days=40)
    with Session(engine) as s:
        s.add(IncidentInbox(event_id="done-old", incident_json="{}", received_at=old, done_at=old))
        s.add(IncidentInbox(event_id="waiting-old", incident_json="{}", received_at=old))
        s.add(IncidentInbox(event_id="done-new", incident_json="{}", received_at=NOW, done_at=NOW))
        s.commit()
    report = run_retention(engine, RetentionPolicy(events_days=30), NOW)
    assert report.inbox == 1
    with Session(engine) as s:
        left = sorted(i.event_id for i in s.exec(select(IncidentInbox)))
    assert left == ["done-new", "waiting-old"]
