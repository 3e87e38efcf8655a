"""Recommending: retrieve the candidates, score them, pick the threshold, check the safety
policies, decide, and store the decision with its incident, its audit row and (when the
decision needs one) its approval or deferral job, in one transaction.

What the decision reads (whether the event was handled already, the prior, paused
playbooks, this context's evidence, the bandit, recent losses) is read in one snapshot
outside the write transaction: the SPE and the bandit take milliseconds that writers
(votes) should not wait for.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sqlalchemy.engine import Connection
from sqlmodel import select

from bot.context.build import scenario_for
from bot.context.gather import ContextGatherer
from bot.db.feedback_rows import claim_event, recent_losses
from bot.db.follow_up_rows import open_follow_up
from bot.db.models import Recommendation
from bot.db.outbox_rows import mark_decided
from bot.db.recommendation_rows import decision_scalars, store_recommendation
from bot.db.scores import context_evidence
from bot.db.state import audit_row, model_weights, monitor_of, read_bandit
from bot.extraction.rules import Vocabulary
from bot.service.deferrals import DeferralPolicy
from bot.service.deferrals import incident_json as deferral_incident
from bot.service.types import (
    POST_LEASE,
    DuplicateInFlightError,
    IncidentInput,
    PlaybookHit,
    Recorded,
    Retriever,
)
from bot.service.unit_of_work import UnitOfWork
from core.bandit import ArmChoice, ThresholdBandit
from core.codec import decision_from_dict, decision_to_dict
from core.decision import Candidate, decide
from core.model import LogisticModel, Prior, SimilarityPrior
from core.npo import NPOConfig, ThresholdMode
from core.ope import thompson_propensities
from core.policy import Action, SafetyPolicyEngine
from core.scenario import Scenario
from core.scoring import Evidence, posterior


@dataclass(frozen=True)
class _DecisionState:
    """What a decision reads: whether its event was handled already, the prior, paused
    playbooks, this context's evidence per playbook, the bandit and recent losses."""

    claimed: bool
    prior: Prior
    paused: set[str]
    evidence: dict[str, Evidence]
    bandit: ThresholdBandit
    losses: list[float]
    verbosity: str  # the reporter's preference ("": none), so posting needs no read of its own


class Recommender:
    def __init__(
        self,
        uow: UnitOfWork,
        retriever: Retriever,
        spe: SafetyPolicyEngine,
        config: NPOConfig,
        rng: np.random.Generator,
        candidates: int = 3,
        classify: Callable[[str], Mapping[str, object]] | None = None,
        *,
        max_incident_chars: int = 4000,
        vocabulary: Vocabulary | None = None,
        context: ContextGatherer | None = None,
        deferral: DeferralPolicy | None = None,
    ) -> None:
        self.uow, self.retriever, self.spe = uow, retriever, spe
        self.config, self.rng = config, rng
        self.candidates = candidates
        self.max_incident_chars = max_incident_chars  # what extraction and retrieval read
        self.classify = classify
        self.vocabulary = vocabulary  # the playbooks' applies_to, for extraction
        self.context = context  # context providers (None: the incident's own labels only)
        self.deferral = deferral or DeferralPolicy()  # when deferred candidates are re-judged
        self._mc_rng = np.random.default_rng(rng.integers(2**63))  # propensity estimates
        self._model_cache: tuple[int, LogisticModel] | None = None
        self._odds: tuple[bytes, npt.NDArray[np.float64]] | None = None

    # -- recommending -------------------------------------------------------------------
    def recommend(self, incident: IncidentInput) -> Recorded:
        """Retrieve, score, pick τ, check the SPE, decide, and store it all."""
        text, notes = incident.for_matching(self.max_incident_chars)
        hits = self.retriever.search(text, self.candidates)
        scenario = self._scenario(text, incident.hints, self.uow.clock(), hits)
        # Read and decide outside the write transaction: the SPE and the bandit take
        # milliseconds that writers (votes) should not wait for. What is read here only
        # changes through votes and monitor ticks; a decision made on it a few
        # milliseconds stale is the same decision. A delivery already handled is found
        # in the same snapshot (one read, not two, on every incident; a retried delivery
        # pays for its search), and the write below claims the event in any case.
        event_id = incident.source_event_id
        state = self._decision_state(scenario.context_key, event_id, incident.reporter)
        if event_id and state.claimed:
            return self._existing(event_id)
        prior, bandit = state.prior, state.bandit
        hits = [hit for hit in hits if hit.doc_id not in state.paused]
        candidates = [
            self._candidate(scenario, hit, prior, state.evidence.get(hit.doc_id)) for hit in hits
        ]
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
        decision = decide(scenario, candidates, arm, self.spe, state.losses, notes)
        now = self.uow.clock()
        decision = self.deferral.stamp(decision, now)
        stored = decision_to_dict(decision)
        incident_id, rec_id = uuid.uuid4().hex, uuid.uuid4().hex
        with self.uow.write() as conn:
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
        return Recorded(rec_id, decision, verbosity=state.verbosity)

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
        self, context_key: str, event_id: str | None, reporter: str
    ) -> _DecisionState:
        """What a decision reads, in one snapshot."""
        with self.uow.read() as conn:
            one = decision_scalars(conn, event_id, reporter)
            return _DecisionState(
                claimed=one.claimed,
                prior=self._prior(conn, one.live_model),
                paused=set(monitor_of(one.monitor_json, self.config.monitor).state.paused),
                evidence=context_evidence(conn, context_key, self.config.scoring),
                bandit=read_bandit(conn, self.config.bandit),
                losses=recent_losses(conn),
                verbosity=one.verbosity,
            )

    def _propensities(self, bandit: ThresholdBandit) -> npt.NDArray[np.float64]:
        """P(Thompson sampling picks each arm), for off-policy evaluation. The posterior
        only changes with votes, so the estimate is reused until it does."""
        posterior = bandit.alpha.tobytes() + bandit.beta.tobytes()
        if self._odds is None or self._odds[0] != posterior:
            odds = thompson_propensities(bandit.alpha, bandit.beta, self._mc_rng, draws=1000)
            self._odds = (posterior, odds)
        return self._odds[1]

    def _existing(self, event_id: str) -> Recorded:
        with self.uow.read_rows() as session:
            rec = session.exec(
                select(Recommendation).where(Recommendation.source_event_id == event_id)
            ).first()
            if rec is None:  # claimed by a concurrent delivery still in flight
                raise DuplicateInFlightError(event_id)
            decision = decision_from_dict(json.loads(rec.decision_json))
            return Recorded(rec.id, decision, duplicate=True)

    # -- state ------------------------------------------------------------------------
    def _prior(self, conn: Connection, live_id: int | None) -> Prior:
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
