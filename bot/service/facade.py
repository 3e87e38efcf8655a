"""``NPOService``: the one object every adapter (Slack, console, alerts, the scheduler) calls.

It holds the use cases — ``recommender``, ``feedback``, ``outbox``, ``reads`` — built on one
``UnitOfWork``, and forwards each call to the use case that owns it, so an adapter needs one
dependency and a use case can be read (and tested) alone. The learning itself is the pure
core; the transaction boundaries are the use cases'.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from sqlalchemy.engine import Engine

from bot.context.gather import ContextGatherer
from bot.extraction.rules import Vocabulary
from bot.reporting.stats import PlaybookStats
from bot.service.deferrals import DeferralPolicy
from bot.service.feedback import FeedbackRecorder
from bot.service.outbox import Outbox
from bot.service.reads import Reads
from bot.service.recommend import Recommender
from bot.service.types import (
    POST_LEASE,
    FeedbackInput,
    FeedbackResult,
    IncidentInput,
    Recorded,
    Retriever,
    UnpostedRecommendation,
    Vote,
)
from bot.service.unit_of_work import UnitOfWork, utcnow
from core.decision import Decision
from core.npo import NPOConfig
from core.policy import SafetyPolicyEngine
from core.scenario import Scenario


class NPOService:
    def __init__(
        self,
        engine: Engine,
        retriever: Retriever,
        spe: SafetyPolicyEngine,
        config: NPOConfig,
        rng: np.random.Generator,
        clock: Callable[[], dt.datetime] = utcnow,
        candidates: int = 3,
        classify: Callable[[str], Mapping[str, object]] | None = None,
        *,
        max_incident_chars: int = 4000,
        vocabulary: Vocabulary | None = None,
        context: ContextGatherer | None = None,
        deferral: DeferralPolicy | None = None,
    ) -> None:
        self.engine, self.config, self.rng = engine, config, rng
        self.uow = UnitOfWork(engine, clock)
        self.recommender = Recommender(
            self.uow,
            retriever,
            spe,
            config,
            rng,
            candidates,
            classify,
            max_incident_chars=max_incident_chars,
            vocabulary=vocabulary,
            context=context,
            deferral=deferral,
        )
        self.feedback = FeedbackRecorder(self.uow, config)
        self.outbox = Outbox(self.uow)
        self.reads = Reads(self.uow, config)

    # What the follow-up paths (approvals, deferrals) and tests read or swap.
    @property
    def clock(self) -> Callable[[], dt.datetime]:
        return self.uow.clock

    @clock.setter
    def clock(self, clock: Callable[[], dt.datetime]) -> None:
        self.uow.clock = clock

    @property
    def spe(self) -> SafetyPolicyEngine:
        return self.recommender.spe

    @spe.setter
    def spe(self, spe: SafetyPolicyEngine) -> None:
        self.recommender.spe = spe

    @property
    def deferral(self) -> DeferralPolicy:
        return self.recommender.deferral

    @deferral.setter
    def deferral(self, deferral: DeferralPolicy) -> None:
        self.recommender.deferral = deferral

    @property
    def retriever(self) -> Retriever:
        return self.recommender.retriever

    # -- recommending -------------------------------------------------------------------
    def recommend(self, incident: IncidentInput) -> Recorded:
        return self.recommender.recommend(incident)

    def fresh_scenario(self, text: str, now: dt.datetime, hints: Mapping[str, object]) -> Scenario:
        return self.recommender.fresh_scenario(text, now, hints)

    # -- the inbox and the outbox -------------------------------------------------------
    def accept(self, incident: IncidentInput) -> bool:
        return self.outbox.accept(incident)

    def waiting_incidents(
        self, older_than: dt.timedelta, lease: dt.timedelta = POST_LEASE, limit: int = 50
    ) -> list[IncidentInput]:
        return self.outbox.waiting_incidents(older_than, lease, limit)

    def unposted(
        self, lease: dt.timedelta = POST_LEASE, limit: int = 50
    ) -> list[UnpostedRecommendation]:
        return self.outbox.unposted(lease, limit)

    def claim_post(self, recommendation_id: str, lease: dt.timedelta = POST_LEASE) -> bool:
        return self.outbox.claim_post(recommendation_id, lease)

    def release_post(self, recommendation_id: str) -> None:
        self.outbox.release_post(recommendation_id)

    def attach_message(self, recommendation_id: str, channel: str, message_ts: str) -> None:
        self.outbox.attach_message(recommendation_id, channel, message_ts)

    def recommendation_for_message(self, channel: str, message_ts: str) -> str | None:
        return self.outbox.recommendation_for_message(channel, message_ts)

    def decision(self, recommendation_id: str) -> Decision | None:
        return self.outbox.decision(recommendation_id)

    # -- feedback -----------------------------------------------------------------------
    def record_feedback(self, fb: FeedbackInput) -> FeedbackResult:
        return self.feedback.record_feedback(fb)

    def withdraw_feedback(
        self, recommendation_id: str, operator_id: str, source_event_id: str
    ) -> FeedbackResult:
        return self.feedback.withdraw_feedback(recommendation_id, operator_id, source_event_id)

    def expire_abstentions(self, rec_ids: Sequence[str]) -> int:
        return self.feedback.expire_abstentions(rec_ids)

    # -- reads and preferences ----------------------------------------------------------
    def votes(self, recommendation_id: str) -> list[Vote]:
        return self.reads.votes(recommendation_id)

    def stats(self, playbook_id: str | None = None) -> list[PlaybookStats]:
        return self.reads.stats(playbook_id)

    def set_paused(self, playbook_id: str, paused: bool, actor: str, reason: str = "") -> bool:
        return self.reads.set_paused(playbook_id, paused, actor, reason)

    def paused(self) -> set[str]:
        return self.reads.paused()

    def verbosity(self, operator_id: str, default: str) -> str:
        return self.reads.verbosity(operator_id, default)

    def set_verbosity(self, operator_id: str, verbosity: str) -> None:
        self.reads.set_verbosity(operator_id, verbosity)
