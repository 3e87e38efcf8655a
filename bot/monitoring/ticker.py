"""Scheduled meta-monitoring: one tick reads the live feedback log, runs the shadow
retrain (M*), lets the meta-monitor M decide on signals derived from the live votes, and
carries the decision out (controlled retrain, or pausing a playbook) — exactly once per
interval however many replicas run it.

The reading and fitting happen on a read-only snapshot, outside any lock. Exactly once:
the short transaction that saves the outcome first takes a lock (PostgreSQL:
``pg_try_advisory_xact_lock``, the loser skips; SQLite: ``BEGIN IMMEDIATE`` serialises
writers) and then checks the ``scheduler_state`` row, so a replica that comes second, or a
process that restarts, sees the tick as done and does nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy import text, update
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, col, select
from threadpoolctl import threadpool_limits

from bot.db.engine import read_only, table_of, transaction
from bot.db.follow_up_rows import awaiting_or_recent
from bot.db.models import (
    ModelVersion,
    MonitorDecisionRow,
    Recommendation,
    RetrainRequest,
    SchedulerState,
)
from bot.db.state import (
    audit,
    live_model,
    load_monitor,
    model_weights,
    read_monitor,
    read_monitor_history,
    save_monitor,
    save_monitor_history,
)
from bot.db.vote_log import read_live_log
from bot.service import FeedbackInput, FeedbackStatus, NPOService
from core.decision import Outcome
from core.feedback import FeedbackKind
from core.log_columns import VoteColumns, evaluate_log, monitor_signals
from core.model import FeatureHasher, LabelledLog, LogisticModel, Prior, SimilarityPrior, fit_log
from core.monitor import MetaMonitor, MonitorAction, MonitorSignals
from core.npo import NPOConfig, RetrainResult

log = logging.getLogger(__name__)
_MODELS = table_of(ModelVersion)

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


def _due(
    session: Session, job: str, now: dt.datetime, interval: dt.timedelta, lock: bool = True
) -> bool:
    postgres = session.get_bind().dialect.name == "postgresql"
    state = session.get(SchedulerState, job, with_for_update=lock and postgres)
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


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """What one tick reads, in one read-only transaction (no lock held)."""

    live_id: int | None
    live: Prior
    trained_upto: int
    log: LabelledLog  # live labelled votes that judged a playbook, by seq
    votes: VoteColumns  # every live vote, by seq
    read_at: dt.datetime


def _one_blas_thread() -> threadpool_limits:
    """The fits' linear algebra on one core: a second BLAS thread spins on the core the
    database backends and the vote threads need (in one bench run with two, PostgreSQL
    votes' p99 during the tick was 0.66 s; 0.14-0.25 s in three runs with one), and a
    features × features solve gains little from it."""
    return threadpool_limits(limits=1, user_api="blas")


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
        self._reader = read_only(engine)
        self._model_cache: tuple[int, LogisticModel] | None = None
        self._hasher = FeatureHasher(config.fit.dim)  # scenarios hashed once per process

    def tick(self, force: bool = False) -> TickOutcome | None:
        """Run one tick if it is due (``force``: now); None when another replica has it.

        The log is read and both models are fitted outside any lock, on a snapshot: votes
        keep flowing during the fits. Only deciding and saving take the lock, which is
        also where "due" is checked again, so a tick still runs once across replicas.
        """
        now = self.clock()
        if not force and not self._due_now(now):
            return None
        snap = self._snapshot(now)
        with _one_blas_thread():
            shadow, _ = evaluate_log(
                snap.log, snap.trained_upto, snap.live, self.config, self._hasher
            )
        with self._reader.connect() as conn:
            monitor = read_monitor(conn, self.config.monitor)
            monitor.state.history = read_monitor_history(conn)
        signals = monitor_signals(monitor, snap.votes)
        decision = monitor.decide(signals)
        model = None
        if decision.action is MonitorAction.RETRAIN and shadow.accepted:
            with _one_blas_thread():
                model = self._fit(snap.log)  # the accepted model sees everything
        with transaction(self.engine) as session:
            if not _try_lock(session):
                return None
            if not force and not _due(session, "monitor_tick", now, self.interval):
                return None
            if live_model(session.connection()) != snap.live_id:
                log.info("monitor tick skipped: the live model changed while it computed")
                return None
            outcome = self._commit(session, snap, shadow, (monitor, signals), model)
            _mark_run(session, "monitor_tick", now)
        if outcome.action is MonitorAction.PAUSE_PLAYBOOK:
            self.notify(f":pause_button: Playbook `{outcome.playbook_id}` paused: {outcome.reason}")
        elif outcome.action is MonitorAction.RETRAIN and signals.drift_detected:
            self.notify(f":chart_with_upwards_trend: Drift: {outcome.reason}")
        return outcome

    def _due_now(self, now: dt.datetime) -> bool:
        with Session(self._reader) as session:
            return _due(session, "monitor_tick", now, self.interval, lock=False)

    def _fit(self, log: LabelledLog) -> LogisticModel:
        return fit_log(log, self.config.fit, self._hasher)

    def _snapshot(self, now: dt.datetime) -> _Snapshot:
        """The live votes as columns (no ORM objects: a million rows), the live model, in
        one snapshot (PostgreSQL: one repeatable-read transaction)."""
        with self._reader.connect() as conn:
            if conn.dialect.name == "postgresql":
                conn.execution_options(isolation_level="REPEATABLE READ")
            live_id = live_model(conn)
            trained_upto = 0
            if live_id is not None:
                trained_upto = int(
                    conn.execute(
                        sa.select(_MODELS.c.trained_upto).where(_MODELS.c.id == live_id)
                    ).scalar_one()
                )
            live = self._live(conn, live_id)
            votes, log = read_live_log(conn)
        return _Snapshot(live_id, live, trained_upto, log, votes, now)

    def _live(self, conn: Connection, live_id: int | None) -> Prior:
        if live_id is None:
            return SimilarityPrior()
        if self._model_cache is None or self._model_cache[0] != live_id:
            model = LogisticModel.from_dict(json.loads(model_weights(conn, live_id)))
            self._model_cache = (live_id, model)
        return self._model_cache[1]

    def _commit(
        self,
        session: Session,
        snap: _Snapshot,
        shadow: RetrainResult,
        computed: tuple[MetaMonitor, MonitorSignals],
        model: LogisticModel | None,
    ) -> TickOutcome:
        """Decide and carry the decision out on the current monitor document (locked), in
        one transaction: a pause or resume made by a person meanwhile is kept."""
        conn = session.connection()
        monitor = load_monitor(conn, self.config.monitor)
        monitor.state.history = read_monitor_history(conn)
        # Decide again on the locked document: a pause or resume made by a person while the
        # tick computed is what M must build on (the signals are the snapshot's). Signals
        # are a function of the votes and the document, so the ones computed outside the
        # lock serve unless the document changed: the lock is not held over the whole log.
        unlocked, signals = computed
        if monitor.state.to_dict() != unlocked.state.to_dict():
            signals = monitor_signals(monitor, snap.votes)
        decision = monitor.decide(signals)
        if shadow.holdout:
            # This tick's shadow verdict (M*) joins the history the learned M is fitted on,
            # after M decided: M never sees the verdict of the tick it decides.
            monitor.observe(signals, shadow.accepted)
            save_monitor_history(conn, monitor.state.history, self.clock())
        if decision.action is MonitorAction.RETRAIN and shadow.accepted and model is None:
            model = self._fit(snap.log)  # rare: the decision changed meanwhile
        ideal = None
        if shadow.holdout:
            ideal = MonitorAction.RETRAIN if shadow.accepted else MonitorAction.HOLD
        retrain: RetrainResult | None = None
        version: int | None = None
        if decision.action is MonitorAction.PAUSE_PLAYBOOK and decision.playbook_id:
            monitor.pause(decision.playbook_id)
        elif decision.action is MonitorAction.RETRAIN:
            retrain, version = self._retrain(session, shadow, snap, model)
            monitor.retrained(snap.votes.newest)
            for req in session.exec(
                select(RetrainRequest).where(
                    col(RetrainRequest.handled_at).is_(None),
                    col(RetrainRequest.created_at) <= snap.read_at,
                )
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
        snap: _Snapshot,
        model: LogisticModel | None,
    ) -> tuple[RetrainResult, int | None]:
        """Controlled retrain: the candidate replaces the live model only if the shadow
        evaluation showed it lowers hold-out loss by δ; otherwise it is recorded as rejected."""
        metrics = {
            "live_loss": shadow.live_loss,
            "candidate_loss": shadow.candidate_loss,
            "holdout": shadow.holdout,
            "reason": shadow.reason,
        }
        trained_upto = int(snap.log.seq[-1]) if len(snap.log) else 0
        if not shadow.accepted or model is None:
            session.add(
                ModelVersion(
                    trained_on=len(snap.log),
                    trained_upto=trained_upto,
                    live=False,
                    accepted=False,
                    metrics_json=json.dumps(metrics),
                    weights_json="{}",
                )
            )
            return shadow, None
        if snap.live_id is not None:
            session.execute(update(_MODELS).where(_MODELS.c.id == snap.live_id).values(live=False))
        version = ModelVersion(
            trained_on=len(snap.log),
            trained_upto=trained_upto,
            live=True,
            accepted=True,
            metrics_json=json.dumps(metrics),
            weights_json=json.dumps(model.to_dict()),
        )
        session.add(version)
        session.flush()
        return shadow, version.id


def expire_unanswered(service: NPOService, now: dt.datetime, after: dt.timedelta) -> int:
    """Close what nobody judged within ``after`` (idempotent); returns how many.

    A recommendation nobody judged is an operator's skip (a judgment withheld: a vote of
    kind ``skipped``, with the paper's λ_skip loss). An abstention nobody answered is the
    bot's own silence, not anyone's skip: it is closed as ``expired`` with no vote and no
    loss, and the threshold arms learn what it was expected to be worth.
    """
    cutoff = now - after
    with Session(service.engine) as session:
        stale = session.exec(
            select(Recommendation.id, Recommendation.outcome).where(
                Recommendation.status == "open", col(Recommendation.created_at) < cutoff
            )
        ).all()
        # Awaiting an approval or a window, nobody was asked to judge it yet; approved or
        # judged again, the clock starts then.
        spared = awaiting_or_recent(session.connection(), [r for r, _ in stale], cutoff)
    stale = [(rec_id, outcome) for rec_id, outcome in stale if rec_id not in spared]
    silent = [rec_id for rec_id, outcome in stale if outcome != Outcome.RECOMMEND.value]
    expired = service.expire_abstentions(silent)
    for rec_id, outcome in stale:
        if outcome != Outcome.RECOMMEND.value:
            continue
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
    from bot.reporting.stats import alignment_report

    report = alignment_report(engine, now)  # read first: SQLite allows one writer at a time
    with transaction(engine) as session:
        if not _try_lock(session) or not _due(session, "stats_snapshot", now, interval):
            return False
        session.add(StatsSnapshot(taken_at=now, report_json=json.dumps(report)))
        _mark_run(session, "stats_snapshot", now)
    return True
