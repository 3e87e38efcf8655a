"""APScheduler jobs (monitor tick, expiry of unanswered recommendations, nightly stats
snapshot, daily retention, library sync every 30 s), scheduled in memory in every process
(APScheduler 3.x job stores must not be shared between processes). What must survive lives
in our tables; the job bodies take the database lock, so several replicas run each tick
once (the library sync runs on every replica: each has its own folder)."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.monitoring.retention import LOCKED, RetentionPolicy, run_retention
from bot.monitoring.ticker import MonitorTicker, expire_unanswered, take_snapshot
from bot.service import NPOService

log = logging.getLogger(__name__)
OUTBOX_EVERY = dt.timedelta(seconds=30)
DEFERRALS_EVERY = dt.timedelta(seconds=30)

LIBRARY_SYNC_EVERY = dt.timedelta(seconds=30)
RETENTION_RETRY = dt.timedelta(minutes=1)


def build_scheduler(
    ticker: MonitorTicker,
    service: NPOService,
    clock: Callable[[], dt.datetime],
    expire_after: dt.timedelta,
    expiry_every: dt.timedelta = dt.timedelta(minutes=5),
    library_sync: Callable[[], object] | None = None,
    retention: RetentionPolicy | None = None,
    outbox: Callable[[], object] | None = None,
    deferrals: Callable[[], object] | None = None,
) -> BackgroundScheduler:
    """Every job; ``library_sync`` (bot/governance/library_sync.py), ``retention``, ``outbox``
    (bot/slack/outbox.py: what a dead process acknowledged but did not finish) and
    ``deferrals`` (bot/service/deferrals.py: deferred candidates judged again when due) when
    given."""
    scheduler = BackgroundScheduler(timezone=dt.UTC)

    def add(job: Callable[[], object], trigger: BaseTrigger, job_id: str) -> None:
        """One run at a time per process, missed runs folded into one."""
        scheduler.add_job(job, trigger, id=job_id, max_instances=1, coalesce=True)

    def every(interval: dt.timedelta) -> IntervalTrigger:
        return IntervalTrigger(seconds=interval.total_seconds())

    def monitor_tick() -> None:
        outcome = ticker.tick()
        if outcome is not None:
            log.info("monitor tick: %s (%s)", outcome.action.value, outcome.reason)

    def expiry() -> None:
        expired = expire_unanswered(service, clock(), expire_after)
        if expired:
            log.info("expired %d unanswered recommendation(s) as skipped", expired)

    add(monitor_tick, every(ticker.interval), "monitor_tick")
    add(expiry, every(expiry_every), "expiry")

    def snapshot() -> None:
        take_snapshot(ticker.engine, clock(), dt.timedelta(days=1))

    add(snapshot, CronTrigger(hour=2, minute=30, timezone=dt.UTC), "stats_snapshot")
    if library_sync is not None:
        add(library_sync, every(LIBRARY_SYNC_EVERY), "library_sync")
    if outbox is not None:
        add(outbox, every(OUTBOX_EVERY), "outbox")
    if deferrals is not None:  # every replica: a lease in our tables runs each job once
        add(deferrals, every(DEFERRALS_EVERY), "deferrals")
    if retention is not None:
        policy = retention

        def retention_run() -> None:
            for _ in range(3):  # the lock may be a monitor tick's: try again shortly
                report = run_retention(ticker.engine, policy, clock())
                if report.skipped != LOCKED:
                    return
                time.sleep(RETENTION_RETRY.total_seconds())
            log.warning("retention skipped today: %s", LOCKED)

        add(retention_run, CronTrigger(hour=3, minute=15, timezone=dt.UTC), "retention")
    return scheduler
