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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from bot.db.engine import transaction
from bot.db.models import (
    BanditArm,
    Feedback,
    Incident,
    ModelVersion,
    OperatorPrefs,
    ProcessedEvent,
    Recommendation,
    RetrainRequest,
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
        with transaction(self.engine) as session:
            if incident.source_event_id and not self._claim_event(
                session, incident.source_event_id
            ):
                return self._existing(incident.source_event_id)
            prior = self._prior(session)
            paused = set(self._monitor(session, lock=False).state.paused)
            candidates = [
                self._candidate(session, scenario, hit, prior)
                for hit in hits
                if hit.doc_id not in paused
            ]
            bandit = self._bandit(session, lock=False)
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
            decision = decide(scenario, candidates, arm, self.spe, self._recent_losses(session))
            row_incident = Incident(
                source=incident.source,
                channel=incident.channel,
                thread_ts=incident.thread_ts,
                reporter=incident.reporter,
                text=incident.text,
                scenario_json=json.dumps(decision_to_dict(decision)["scenario"]),
                context_key=scenario.context_key,
                created_at=self.clock(),
            )
            session.add(row_incident)
            session.flush()
            rec = Recommendation(
                source_event_id=incident.source_event_id,
                incident_id=row_incident.id,
                outcome=decision.outcome.value,
                playbook_id=decision.chosen.playbook_id if decision.chosen else None,
                score=decision.explanation.visual.score,
                threshold=arm.threshold,
                arm_index=arm.index,
                propensity=propensity,
                policy=policy,
                spe_verdict=decision.explanation.compliance.verdict.value,
                decision_json=json.dumps(decision_to_dict(decision)),
                channel=incident.channel,
                created_at=self.clock(),
            )
            session.add(rec)
            self._audit(
                session,
                incident.reporter or incident.source,
                "recommend",
                rec.id,
                {
                    "outcome": decision.outcome.value,
                    "playbook": rec.playbook_id,
                    "threshold": arm.threshold,
                    "verdict": rec.spe_verdict,
                },
            )
        return Recorded(rec.id, decision)

    def _already_handled(self, event_id: str) -> bool:
        with Session(self.engine) as session:
            return session.get(ProcessedEvent, event_id) is not None

    def _existing(self, event_id: str) -> Recorded:
        with Session(self.engine) as session:
            rec = session.exec(
                select(Recommendation).where(Recommendation.source_event_id == event_id)
            ).first()
            if rec is None:  # claimed by a concurrent delivery still in flight
                raise DuplicateInFlightError(event_id)
            decision = decision_from_dict(json.loads(rec.decision_json))
            return Recorded(rec.id, decision, duplicate=True)

    def votes(self, recommendation_id: str) -> list[Vote]:
        with Session(self.engine) as session:
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
            rec = session.get(Recommendation, recommendation_id)
            if rec is not None:
                rec.channel, rec.message_ts = channel, message_ts
                session.add(rec)

    def recommendation_for_message(self, channel: str, message_ts: str) -> str | None:
        with Session(self.engine) as session:
            rec = session.exec(
                select(Recommendation).where(
                    Recommendation.channel == channel, Recommendation.message_ts == message_ts
                )
            ).first()
            return rec.id if rec else None

    def decision(self, recommendation_id: str) -> Decision | None:
        with Session(self.engine) as session:
            rec = session.get(Recommendation, recommendation_id)
            return decision_from_dict(json.loads(rec.decision_json)) if rec else None

    # -- feedback -----------------------------------------------------------------------
    def record_feedback(self, fb: FeedbackInput) -> FeedbackResult:
        for attempt in range(5):
            try:
                with transaction(self.engine) as session:
                    return self._record(session, fb)
            except IntegrityError:
                # A concurrent writer stored the same event (or the first score of the same
                # scenario) between our read and our write: the next attempt sees it.
                if attempt == 4:
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
            bandit = self._bandit(session, lock=True)
            rec = session.get(Recommendation, recommendation_id)
            assert rec is not None
            self._bandit_apply(bandit, rec, current, sign=-1.0)
            self._save_bandit(session, bandit)
            current.withdrawn, current.updated_at = True, self.clock()
            session.add(current)
            session.flush()
            local = self._replay_score(session, current.playbook_id, current.context_key)
            self._audit(session, operator_id, "withdraw", recommendation_id, {"kind": current.kind})
            return FeedbackResult(FeedbackStatus.WITHDRAWN, None, local, current.playbook_id)

    def _record(self, session: Session, fb: FeedbackInput) -> FeedbackResult:
        if not self._claim_event(session, fb.source_event_id):
            return FeedbackResult(FeedbackStatus.DUPLICATE)
        monitor = self._monitor(session, lock=True)  # serialises every learning update
        rec = session.get(Recommendation, fb.recommendation_id)
        if rec is None:
            return FeedbackResult(FeedbackStatus.UNKNOWN_RECOMMENDATION)
        decision = decision_from_dict(json.loads(rec.decision_json))
        target = self._target(decision, fb.playbook_id)
        if target is None and fb.kind is not FeedbackKind.SKIPPED:
            return FeedbackResult(FeedbackStatus.NOT_A_CANDIDATE)
        score = target.score if target else 0.0
        loss = alignment_loss(fb.kind, score, self.config.skip_loss)
        sig = signal(fb.kind)
        previous = self._vote(session, rec.id, fb.operator_id)
        bandit = self._bandit(session, lock=True)
        if previous is not None and not previous.withdrawn:
            self._bandit_apply(bandit, rec, previous, sign=-1.0)
        row = previous or Feedback(
            recommendation_id=rec.id,
            playbook_id=target.playbook_id if target else "",
            context_key=decision.scenario.context_key,
            operator_id=fb.operator_id,
            kind=fb.kind.value,
            score=score,
            loss=loss,
            source_event_id=fb.source_event_id,
            created_at=self.clock(),
        )
        row.playbook_id = target.playbook_id if target else ""
        row.kind, row.label, row.weight = fb.kind.value, sig.label, sig.weight
        row.score, row.loss, row.reason, row.source = score, loss, fb.reason, fb.source
        row.prior = target.model_prior if target else 0.0
        row.similarity = target.similarity if target else 0.0
        row.context_json = json.dumps(decision.scenario.context())
        row.withdrawn, row.updated_at = False, self.clock()
        session.add(row)
        session.flush()
        self._bandit_apply(bandit, rec, row, sign=1.0)
        self._save_bandit(session, bandit)
        local = None
        if target is not None:
            if previous is None:
                local = self._extend_score(session, row)
            else:  # a replaced vote changes history: replay the scenario's votes
                local = self._replay_score(session, target.playbook_id, row.context_key)
                if previous.playbook_id not in ("", target.playbook_id):
                    self._replay_score(session, previous.playbook_id, previous.context_key)
        monitor.observe(fb.kind, loss, target.playbook_id if target else None)
        self._save_monitor(session, monitor)
        if fb.kind is FeedbackKind.OVERRIDE:
            session.add(
                RetrainRequest(
                    reason=f"override of {row.playbook_id}: {fb.reason}".strip(),
                    requested_by=fb.operator_id,
                )
            )
        rec.status = "judged"
        session.add(rec)
        self._audit(
            session,
            fb.operator_id,
            f"feedback:{fb.kind.value}",
            rec.id,
            {
                "playbook": row.playbook_id,
                "reason": fb.reason,
                "source": fb.source,
                "replaced": previous.kind if previous else None,
                "loss": round(loss, 4),
            },
        )
        status = FeedbackStatus.REPLACED if previous is not None else FeedbackStatus.STORED
        return FeedbackResult(status, loss, local, row.playbook_id or None)

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
        self, bandit: ThresholdBandit, rec: Recommendation, row: Feedback, sign: float
    ) -> None:
        """Add (or take back) one vote's evidence on the threshold arms."""
        if self.config.threshold_mode is not ThresholdMode.THOMPSON or row.label is None:
            return
        if sign > 0:
            bandit.update(rec.arm_index, row.score, FeedbackKind(row.kind))
            return
        # Taking back: the exact inverse of the undiscounted update.
        accepted, rejected = row.weight * row.label, row.weight * (1.0 - row.label)
        arms = np.asarray(bandit.arms)
        if bandit.config.counterfactual:
            mask = (arms >= arms[rec.arm_index]) & (arms <= row.score)
        else:
            mask = np.zeros(len(arms), dtype=bool)
            mask[rec.arm_index] = row.score >= arms[rec.arm_index]
        bandit.alpha[mask] = np.maximum(1.0, bandit.alpha[mask] - accepted)
        bandit.beta[mask] = np.maximum(1.0, bandit.beta[mask] - rejected)

    def _extend_score(self, session: Session, vote: Feedback) -> float | None:
        """A new vote is the latest in its scenario's history: one refinement step, O(1)."""
        if vote.label is None:
            return None
        row = session.get(
            ScenarioScoreRow, (vote.playbook_id, vote.context_key), with_for_update=self._locking
        )
        current = ScenarioScore(row.value, row.observations) if row else ScenarioScore(vote.prior)
        score = current.refined(FeedbackKind(vote.kind), self.config.scoring.eta)
        row = row or ScenarioScoreRow(
            playbook_id=vote.playbook_id, context_key=vote.context_key, value=score.value
        )
        row.value, row.observations, row.updated_at = score.value, score.observations, self.clock()
        session.add(row)
        return score.value

    def _replay_score(self, session: Session, playbook_id: str, context_key: str) -> float | None:
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
        row = session.get(
            ScenarioScoreRow, (playbook_id, context_key), with_for_update=self._locking
        )
        if not votes:
            if row is not None:
                session.delete(row)
            return None
        score = ScenarioScore(votes[0].prior)
        for vote in votes:
            score = score.refined(FeedbackKind(vote.kind), self.config.scoring.eta)
        if row is None:
            row = ScenarioScoreRow(
                playbook_id=playbook_id, context_key=context_key, value=score.value
            )
        row.value, row.observations, row.updated_at = score.value, score.observations, self.clock()
        session.add(row)
        return score.value

    # -- state --------------------------------------------------------------------------
    def _prior(self, session: Session) -> Prior:
        live = session.exec(select(ModelVersion).where(col(ModelVersion.live).is_(True))).first()
        if live is None or live.id is None:
            return SimilarityPrior()
        if self._model_cache is None or self._model_cache[0] != live.id:
            self._model_cache = (live.id, LogisticModel.from_dict(json.loads(live.weights_json)))
        return self._model_cache[1]

    def _candidate(
        self, session: Session, scenario: Scenario, hit: PlaybookHit, prior: Prior
    ) -> Candidate:
        meta = hit.metadata
        action = Action(
            str(meta.get("action", "collect_diagnostics")),
            scenario.device,
            int(meta.get("blast_radius", 1)),
            str(meta.get("risk", "medium")),
        )
        model_prior = prior.predict(hit.doc_id, scenario.context(), hit.similarity)
        row = session.get(ScenarioScoreRow, (hit.doc_id, scenario.context_key))
        local = ScenarioScore(row.value, row.observations) if row else None
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

    def _bandit(self, session: Session, lock: bool) -> ThresholdBandit:
        query = select(BanditArm).order_by(col(BanditArm.arm_index))
        if lock and self._locking:
            query = query.with_for_update()
        rows = session.exec(query).all()
        arms = self.config.bandit.arms
        if [r.threshold for r in rows] != list(arms):
            for r in rows:
                session.delete(r)
            rows = [BanditArm(arm_index=i, threshold=a) for i, a in enumerate(arms)]
            session.add_all(rows)
            session.flush()
        return ThresholdBandit(self.config.bandit, [r.alpha for r in rows], [r.beta for r in rows])

    def _save_bandit(self, session: Session, bandit: ThresholdBandit) -> None:
        for row in session.exec(select(BanditArm)).all():
            row.alpha = float(bandit.alpha[row.arm_index])
            row.beta = float(bandit.beta[row.arm_index])
            session.add(row)

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
        with Session(self.engine) as session:
            return set(self._monitor(session, lock=False).state.paused)

    def verbosity(self, operator_id: str, default: str) -> str:
        with Session(self.engine) as session:
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
