"""The application service: every adapter (Slack, console, alerts) calls this and nothing
else. It owns the transaction boundaries; the learning itself is the pure core.

Feedback is idempotent: each delivery carries a source event id that is stored once
(unique key), so a Slack retry, a second click or a second replica changes nothing. One
operator's later vote on a recommendation replaces the earlier one. Every vote goes through
the one learning step of the core (``core.learning.learn``); a replaced or withdrawn vote's
arm evidence is taken back exactly, and its scenario evidence leaves with it (scenario
evidence is counted from the live votes, ``bot.db.scores``).
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from bot.context.build import scenario_for
from bot.context.gather import ContextGatherer
from bot.db.batch_writes import BatchWrites
from bot.db.engine import bounded_wait, read_only, transaction
from bot.db.feedback_rows import (
    StoredVote,
    claim_event,
    claimed,
    decisions,
    is_claimed,
    recent_losses,
    replace_vote,
    stored_vote,
    voters,
    withdraw_vote,
)
from bot.db.follow_up_rows import open_follow_up
from bot.db.group_commit import GroupCommit
from bot.db.models import (
    Feedback,
    Incident,
    OperatorPrefs,
    Recommendation,
)
from bot.db.outbox_rows import (
    accept,
    claim_post,
    claim_unposted,
    claim_waiting,
    mark_decided,
    release_post,
)
from bot.db.recommendation_rows import operator_verbosity, store_message_ts, store_recommendation
from bot.db.scores import Key as ScoreKey
from bot.db.scores import context_evidence, scenario_evidence
from bot.db.state import (
    audit,
    audit_row,
    live_model,
    load_bandit,
    load_clock,
    load_monitor,
    model_weights,
    read_bandit,
    read_clock,
    read_monitor,
    save_bandit,
    save_clock,
    save_monitor,
)
from bot.deferrals import DeferralPolicy
from bot.deferrals import incident_json as deferral_incident
from bot.extract import Vocabulary
from bot.stats import PlaybookStats, playbook_stats
from bot.text_input import MAX_STORED_CHARS, clean_text
from core.bandit import ArmChoice, ArmDelta, ThresholdBandit
from core.codec import decision_from_dict, decision_to_dict
from core.decision import Candidate, Decision, decide
from core.feedback import FeedbackKind, signal
from core.learning import judged, learn
from core.model import LogisticModel, Prior, SimilarityPrior
from core.npo import NPOConfig, ThresholdMode
from core.ope import thompson_propensities
from core.policy import Action, SafetyPolicyEngine
from core.scenario import Scenario
from core.scoring import Evidence, evidence, posterior


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
    """An incident as every adapter hands it over. Its text is stored as given, without
    control characters and up to Slack's message limit (``MAX_STORED_CHARS``) whatever
    the adapter: PostgreSQL rejects NUL, and no source may grow a row without bound."""

    text: str
    source: str
    channel: str = ""
    thread_ts: str = ""
    reporter: str = ""
    hints: Mapping[str, object] = field(default_factory=dict)
    source_event_id: str | None = None  # set by adapters whose deliveries can repeat
    received_chars: int = field(default=0, init=False, compare=False)  # before the cap

    def __post_init__(self) -> None:
        object.__setattr__(self, "received_chars", len(self.text))
        object.__setattr__(self, "text", clean_text(self.text, MAX_STORED_CHARS))

    def for_matching(self, limit: int) -> tuple[str, tuple[str, ...]]:
        """The head of the text that extraction and retrieval read (their cost grows with
        the text; an incident's start says what it is about), and trace notes saying what
        was kept."""
        notes = []
        if self.received_chars > len(self.text):
            notes.append(
                f"incident text cut to Slack's limit: the first {len(self.text):,} of "
                f"{self.received_chars:,} characters are stored"
            )
        if len(self.text) > limit:
            notes.append(
                f"incident text truncated to the first {limit:,} of {len(self.text):,} "
                "characters for matching"
            )
        return self.text[:limit], tuple(notes)


POST_LEASE = dt.timedelta(minutes=5)  # how long the worker that decided holds the post
# The inbox write happens before Slack's 3-second deadline: it waits at most this long for
# another writer, then fails the request (Slack retries) instead of missing the deadline.
ACCEPT_WAIT = dt.timedelta(seconds=1)


def incident_to_json(incident: IncidentInput) -> str:
    return json.dumps(
        {
            "text": incident.text,
            "source": incident.source,
            "channel": incident.channel,
            "thread_ts": incident.thread_ts,
            "reporter": incident.reporter,
            "hints": dict(incident.hints),
            "source_event_id": incident.source_event_id,
        }
    )


def incident_from_json(text: str) -> IncidentInput:
    data = json.loads(text)
    return IncidentInput(
        text=str(data["text"]),
        source=str(data["source"]),
        channel=str(data["channel"]),
        thread_ts=str(data["thread_ts"]),
        reporter=str(data["reporter"]),
        hints=dict(data["hints"]),
        source_event_id=data["source_event_id"],
    )


@dataclass(frozen=True, slots=True)
class UnpostedRecommendation:
    """A stored decision whose message never reached Slack (its worker died)."""

    recommendation_id: str
    decision: Decision
    channel: str
    thread_ts: str
    reporter: str


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

    step: int  # the learning clock: one step per applied vote
    bandit: ThresholdBandit
    claimed: set[str] = field(default_factory=set)
    decisions: dict[str, Decision] = field(default_factory=dict)
    # (recommendation, operator) → the stored vote, or None until a replacement loads it
    votes: dict[tuple[str, str], StoredVote | None] = field(default_factory=dict)
    # (playbook, context) → evidence of its live votes, kept current as the batch votes
    scores: dict[ScoreKey, Evidence] = field(default_factory=dict)
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


class UnknownPlaybookError(ValueError):
    """A playbook id that is not in the library (nothing to pause or resume)."""


def set_paused(
    engine: Engine,
    config: NPOConfig,
    playbook_id: str,
    paused: bool,
    actor: str,
    reason: str,
    now: dt.datetime,
    known: Callable[[str], bool] | None = None,
) -> bool:
    """Pause or resume a playbook by hand (audited); returns whether anything changed.
    ``known`` says which ids exist: anything else is refused (``UnknownPlaybookError``)."""
    if known is not None and not known(playbook_id):
        raise UnknownPlaybookError(f"no playbook {playbook_id!r} in the library")
    with engine.begin() as conn:
        monitor = load_monitor(conn, config.monitor)
        if paused == (playbook_id in monitor.state.paused):
            return False
        if paused:
            monitor.pause(playbook_id)
        else:
            monitor.resume(playbook_id, read_clock(conn)[0])
        save_monitor(conn, monitor, now)
        action = "pause" if paused else "resume"
        audit(conn, actor, f"playbook:{action}", playbook_id, {"reason": reason}, now)
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
        *,
        max_incident_chars: int = 4000,
        vocabulary: Vocabulary | None = None,
        context: ContextGatherer | None = None,
        deferral: DeferralPolicy | None = None,
    ) -> None:
        self.engine, self.retriever, self.spe = engine, retriever, spe
        self.config, self.rng, self.clock = config, rng, clock
        self.candidates = candidates
        self.max_incident_chars = max_incident_chars  # what extraction and retrieval read
        self.classify = classify
        self.vocabulary = vocabulary  # the playbooks' applies_to, for extraction
        self.context = context  # context providers (None: the incident's own labels only)
        self.deferral = deferral or DeferralPolicy()  # when deferred candidates are re-judged
        self._mc_rng = np.random.default_rng(rng.integers(2**63))  # propensity estimates
        self._model_cache: tuple[int, LogisticModel] | None = None
        self._odds: tuple[bytes, npt.NDArray[np.float64]] | None = None
        self._feedback_writer = GroupCommit(self._record_batch)
        self._reader = read_only(engine)

    # -- recommending -------------------------------------------------------------------
    def recommend(self, incident: IncidentInput) -> Recorded:
        """Retrieve, score, pick τ, check the SPE, decide, and store it all."""
        if incident.source_event_id and self._already_handled(incident.source_event_id):
            return self._existing(incident.source_event_id)
        text, notes = incident.for_matching(self.max_incident_chars)
        hits = self.retriever.search(text, self.candidates)
        scenario = self._scenario(text, incident.hints, self.clock(), hits)
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
        elif mode is ThresholdMode.ABSTAIN:
            arm = ArmChoice(len(bandit.arms) - 1, math.inf, 1.0, 1.0, math.nan)  # none clears it
            propensity, policy = 1.0, "abstain"
        else:
            arm = bandit.choose(self.rng)
            propensity, policy = max(float(self._propensities(bandit)[arm.index]), 1e-3), "thompson"
        decision = decide(scenario, candidates, arm, self.spe, losses, notes)
        now = self.clock()
        decision = self.deferral.stamp(decision, now)
        stored = decision_to_dict(decision)
        incident_id, rec_id = uuid.uuid4().hex, uuid.uuid4().hex
        with self.engine.begin() as conn:
            if incident.source_event_id and not claim_event(conn, incident.source_event_id, now):
                return self._existing(incident.source_event_id)
            if incident.source_event_id:
                mark_decided(conn, incident.source_event_id, now)
            chosen = decision.chosen.playbook_id if decision.chosen else None
            verdict = decision.explanation.compliance.verdict.value
            store_recommendation(
                conn,
                incident={
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
                recommendation={
                    "id": rec_id,
                    "source_event_id": incident.source_event_id,
                    "incident_id": incident_id,
                    "outcome": decision.outcome.value,
                    "playbook_id": chosen,
                    "score": decision.explanation.visual.score,
                    "threshold": arm.threshold,
                    "arm_index": arm.index,
                    "propensity": propensity,
                    "policy": policy,
                    "spe_verdict": verdict,
                    "decision_json": json.dumps(stored),
                    "channel": incident.channel,
                    "message_ts": "",
                    "status": "open",
                    "post_state": "pending" if incident.channel else "none",
                    "post_claimed_until": now + POST_LEASE if incident.channel else None,
                    "created_at": now,
                },
                audit=audit_row(
                    incident.reporter or incident.source,
                    "recommend",
                    rec_id,
                    {
                        "outcome": decision.outcome.value,
                        "playbook": chosen,
                        "threshold": arm.threshold,
                        "verdict": verdict,
                    },
                    now,
                ),
            )
            open_follow_up(  # an approval or a deferral job, when the decision needs one
                conn,
                recommendation_id=rec_id,
                decision=decision,
                requester=incident.reporter,
                incident_json=deferral_incident(text, incident.hints, incident.reporter),
                channel=incident.channel,
                thread_ts=incident.thread_ts,
                now=now,
            )
        return Recorded(rec_id, decision)

    def _scenario(
        self,
        text: str,
        hints: Mapping[str, object],
        now: dt.datetime,
        hits: Sequence[PlaybookHit],
    ) -> Scenario:
        return scenario_for(
            text,
            hints,
            now,
            [(h.doc_id, h.similarity) for h in hits],
            self.vocabulary,
            self.context,
            self.classify,
        )

    def fresh_scenario(self, text: str, now: dt.datetime, hints: Mapping[str, object]) -> Scenario:
        """The incident's scenario with the context as it is now (a deferral judged again)."""
        text = text[: self.max_incident_chars]
        return self._scenario(text, hints, now, self.retriever.search(text, self.candidates))

    def _decision_state(
        self, context_key: str
    ) -> tuple[Prior, set[str], dict[str, Evidence], ThresholdBandit, list[float]]:
        """Prior, paused playbooks, this context's evidence per playbook, bandit, recent
        losses: read in one snapshot."""
        with self._reader.connect() as conn:
            return (
                self._prior(conn),
                set(read_monitor(conn, self.config.monitor).state.paused),
                context_evidence(conn, context_key, self.config.scoring),
                read_bandit(conn, self.config.bandit),
                recent_losses(conn),
            )

    def _propensities(self, bandit: ThresholdBandit) -> npt.NDArray[np.float64]:
        """P(Thompson sampling picks each arm), for off-policy evaluation. The posterior
        only changes with votes, so the estimate is reused until it does."""
        posterior = bandit.alpha.tobytes() + bandit.beta.tobytes()
        if self._odds is None or self._odds[0] != posterior:
            odds = thompson_propensities(bandit.alpha, bandit.beta, self._mc_rng, draws=1000)
            self._odds = (posterior, odds)
        return self._odds[1]

    def _already_handled(self, event_id: str) -> bool:
        with self._reader.connect() as conn:
            return is_claimed(conn, event_id)

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

    # -- the inbox and the outbox ------------------------------------------------------
    def accept(self, incident: IncidentInput) -> bool:
        """Durably note an incident before Slack is told it arrived (the ack): if this
        process dies before deciding it, another replica or the next start does. False
        when the same delivery was accepted already."""
        if not incident.source_event_id:
            raise ValueError("accept: an incident needs its delivery's event id")
        with bounded_wait(self.engine, ACCEPT_WAIT) as conn, conn.begin():
            return accept(conn, incident.source_event_id, incident_to_json(incident), self.clock())

    def waiting_incidents(
        self, older_than: dt.timedelta, lease: dt.timedelta = POST_LEASE, limit: int = 50
    ) -> list[IncidentInput]:
        """Accepted incidents nobody decided within ``older_than``, claimed for this caller."""
        now = self.clock()
        with self.engine.begin() as conn:
            rows = claim_waiting(conn, now, now - older_than, lease, limit)
        return [incident_from_json(text) for _, text in rows]

    def unposted(
        self, lease: dt.timedelta = POST_LEASE, limit: int = 50
    ) -> list[UnpostedRecommendation]:
        """Stored recommendations whose post nobody holds any more, claimed for this caller."""
        now = self.clock()
        with self.engine.begin() as conn:
            ids = claim_unposted(conn, now, lease, limit)
        out = []
        with Session(self._reader) as session:
            for rec_id in ids:
                rec = session.get(Recommendation, rec_id)
                if rec is None:
                    continue
                incident = session.get(Incident, rec.incident_id)
                out.append(
                    UnpostedRecommendation(
                        rec.id,
                        decision_from_dict(json.loads(rec.decision_json)),
                        rec.channel,
                        incident.thread_ts if incident else "",
                        incident.reporter if incident else "",
                    )
                )
        return out

    def claim_post(self, recommendation_id: str, lease: dt.timedelta = POST_LEASE) -> bool:
        """Hold the post of a stored recommendation nobody holds (a retry of its delivery)."""
        now = self.clock()
        with self.engine.begin() as conn:
            return claim_post(conn, recommendation_id, now, lease)

    def release_post(self, recommendation_id: str) -> None:
        """Give the post back after a failed attempt: the next one may go at once."""
        with self.engine.begin() as conn:
            release_post(conn, recommendation_id)

    def attach_message(self, recommendation_id: str, channel: str, message_ts: str) -> None:
        with self.engine.begin() as conn:
            store_message_ts(conn, recommendation_id, channel, message_ts)

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
                with self.engine.begin() as conn:
                    return self._record_all(conn, batch)
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
        now = self.clock()
        with self.engine.begin() as conn:
            if not claim_event(conn, source_event_id, now):
                return FeedbackResult(FeedbackStatus.DUPLICATE)
            _, bandit_steps = load_clock(conn)  # serialises learning updates
            current = stored_vote(conn, recommendation_id, operator_id)
            if current is None or current.withdrawn:
                return FeedbackResult(FeedbackStatus.NOTHING_TO_WITHDRAW)
            bandit = load_bandit(conn, self.config.bandit, bandit_steps)
            self._take_back(bandit, current)
            save_bandit(conn, bandit)
            withdraw_vote(conn, current.id, now)
            audit(conn, operator_id, "withdraw", recommendation_id, {"kind": current.kind}, now)
            return FeedbackResult(FeedbackStatus.WITHDRAWN, None, None, current.playbook_id)

    def _record_all(self, conn: Connection, batch: Sequence[FeedbackInput]) -> list[FeedbackResult]:
        """Apply a batch of votes in order: a few queries up front, one write per table."""
        step, bandit_steps = load_clock(conn)  # serialises learning updates
        loaded = _Batch(step=step, bandit=load_bandit(conn, self.config.bandit, bandit_steps))
        loaded.claimed |= claimed(conn, {fb.source_event_id for fb in batch})
        rec_ids = {fb.recommendation_id for fb in batch}
        for rec_id, decision_json in decisions(conn, rec_ids).items():
            loaded.decisions[rec_id] = decision_from_dict(json.loads(decision_json))
        loaded.votes.update(dict.fromkeys(voters(conn, rec_ids)))  # loaded if replaced
        loaded.scores = scenario_evidence(
            conn,
            (
                (c.playbook_id, d.scenario.context_key)
                for d in loaded.decisions.values()
                for c in d.candidates
            ),
            self.config.scoring,
        )
        results = [self._record(conn, fb, loaded) for fb in batch]
        loaded.writes.flush(conn)
        if any(r.changed for r in results):
            save_bandit(conn, loaded.bandit)
            save_clock(conn, loaded.step, loaded.bandit.steps)
        return results

    def _record(self, conn: Connection, fb: FeedbackInput, loaded: _Batch) -> FeedbackResult:
        if fb.source_event_id in loaded.claimed:
            return FeedbackResult(FeedbackStatus.DUPLICATE)
        now = self.clock()
        loaded.claimed.add(fb.source_event_id)
        loaded.writes.events.append({"event_id": fb.source_event_id, "created_at": now})
        decision = loaded.decisions.get(fb.recommendation_id)
        if decision is None:
            return FeedbackResult(FeedbackStatus.UNKNOWN_RECOMMENDATION)
        target = judged(decision, fb.playbook_id)
        if target is None and fb.kind is not FeedbackKind.SKIPPED:
            return FeedbackResult(FeedbackStatus.NOT_A_CANDIDATE)
        sig = signal(fb.kind)
        key = (fb.recommendation_id, fb.operator_id)
        replaced = key in loaded.votes
        previous: StoredVote | None = None
        if replaced:  # the earlier vote's evidence goes before the new vote's comes in
            loaded.writes.flush(conn)
            previous = loaded.votes[key] or stored_vote(conn, *key)
            assert previous is not None
            if not previous.withdrawn:
                self._take_back(loaded.bandit, previous)
                self._forget(loaded, previous)
        loaded.step += 1
        bandit = loaded.bandit if self.config.bandit_learns else None
        effect = learn(decision, fb.playbook_id, fb.kind, loaded.step, self.config.learning, bandit)
        fields: dict[str, Any] = {
            "playbook_id": effect.playbook_id or "",
            "kind": fb.kind.value,
            "label": sig.label,
            "weight": sig.weight,
            "score": effect.score,
            "loss": effect.loss,
            "reason": fb.reason,
            "source": fb.source,
            "prior": target.model_prior if target else 0.0,
            "similarity": target.similarity if target else 0.0,
            "context_json": json.dumps(decision.scenario.context()),
            "withdrawn": False,
            "seq": loaded.step,
            "bandit_json": json.dumps(effect.arms.to_dict()) if effect.arms else "{}",
            "updated_at": now,
        }
        local = None
        context_key = decision.scenario.context_key
        if target is not None and not effect.evidence.empty:
            scenario = (target.playbook_id, context_key)
            found = loaded.scores.get(scenario, Evidence()) + effect.evidence
            loaded.scores[scenario] = found
            local = posterior(found, target.model_prior, self.config.scoring)
        replaced_kind = None
        if not replaced:  # the common case: a first vote, appended in bulk
            loaded.votes[key] = None  # stored by this batch: loaded only if it is replaced
            loaded.writes.votes.append(
                {
                    "recommendation_id": fb.recommendation_id,
                    "context_key": context_key,
                    "operator_id": fb.operator_id,
                    "source_event_id": fb.source_event_id,
                    "created_at": now,
                    **fields,
                }
            )
        else:  # a later vote replaces the earlier one in place
            assert previous is not None
            replaced_kind = previous.kind
            replace_vote(conn, previous.id, fields)
            loaded.votes[key] = None  # changed: read again if replaced again
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
        detail = {
            "playbook": fields["playbook_id"],
            "reason": fb.reason,
            "source": fb.source,
            "replaced": replaced_kind,
            "loss": round(effect.loss, 4),
            "utility": effect.utility,
        }
        loaded.writes.audits.append(
            audit_row(
                fb.operator_id, f"feedback:{fb.kind.value}", fb.recommendation_id, detail, now
            )
        )
        status = FeedbackStatus.REPLACED if replaced else FeedbackStatus.STORED
        return FeedbackResult(status, effect.loss, local, fields["playbook_id"] or None)

    @staticmethod
    def _take_back(bandit: ThresholdBandit, vote: StoredVote) -> None:
        """Take back exactly what one stored vote added to the arms (also with discount)."""
        stored = json.loads(vote.bandit_json or "{}")
        if stored:
            bandit.take_back(ArmDelta.from_dict(stored))

    def _forget(self, loaded: _Batch, previous: StoredVote) -> None:
        """The batch's view of a scenario loses what a replaced vote had added to it."""
        scenario = (previous.playbook_id, previous.context_key)
        if previous.playbook_id and scenario in loaded.scores:
            found = evidence(FeedbackKind(previous.kind), self.config.scoring)
            loaded.scores[scenario] = loaded.scores[scenario] - found

    # -- state --------------------------------------------------------------------------
    def _prior(self, conn: Connection) -> Prior:
        live_id = live_model(conn)
        if live_id is None:
            return SimilarityPrior()
        if self._model_cache is None or self._model_cache[0] != live_id:
            weights = model_weights(conn, live_id)  # only when the live model changed: large
            self._model_cache = (live_id, LogisticModel.from_dict(json.loads(weights)))
        return self._model_cache[1]

    def _candidate(
        self, scenario: Scenario, hit: PlaybookHit, prior: Prior, local: Evidence | None
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
            score=posterior(local or Evidence(), model_prior, self.config.scoring),
            model_prior=model_prior,
            observations=local.observations if local else 0,
            local_score=local.local if local else None,
        )

    # -- reading ------------------------------------------------------------------------
    def stats(self, playbook_id: str | None = None) -> list[PlaybookStats]:
        return playbook_stats(self.engine, playbook_id)

    def set_paused(self, playbook_id: str, paused: bool, actor: str, reason: str = "") -> bool:
        return set_paused(
            self.engine, self.config, playbook_id, paused, actor, reason, self.clock()
        )

    def paused(self) -> set[str]:
        with self._reader.connect() as conn:
            return set(read_monitor(conn, self.config.monitor).state.paused)

    def verbosity(self, operator_id: str, default: str) -> str:
        with self._reader.connect() as conn:
            return operator_verbosity(conn, operator_id) or default

    def set_verbosity(self, operator_id: str, verbosity: str) -> None:
        if verbosity not in {"brief", "full"}:
            raise ValueError(f"verbosity: {verbosity!r} is not 'brief' or 'full'")
        with transaction(self.engine) as session:
            prefs = session.get(OperatorPrefs, operator_id) or OperatorPrefs(
                operator_id=operator_id
            )
            prefs.verbosity, prefs.updated_at = verbosity, self.clock()
            session.add(prefs)
            audit(
                session.connection(),
                operator_id,
                "prefs",
                operator_id,
                {"verbosity": verbosity},
                self.clock(),
            )
