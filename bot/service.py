"""The application service: every adapter (Slack, console, alerts) calls this and nothing
else. It owns the transaction boundaries; the learning itself is the pure core.

Feedback is idempotent: each delivery carries a source event id that is stored once
(unique key), so a Slack retry, a second click or a second replica changes nothing. One
operator's later vote on a recommendation replaces the earlier one: the scenario score is
replayed from the current votes, and the bandit's old contribution is taken back.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from sqlalchemy import insert, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from bot.db.batch_writes import BatchWrites
from bot.db.engine import read_only, table_of, transaction
from bot.db.group_commit import GroupCommit
from bot.db.models import (
    AuditEntry,
    BanditArm,
    Feedback,
    Incident,
    ModelVersion,
    OperatorPrefs,
    ProcessedEvent,
    Recommendation,
    ScenarioScoreRow,
)
from bot.db.state import audit, load_monitor, save_monitor
from bot.extract import extract_scenario
from bot.stats import PlaybookStats, playbook_stats
from core.bandit import ThresholdBandit
from core.codec import decision_from_dict, decision_to_dict
from core.decision import Candidate, Decision, decide
from core.feedback import FeedbackKind, alignment_loss, signal
from core.model import LogisticModel, Prior, SimilarityPrior
from core.monitor import MetaMonitor
from core.npo import NPOConfig, ThresholdMode
from core.ope import thompson_propensities
from core.policy import Action, SafetyPolicyEngine
from core.scenario import Scenario
from core.scoring import ScenarioScore, blend


class PlaybookHit(Protocol):
    @property
    def doc_id(self) -> str: ...

    @property
    def title(self) -> str: ...

    @property
    def similarity(self) -> float: ...

    @property
    def metadata(self) -> dict[str, Any]: ...


class Retriever(Protocol):
    def search(self, query: str, k: int = 5) -> Sequence[PlaybookHit]: ...


@dataclass(frozen=True, slots=True)
class IncidentInput:
    text: str
    source: str
    channel: str = ""
    thread_ts: str = ""
    reporter: str = ""
    hints: Mapping[str, object] = field(default_factory=dict)
    source_event_id: str | None = None  # set by adapters whose deliveries can repeat


@dataclass(frozen=True, slots=True)
class Recorded:
    recommendation_id: str
    decision: Decision
    duplicate: bool = False  # the same delivery was already handled: do not post again


@dataclass(frozen=True, slots=True)
class Vote:
    operator_id: str
    kind: FeedbackKind
    playbook_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class FeedbackInput:
    recommendation_id: str
    operator_id: str
    kind: FeedbackKind
    source_event_id: str
    source: str = "button"
    reason: str = ""
    playbook_id: str | None = None  # a candidate of an abstention; default: the recommended one


@dataclass(slots=True)
class _Batch:
    """What one batch of votes reads, loaded up front, and what it will write."""

    monitor: MetaMonitor
    bandit: ThresholdBandit
    claimed: set[str] = field(default_factory=set)
    arms: dict[str, int] = field(default_factory=dict)  # recommendation id → arm index
    decisions: dict[str, Decision] = field(default_factory=dict)
    # (recommendation, operator) → the stored vote, or None until a replacement loads it
    votes: dict[tuple[str, str], Feedback | None] = field(default_factory=dict)
    scores: dict[tuple[str, str], ScenarioScoreRow] = field(default_factory=dict)
    writes: BatchWrites = field(default_factory=BatchWrites)


class DuplicateInFlightError(RuntimeError):
    """Another delivery of the same event is being handled right now."""


class FeedbackStatus(enum.StrEnum):
    STORED = "stored"
    REPLACED = "replaced"
    WITHDRAWN = "withdrawn"
    DUPLICATE = "duplicate"
    UNKNOWN_RECOMMENDATION = "unknown_recommendation"
    NOT_A_CANDIDATE = "not_a_candidate"
    NOTHING_TO_WITHDRAW = "nothing_to_withdraw"


@dataclass(frozen=True, slots=True)
class FeedbackResult:
    status: FeedbackStatus
    loss: float | None = None
    local_score: float | None = None
    playbook_id: str | None = None

    @property
    def changed(self) -> bool:
        return self.status in {
            FeedbackStatus.STORED,
            FeedbackStatus.REPLACED,
            FeedbackStatus.WITHDRAWN,
        }


def set_paused(
    engine: Engine,
    config: NPOConfig,
    playbook_id: str,
    paused: bool,
    actor: str,
    reason: str,
    now: dt.datetime,
) -> bool:
    """Pause or resume a playbook by hand (audited); returns whether anything changed."""
    with transaction(engine) as session:
        monitor = load_monitor(session, config.monitor, lock=True)
        if paused == (playbook_id in monitor.state.paused):
            return False
        if paused:
            monitor.pause(playbook_id)
        else:
            monitor.resume(playbook_id)
        save_monitor(session, monitor, now)
        action = "pause" if paused else "resume"
        audit(session, actor, f"playbook:{action}", playbook_id, {"reason": reason}, now)
        return True


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class NPOService:
    def __init__(
        self,
        engine: Engine,
        retriever: Retriever,
        spe: SafetyPolicyEngine,
        config: NPOConfig,
        rng: np.random.Generator,
        clock: Callable[[], dt.datetime] = _utcnow,
        candidates: int = 3,
        classify: Callable[[str], Mapping[str, object]] | None = None,
    ) -> None:
        self.engine, self.retriever, self.spe = engine, retriever, spe
        self.config, self.rng, self.clock = config, rng, clock
        self.candidates = candidates
        self.classify = classify
        self._mc_rng = np.random.default_rng(rng.integers(2**63))  # propensity estimates
        self._model_cache: tuple[int, LogisticModel] | None = None
        self._locking = engine.dialect.name == "postgresql"
        self._feedback_writer = GroupCommit(self._record_batch)
        self._reader = read_only(engine)

    # -- recommending -------------------------------------------------------------------
    def recommend(self, incident: IncidentInput) -> Recorded:
        """Retrieve, score, pick τ, check the SPE, decide, and store it all."""
        if incident.source_event_id and self._already_handled(incident.source_event_id):
            return self._existing(incident.source_event_id)
        scenario = extract_scenario(incident.text, self.clock(), incident.hints)
        if self.classify is not None and "unknown" in (scenario.component, scenario.fault_type):
            labels = self.classify(incident.text)  # only component/fault type, validated
            hints = {k: v for k, v in labels.items() if k in ("component", "fault_type")}
            scenario = extract_scenario(incident.text, self.clock(), {**hints, **incident.hints})
        hits = self.retriever.search(incident.text, self.candidates)
        # Read and decide outside the write transaction: the SPE and the bandit take
        # milliseconds that writers (votes) should not wait for. What is read here only
        # changes through votes and monitor ticks; a decision made on it a few
        # milliseconds stale is the same decision.
        prior, paused, local, bandit, losses = self._decision_state(scenario.context_key)
        hits = [hit for hit in hits if hit.doc_id not in paused]
        candidates = [self._candidate(scenario, hit, prior, local.get(hit.doc_id)) for hit in hits]
        mode = self.config.threshold_mode
        if mode is ThresholdMode.FIXED:
            arm = bandit.arm_for(self.config.fixed_threshold)
            propensity, policy = 1.0, f"fixed:{arm.threshold}"
        elif mode is ThresholdMode.RANDOM:
            arm = bandit.arm_for(bandit.arms[int(self.rng.integers(len(bandit.arms)))])
            propensity, policy = 1.0 / len(bandit.arms), "random"
        else:
            arm = bandit.choose(self.rng)
            odds = thompson_propensities(bandit.alpha, bandit.beta, self._mc_rng, draws=1000)
            propensity, policy = max(float(odds[arm.index]), 1e-3), "thompson"
        decision = decide(scenario, candidates, arm, self.spe, losses)
        stored = decision_to_dict(decision)
        now = self.clock()
        incident_id, rec_id = uuid.uuid4().hex, uuid.uuid4().hex
        with transaction(self.engine) as session:
            if incident.source_event_id and not self._claim_event(
                session, incident.source_event_id
            ):
                return self._existing(incident.source_event_id)
            conn = session.connection()  # three plain inserts: no ORM objects needed
            conn.execute(
                insert(table_of(Incident)),
                {
                    "id": incident_id,
                    "source": incident.source,
                    "channel": incident.channel,
                    "thread_ts": incident.thread_ts,
                    "reporter": incident.reporter,
                    "text": incident.text,
                    "scenario_json": json.dumps(stored["scenario"]),
                    "context_key": scenario.context_key,
                    "created_at": now,
                },
            )
            conn.execute(
                insert(table_of(Recommendation)),
                {
                    "id": rec_id,
                    "source_event_id": incident.source_event_id,
                    "incident_id": incident_id,
                    "outcome": decision.outcome.value,
                    "playbook_id": decision.chosen.playbook_id if decision.chosen else None,
                    "score": decision.explanation.visual.score,
                    "threshold": arm.threshold,
                    "arm_index": arm.index,
                    "propensity": propensity,
                    "policy": policy,
                    "spe_verdict": decision.explanation.compliance.verdict.value,
                    "decision_json": json.dumps(stored),
                    "channel": incident.channel,
                    "message_ts": "",
                    "status": "open",
                    "created_at": now,
                },
            )
            conn.execute(
                insert(table_of(AuditEntry)),
                {
                    "actor": incident.reporter or incident.source,
                    "action": "recommend",
                    "subject": rec_id,
                    "detail_json": json.dumps(
                        {
                            "outcome": decision.outcome.value,
                            "playbook": decision.chosen.playbook_id if decision.chosen else None,
                            "threshold": arm.threshold,
                            "verdict": decision.explanation.compliance.verdict.value,
                        }
                    ),
                    "created_at": now,
                },
            )
        return Recorded(rec_id, decision)

    def _decision_state(
        self, context_key: str
    ) -> tuple[Prior, set[str], dict[str, ScenarioScore], ThresholdBandit, list[float]]:
        """Prior, paused playbooks, this scenario's refined scores, bandit, recent losses."""
        with Session(self._reader) as session:
            return (
                self._prior(session),
                set(self._monitor(session, lock=False).state.paused),
                self._local_scores(session, context_key),
                self._bandit_of(self._bandit_rows(session, lock=False)),
                self._recent_losses(session),
            )

    def _already_handled(self, event_id: str) -> bool:
        with Session(self._reader) as session:
            return session.get(ProcessedEvent, event_id) is not None

    def _existing(self, event_id: str) -> Recorded:
        with Session(self._reader) as session:
            rec = session.exec(
                select(Recommendation).where(Recommendation.source_event_id == event_id)
            ).first()
            if rec is None:  # claimed by a concurrent delivery still in flight
                raise DuplicateInFlightError(event_id)
            decision = decision_from_dict(json.loads(rec.decision_json))
            return Recorded(rec.id, decision, duplicate=True)

    def votes(self, recommendation_id: str) -> list[Vote]:
        with Session(self._reader) as session:
            rows = session.exec(
                select(Feedback)
                .where(
                    Feedback.recommendation_id == recommendation_id,
                    col(Feedback.withdrawn).is_(False),
                )
                .order_by(col(Feedback.updated_at))
            ).all()
            return [
                Vote(r.operator_id, FeedbackKind(r.kind), r.playbook_id, r.reason) for r in rows
            ]

    def attach_message(self, recommendation_id: str, channel: str, message_ts: str) -> None:
        with transaction(self.engine) as session:
            session.connection().execute(
                update(Recommendation)
                .where(col(Recommendation.id) == recommendation_id)
                .values(channel=channel, message_ts=message_ts)
            )

    def recommendation_for_message(self, channel: str, message_ts: str) -> str | None:
        with Session(self._reader) as session:
            rec = session.exec(
                select(Recommendation).where(
                    Recommendation.channel == channel, Recommendation.message_ts == message_ts
                )
            ).first()
            return rec.id if rec else None

    def decision(self, recommendation_id: str) -> Decision | None:
        with Session(self._reader) as session:
            rec = session.get(Recommendation, recommendation_id)
            return decision_from_dict(json.loads(rec.decision_json)) if rec else None

    # -- feedback -----------------------------------------------------------------------
    def record_feedback(self, fb: FeedbackInput) -> FeedbackResult:
        """Store one vote and learn from it; returns once it is committed.

        Concurrent callers share a transaction (group commit), so a burst costs one
        durable commit per batch instead of one per vote.
        """
        return self._feedback_writer.submit(fb)

    def _record_batch(self, batch: Sequence[FeedbackInput]) -> list[FeedbackResult]:
        for attempt in range(5):
            try:
                with transaction(self.engine) as session, session.no_autoflush:
                    return self._record_all(session, batch)
            except IntegrityError:
                # A concurrent writer stored the same event (or the first score of the same
                # scenario) between our read and our write: the next attempt sees it. A
                # batch is retried item by item by the group commit instead.
                if attempt == 4 or len(batch) > 1:
                    raise
        raise AssertionError("unreachable")

    def withdraw_feedback(
        self, recommendation_id: str, operator_id: str, source_event_id: str
    ) -> FeedbackResult:
        with transaction(self.engine) as session:
            if not self._claim_event(session, source_event_id):
                return FeedbackResult(FeedbackStatus.DUPLICATE)
            self._monitor(session, lock=True)  # serialise learning updates
            current = self._vote(session, recommendation_id, operator_id)
            if current is None or current.withdrawn:
                return FeedbackResult(FeedbackStatus.NOTHING_TO_WITHDRAW)
            arms = self._bandit_rows(session, lock=True)
            bandit = self._bandit_of(arms)
            rec = session.get(Recommendation, recommendation_id)
            assert rec is not None
            self._take_back(bandit, rec.arm_index, current)
            self._save_bandit(arms, bandit)
            current.withdrawn, current.updated_at = True, self.clock()
            session.add(current)
            session.flush()
            local = self._replay_score(session, current.playbook_id, current.context_key, {})
            self._audit(session, operator_id, "withdraw", recommendation_id, {"kind": current.kind})
            return FeedbackResult(FeedbackStatus.WITHDRAWN, None, local, current.playbook_id)

    def _record_all(self, session: Session, batch: Sequence[FeedbackInput]) -> list[FeedbackResult]:
        """Apply a batch of votes in order: a few queries up front, one write per table."""
        arms = self._bandit_rows(session, lock=True)
        loaded = _Batch(
            monitor=self._monitor(session, lock=True),  # serialises every learning update
            bandit=self._bandit_of(arms),
        )
        conn = session.connection()  # plain rows: no ORM objects for what is only read
        event_ids = {fb.source_event_id for fb in batch}
        loaded.claimed.update(
            conn.execute(
                select(ProcessedEvent.event_id).where(col(ProcessedEvent.event_id).in_(event_ids))
            ).scalars()
        )
        rec_ids = {fb.recommendation_id for fb in batch}
        for rec_id, arm_index, decision_json in conn.execute(
            select(Recommendation.id, Recommendation.arm_index, Recommendation.decision_json).where(
                col(Recommendation.id).in_(rec_ids)
            )
        ):
            loaded.arms[rec_id] = arm_index
            loaded.decisions[rec_id] = decision_from_dict(json.loads(decision_json))
        for rec_id, operator_id in conn.execute(
            select(Feedback.recommendation_id, Feedback.operator_id).where(
                col(Feedback.recommendation_id).in_(rec_ids)
            )
        ):
            loaded.votes[(rec_id, operator_id)] = None  # loaded only if it is replaced
        playbooks = {c.playbook_id for d in loaded.decisions.values() for c in d.candidates}
        contexts = {d.scenario.context_key for d in loaded.decisions.values()}
        if playbooks:
            for score in session.exec(
                select(ScenarioScoreRow).where(
                    col(ScenarioScoreRow.playbook_id).in_(playbooks),
                    col(ScenarioScoreRow.context_key).in_(contexts),
                )
            ):
                loaded.scores[(score.playbook_id, score.context_key)] = score
        results = [self._record(session, fb, loaded) for fb in batch]
        loaded.writes.flush(session)
        if any(r.changed for r in results):
            self._save_bandit(arms, loaded.bandit)
            self._save_monitor(session, loaded.monitor)
        return results

    def _record(self, session: Session, fb: FeedbackInput, loaded: _Batch) -> FeedbackResult:
        if fb.source_event_id in loaded.claimed:
            return FeedbackResult(FeedbackStatus.DUPLICATE)
        now = self.clock()
        loaded.claimed.add(fb.source_event_id)
        loaded.writes.events.append({"event_id": fb.source_event_id, "created_at": now})
        decision = loaded.decisions.get(fb.recommendation_id)
        if decision is None:
            return FeedbackResult(FeedbackStatus.UNKNOWN_RECOMMENDATION)
        arm_index = loaded.arms[fb.recommendation_id]
        target = self._target(decision, fb.playbook_id)
        if target is None and fb.kind is not FeedbackKind.SKIPPED:
            return FeedbackResult(FeedbackStatus.NOT_A_CANDIDATE)
        score = target.score if target else 0.0
        loss = alignment_loss(fb.kind, score, self.config.skip_loss)
        sig = signal(fb.kind)
        key = (fb.recommendation_id, fb.operator_id)
        replaced = key in loaded.votes
        fields: dict[str, Any] = {
            "playbook_id": target.playbook_id if target else "",
            "kind": fb.kind.value,
            "label": sig.label,
            "weight": sig.weight,
            "score": score,
            "loss": loss,
            "reason": fb.reason,
            "source": fb.source,
            "prior": target.model_prior if target else 0.0,
            "similarity": target.similarity if target else 0.0,
            "context_json": json.dumps(decision.scenario.context()),
            "withdrawn": False,
            "updated_at": now,
        }
        local = None
        replaced_kind = None
        if not replaced:  # the common case: a first vote, appended in bulk
            loaded.votes[key] = None  # stored by this batch, not loaded
            loaded.writes.votes.append(
                {
                    "recommendation_id": fb.recommendation_id,
                    "context_key": decision.scenario.context_key,
                    "operator_id": fb.operator_id,
                    "source_event_id": fb.source_event_id,
                    "created_at": now,
                    **fields,
                }
            )
            if target is not None:
                local = self._extend_score(
                    session,
                    target.playbook_id,
                    decision.scenario.context_key,
                    target.model_prior,
                    fb.kind,
                    loaded.scores,
                )
        else:  # a later vote replaces the earlier one: history changes, replay it
            loaded.writes.flush(session)
            previous = loaded.votes[key] or self._vote(session, *key)
            assert previous is not None
            if not previous.withdrawn:
                self._take_back(loaded.bandit, arm_index, previous)
            replaced_kind, replaced_playbook = previous.kind, previous.playbook_id
            for name, value in fields.items():
                setattr(previous, name, value)
            session.add(previous)
            session.flush()
            loaded.votes[key] = previous
            if target is not None:
                local = self._replay_score(
                    session, target.playbook_id, previous.context_key, loaded.scores
                )
            if replaced_playbook not in ("", fields["playbook_id"]):
                self._replay_score(session, replaced_playbook, previous.context_key, loaded.scores)
        self._bandit_apply(loaded.bandit, arm_index, score, fb.kind)
        loaded.monitor.observe(fb.kind, loss, target.playbook_id if target else None)
        if fb.kind is FeedbackKind.OVERRIDE:
            loaded.writes.retrains.append(
                {
                    "reason": f"override of {fields['playbook_id']}: {fb.reason}".strip(),
                    "requested_by": fb.operator_id,
                    "handled_at": None,
                    "created_at": now,
                }
            )
        loaded.writes.judged.add(fb.recommendation_id)
        loaded.writes.audits.append(
            {
                "actor": fb.operator_id,
                "action": f"feedback:{fb.kind.value}",
                "subject": fb.recommendation_id,
                "detail_json": json.dumps(
                    {
                        "playbook": fields["playbook_id"],
                        "reason": fb.reason,
                        "source": fb.source,
                        "replaced": replaced_kind,
                        "loss": round(loss, 4),
                    }
                ),
                "created_at": now,
            }
        )
        status = FeedbackStatus.REPLACED if replaced else FeedbackStatus.STORED
        return FeedbackResult(status, loss, local, fields["playbook_id"] or None)

    def _claim_event(self, session: Session, event_id: str) -> bool:
        if session.get(ProcessedEvent, event_id) is not None:
            return False
        session.add(ProcessedEvent(event_id=event_id))
        session.flush()  # a concurrent claim fails here with IntegrityError → retried
        return True

    @staticmethod
    def _target(decision: Decision, playbook_id: str | None) -> Candidate | None:
        wanted = playbook_id or (decision.chosen.playbook_id if decision.chosen else None)
        if wanted is None and decision.candidates:
            wanted = decision.candidates[0].playbook_id
        return next((c for c in decision.candidates if c.playbook_id == wanted), None)

    def _vote(self, session: Session, rec_id: str, operator: str) -> Feedback | None:
        return session.exec(
            select(Feedback).where(
                Feedback.recommendation_id == rec_id, Feedback.operator_id == operator
            )
        ).first()

    def _bandit_apply(
        self, bandit: ThresholdBandit, arm_index: int, score: float, kind: FeedbackKind
    ) -> None:
        """Add one vote's evidence on the threshold arms."""
        if self.config.threshold_mode is ThresholdMode.THOMPSON and signal(kind).label is not None:
            bandit.update(arm_index, score, kind)

    def _take_back(self, bandit: ThresholdBandit, arm_index: int, row: Feedback) -> None:
        """Take back one stored vote's evidence: the exact inverse of the undiscounted update."""
        if self.config.threshold_mode is not ThresholdMode.THOMPSON or row.label is None:
            return
        accepted, rejected = row.weight * row.label, row.weight * (1.0 - row.label)
        arms = np.asarray(bandit.arms)
        if bandit.config.counterfactual:
            mask = (arms >= arms[arm_index]) & (arms <= row.score)
        else:
            mask = np.zeros(len(arms), dtype=bool)
            mask[arm_index] = row.score >= arms[arm_index]
        bandit.alpha[mask] = np.maximum(1.0, bandit.alpha[mask] - accepted)
        bandit.beta[mask] = np.maximum(1.0, bandit.beta[mask] - rejected)

    def _extend_score(
        self,
        session: Session,
        playbook_id: str,
        context_key: str,
        prior: float,
        kind: FeedbackKind,
        scores: dict[tuple[str, str], ScenarioScoreRow],
    ) -> float | None:
        """A new vote is the latest in its scenario's history: one refinement step, O(1)."""
        if signal(kind).label is None:
            return None
        key = (playbook_id, context_key)
        row = scores.get(key)
        current = ScenarioScore(row.value, row.observations) if row else ScenarioScore(prior)
        score = current.refined(kind, self.config.scoring.eta)
        if row is None:
            row = scores[key] = ScenarioScoreRow(
                playbook_id=playbook_id, context_key=context_key, value=score.value
            )
        row.value, row.observations, row.updated_at = score.value, score.observations, self.clock()
        session.add(row)
        return score.value

    def _replay_score(
        self,
        session: Session,
        playbook_id: str,
        context_key: str,
        scores: dict[tuple[str, str], ScenarioScoreRow],
    ) -> float | None:
        """The scenario score is a pure function of its current votes, in time order."""
        votes = session.exec(
            select(Feedback)
            .where(
                Feedback.playbook_id == playbook_id,
                Feedback.context_key == context_key,
                col(Feedback.withdrawn).is_(False),
            )
            .order_by(col(Feedback.created_at), col(Feedback.id))
        ).all()
        key = (playbook_id, context_key)
        row = scores.get(key) or session.get(ScenarioScoreRow, key)
        if not votes:
            if row is not None:
                session.delete(row)
                scores.pop(key, None)
            return None
        score = ScenarioScore(votes[0].prior)
        for vote in votes:
            score = score.refined(FeedbackKind(vote.kind), self.config.scoring.eta)
        if row is None:
            row = scores[key] = ScenarioScoreRow(
                playbook_id=playbook_id, context_key=context_key, value=score.value
            )
        row.value, row.observations, row.updated_at = score.value, score.observations, self.clock()
        session.add(row)
        return score.value

    # -- state --------------------------------------------------------------------------
    def _prior(self, session: Session) -> Prior:
        live_id = session.exec(
            select(ModelVersion.id).where(col(ModelVersion.live).is_(True))
        ).first()
        if live_id is None:
            return SimilarityPrior()
        if self._model_cache is None or self._model_cache[0] != live_id:
            weights = session.exec(
                select(ModelVersion.weights_json).where(ModelVersion.id == live_id)
            ).one()  # read only when the live model changed: it can be large
            self._model_cache = (live_id, LogisticModel.from_dict(json.loads(weights)))
        return self._model_cache[1]

    def _local_scores(self, session: Session, context_key: str) -> dict[str, ScenarioScore]:
        """The refined score of every playbook judged in this scenario (a handful)."""
        rows = session.connection().execute(
            select(
                ScenarioScoreRow.playbook_id,
                ScenarioScoreRow.value,
                ScenarioScoreRow.observations,
            ).where(ScenarioScoreRow.context_key == context_key)
        )
        return {pb: ScenarioScore(value, n) for pb, value, n in rows}

    def _candidate(
        self, scenario: Scenario, hit: PlaybookHit, prior: Prior, local: ScenarioScore | None
    ) -> Candidate:
        meta = hit.metadata
        action = Action(
            str(meta.get("action", "collect_diagnostics")),
            scenario.device,
            int(meta.get("blast_radius", 1)),
            str(meta.get("risk", "medium")),
        )
        model_prior = prior.predict(hit.doc_id, scenario.context(), hit.similarity)
        return Candidate(
            playbook_id=hit.doc_id,
            title=str(meta.get("playbook_title", hit.title)),
            action=action,
            similarity=hit.similarity,
            score=blend(local, model_prior, self.config.scoring.blend_k),
            model_prior=model_prior,
            observations=local.observations if local else 0,
            local_score=local.value if local else None,
        )

    def _bandit_rows(self, session: Session, lock: bool) -> list[BanditArm]:
        query = select(BanditArm).order_by(col(BanditArm.arm_index))
        if lock and self._locking:
            query = query.with_for_update()
        rows = list(session.exec(query).all())
        arms = self.config.bandit.arms
        if [r.threshold for r in rows] != list(arms):
            for r in rows:
                session.delete(r)
            session.flush()
            rows = [BanditArm(arm_index=i, threshold=a) for i, a in enumerate(arms)]
            session.add_all(rows)
            session.flush()
        return rows

    def _bandit_of(self, rows: Sequence[BanditArm]) -> ThresholdBandit:
        return ThresholdBandit(self.config.bandit, [r.alpha for r in rows], [r.beta for r in rows])

    @staticmethod
    def _save_bandit(rows: Sequence[BanditArm], bandit: ThresholdBandit) -> None:
        for row in rows:
            row.alpha = float(bandit.alpha[row.arm_index])
            row.beta = float(bandit.beta[row.arm_index])

    def _monitor(self, session: Session, lock: bool) -> MetaMonitor:
        return load_monitor(session, self.config.monitor, lock)

    def _save_monitor(self, session: Session, monitor: MetaMonitor) -> None:
        save_monitor(session, monitor, self.clock())

    def _recent_losses(self, session: Session, n: int = 20) -> list[float]:
        rows = session.exec(
            select(Feedback.loss)
            .where(col(Feedback.withdrawn).is_(False))
            .order_by(col(Feedback.updated_at).desc())
            .limit(n)
        ).all()
        return [float(x) for x in reversed(rows)]

    def _audit(
        self, session: Session, actor: str, action: str, subject: str, detail: dict[str, Any]
    ) -> None:
        audit(session, actor, action, subject, detail, self.clock())

    # -- reading ------------------------------------------------------------------------
    def stats(self, playbook_id: str | None = None) -> list[PlaybookStats]:
        return playbook_stats(self.engine, playbook_id)

    def set_paused(self, playbook_id: str, paused: bool, actor: str, reason: str = "") -> bool:
        return set_paused(
            self.engine, self.config, playbook_id, paused, actor, reason, self.clock()
        )

    def paused(self) -> set[str]:
        with Session(self._reader) as session:
            return set(self._monitor(session, lock=False).state.paused)

    def verbosity(self, operator_id: str, default: str) -> str:
        with Session(self._reader) as session:
            prefs = session.get(OperatorPrefs, operator_id)
            return prefs.verbosity if prefs else default

    def set_verbosity(self, operator_id: str, verbosity: str) -> None:
        if verbosity not in {"brief", "full"}:
            raise ValueError(f"verbosity: {verbosity!r} is not 'brief' or 'full'")
        with transaction(self.engine) as session:
            prefs = session.get(OperatorPrefs, operator_id) or OperatorPrefs(
                operator_id=operator_id
            )
            prefs.verbosity, prefs.updated_at = verbosity, self.clock()
            session.add(prefs)
            self._audit(session, operator_id, "prefs", operator_id, {"verbosity": verbosity})
