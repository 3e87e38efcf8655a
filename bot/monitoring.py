"""Scheduled meta-monitoring: one tick reads the feedback log, runs the shadow retrain
(M*), lets the meta-monitor M decide, and carries the decision out (controlled retrain,
or pausing a playbook) — exactly once per interval however many replicas run it.

Exactly once: the tick body runs in one transaction that first takes a lock (PostgreSQL:
``pg_try_advisory_xact_lock``, the loser skips; SQLite: ``BEGIN IMMEDIATE`` already
serialises writers) and then checks the ``scheduler_state`` row, so a replica that comes
second, or a process that restarts, sees the tick as done and does nothing.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bot.db.engine import transaction
from bot.db.models import (
    Feedback,
    ModelVersion,
    MonitorDecisionRow,
    Recommendation,
    RetrainRequest,
    SchedulerState,
)
from bot.db.state import audit, load_monitor, save_monitor
from bot.service import FeedbackInput, FeedbackStatus, NPOService
from core.feedback import FeedbackKind
from core.model import Example, LogisticModel, Prior, SimilarityPrior, fit
from core.monitor import MonitorAction
from core.npo import NPOConfig, RetrainResult, evaluate_candidate

_LOCK_KEY = 0x4E504F  # "NPO": one advisory lock for the scheduled jobs


@dataclass(frozen=True, slots=True)
class TickOutcome:
    action: MonitorAction
    reason: str
    playbook_id: str | None
    ideal: MonitorAction | None
    shadow: RetrainResult
    retrain: RetrainResult | None
    model_version: int | None

    def as_dict(self) -> dict[str, object]:
        return {
            "action": self.action.value,
            "reason": self.reason,
            "playbook": self.playbook_id,
            "ideal": self.ideal.value if self.ideal else None,
            "shadow": {
                "accepted": self.shadow.accepted,
                "live_loss": round(self.shadow.live_loss, 6),
                "candidate_loss": round(self.shadow.candidate_loss, 6),
                "holdout": self.shadow.holdout,
                "reason": self.shadow.reason,
            },
            "retrain": None
            if self.retrain is None
            else {"accepted": self.retrain.accepted, "reason": self.retrain.reason},
            "model_version": self.model_version,
        }


def _try_lock(session: Session) -> bool:
    if session.get_bind().dialect.name != "postgresql":
        return True  # SQLite: this transaction began with BEGIN IMMEDIATE
    return bool(session.exec(text(f"SELECT pg_try_advisory_xact_lock({_LOCK_KEY})")).one()[0])  # type: ignore[call-overload]


def _due(session: Session, job: str, now: dt.datetime, interval: dt.timedelta) -> bool:
    state = session.get(
        SchedulerState, job, with_for_update=session.get_bind().dialect.name == "postgresql"
    )
    if state is None:
        return True
    last = (
        state.last_run_at if state.last_run_at.tzinfo else state.last_run_at.replace(tzinfo=dt.UTC)
    )
    return now - last >= interval * 0.5  # half an interval of slack for clock jitter


def _mark_run(session: Session, job: str, now: dt.datetime) -> None:
    state = session.get(SchedulerState, job) or SchedulerState(job=job, last_run_at=now)
    state.last_run_at, state.runs = now, state.runs + 1
    session.add(state)


class MonitorTicker:
    def __init__(
        self,
        engine: Engine,
        config: NPOConfig,
        clock: Callable[[], dt.datetime],
        interval: dt.timedelta,
        notify: Callable[[str], None] | None = None,
    ) -> None:
        self.engine, self.config, self.clock = engine, config, clock
        self.interval = interval
        self.notify = notify or (lambda message: None)

    def tick(self, force: bool = False) -> TickOutcome | None:
        """Run one tick if it is due (``force``: now); None when another replica has it."""
        now = self.clock()
        with transaction(self.engine) as session:
            if not _try_lock(session):
                return None
            if not force and not _due(session, "monitor_tick", now, self.interval):
                return None
            outcome = self._tick(session)
            _mark_run(session, "monitor_tick", now)
        if outcome.action is MonitorAction.PAUSE_PLAYBOOK:
            self.notify(f":pause_button: Playbook `{outcome.playbook_id}` paused: {outcome.reason}")
        elif outcome.action is MonitorAction.RETRAIN and "Page" in outcome.reason:
            self.notify(f":chart_with_upwards_trend: Drift: {outcome.reason}")
        return outcome

    def _tick(self, session: Session) -> TickOutcome:
        # Locked on PostgreSQL too: votes update this document concurrently, and the save
        # below would otherwise overwrite what they observed during the tick.
        conn = session.connection()
        monitor = load_monitor(conn, self.config.monitor)
        log = self._log(session)
        live_row = session.exec(
            select(ModelVersion).where(col(ModelVersion.live).is_(True))
        ).first()
        live: Prior = (
            LogisticModel.from_dict(json.loads(live_row.weights_json))
            if live_row
            else SimilarityPrior()
        )
        trained_upto = live_row.trained_on if live_row else 0
        shadow, _ = evaluate_candidate(log, trained_upto, live, self.config)
        ideal = None
        if shadow.holdout:
            ideal = MonitorAction.RETRAIN if shadow.accepted else MonitorAction.HOLD
        decision = monitor.decide()
        retrain: RetrainResult | None = None
        version: int | None = None
        if decision.action is MonitorAction.PAUSE_PLAYBOOK and decision.playbook_id:
            monitor.pause(decision.playbook_id)
        elif decision.action is MonitorAction.RETRAIN:
            retrain, version = self._retrain(session, shadow, log, live_row)
            monitor.retrained()
            for req in session.exec(
                select(RetrainRequest).where(col(RetrainRequest.handled_at).is_(None))
            ):
                req.handled_at = self.clock()
                session.add(req)
        session.add(
            MonitorDecisionRow(
                action=decision.action.value,
                reason=decision.reason,
                playbook_id=decision.playbook_id,
                ideal_action=ideal.value if ideal else None,
                shadow_gain=shadow.gain if shadow.holdout else None,
            )
        )
        save_monitor(conn, monitor, self.clock())
        detail = {"reason": decision.reason, "ideal": ideal.value if ideal else None}
        action = f"monitor:{decision.action.value}"
        audit(conn, "scheduler", action, decision.playbook_id or "", detail, self.clock())
        return TickOutcome(
            decision.action, decision.reason, decision.playbook_id, ideal, shadow, retrain, version
        )

    def _retrain(
        self,
        session: Session,
        shadow: RetrainResult,
        log: list[Example],
        live_row: ModelVersion | None,
    ) -> tuple[RetrainResult, int | None]:
        """Controlled retrain: the candidate replaces the live model only if the shadow
        evaluation showed it lowers hold-out loss by δ; otherwise it is recorded as rejected."""
        metrics = {
            "live_loss": shadow.live_loss,
            "candidate_loss": shadow.candidate_loss,
            "holdout": shadow.holdout,
            "reason": shadow.reason,
        }
        if not shadow.accepted:
            session.add(
                ModelVersion(
                    trained_on=len(log),
                    live=False,
                    accepted=False,
                    metrics_json=json.dumps(metrics),
                    weights_json="{}",
                )
            )
            return shadow, None
        model = fit(log, self.config.fit)
        if live_row is not None:
            live_row.live = False
            session.add(live_row)
        version = ModelVersion(
            trained_on=len(log),
            live=True,
            accepted=True,
            metrics_json=json.dumps(metrics),
            weights_json=json.dumps(model.to_dict()),
        )
        session.add(version)
        session.flush()
        return shadow, version.id

    def _log(self, session: Session) -> list[Example]:
        rows = session.exec(
            select(Feedback)
            .where(col(Feedback.withdrawn).is_(False), col(Feedback.label).is_not(None))
            .order_by(col(Feedback.created_at), col(Feedback.id))
        ).all()
        return [
            Example(r.playbook_id, json.loads(r.context_json), r.similarity, FeedbackKind(r.kind))
            for r in rows
            if r.playbook_id
        ]


def expire_unanswered(service: NPOService, now: dt.datetime, after: dt.timedelta) -> int:
    """Recommendations nobody judged within ``after`` become ``skipped`` (idempotent)."""
    cutoff = now - after
    with Session(service.engine) as session:
        stale = session.exec(
            select(Recommendation.id).where(
                Recommendation.status == "open", col(Recommendation.created_at) < cutoff
            )
        ).all()
    expired = 0
    for rec_id in stale:
        result = service.record_feedback(
            FeedbackInput(
                rec_id, "system", FeedbackKind.SKIPPED, f"expiry:{rec_id}", source="expiry"
            )
        )
        expired += result.status is FeedbackStatus.STORED
    return expired


def take_snapshot(engine: Engine, now: dt.datetime, interval: dt.timedelta) -> bool:
    """Store today's alignment report once (any replica may try; one writes)."""
    from bot.db.models import StatsSnapshot
    from bot.stats import alignment_report

    report = alignment_report(engine, now)  # read first: SQLite allows one writer at a time
    with transaction(engine) as session:
        if not _try_lock(session) or not _due(session, "stats_snapshot", now, interval):
            return False
        session.add(StatsSnapshot(taken_at=now, report_json=json.dumps(report)))
        _mark_run(session, "stats_snapshot", now)
    return True
