"""The deferral path: a candidate the policies deferred ("wait for the window") is judged
again when it may proceed, with fresh context, and the outcome is posted in the incident's
thread once, whichever replica runs the job and however often processes restart.

When it may proceed comes from a ``WindowSchedule`` (maintenance-window providers
implement it); with none, or none known, the candidate is judged again after a retry
delay, up to a bounded number of attempts, and then the bot says it gave up.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

from bot.db.follow_up_rows import (
    DueJob,
    claim_due,
    finish_job,
    open_approval,
    posted_message,
    postpone_job,
    release_job,
    store_decision,
    stored_decision,
)
from bot.db.state import audit
from core.decision import Decision, Deferral, Outcome, reevaluated
from core.policy import Verdict
from core.scenario import Scenario

if TYPE_CHECKING:
    from bot.service.facade import NPOService
    from bot.settings import Settings

log = logging.getLogger(__name__)


class WindowSchedule(Protocol):
    """When the next maintenance window opens after ``after`` (None: none known)."""

    def next_opening(self, after: dt.datetime) -> dt.datetime | None: ...


@dataclass(frozen=True, slots=True)
class DeferralPolicy:
    """When deferred candidates are judged again, and how often at most."""

    schedule: WindowSchedule | None = None
    retry: dt.timedelta = dt.timedelta(minutes=30)
    max_attempts: int = 5
    lease: dt.timedelta = dt.timedelta(minutes=5)  # how long a runner holds a due job

    def __post_init__(self) -> None:
        if self.retry <= dt.timedelta(0):
            raise ValueError(f"defer retry: {self.retry} must be positive")
        if self.max_attempts < 1:
            raise ValueError(f"defer max attempts: {self.max_attempts} must be at least 1")

    def next_check(self, after: dt.datetime, attempt: int = 1) -> Deferral:
        """The next window's opening, or ``after`` plus the retry delay when the schedule
        knows none (or fails: that is logged, and never stops the incident)."""
        opening = None
        if self.schedule is not None:
            try:
                opening = self.schedule.next_opening(after)
            except Exception as exc:
                log.warning("maintenance schedule failed: %s", exc, extra={"error": str(exc)})
        if opening is not None and opening > after:
            return Deferral(opening, True, attempt, self.max_attempts)
        return Deferral(after + self.retry, False, attempt, self.max_attempts)

    def stamp(self, decision: Decision, now: dt.datetime) -> Decision:
        """A deferred decision with when it is judged again; any other unchanged."""
        if decision.outcome is not Outcome.DEFERRED:
            return decision
        deferral = self.next_check(now)
        exp = decision.explanation
        explanation = replace(exp, trace=(*exp.trace, f"deferred: {deferral.text}"))
        return replace(decision, deferral=deferral, explanation=explanation)


def deferral_policy(settings: Settings, schedule: WindowSchedule | None = None) -> DeferralPolicy:
    """The policy ``NPO_DEFER_RETRY_MINUTES`` and ``NPO_DEFER_MAX_ATTEMPTS`` configure;
    ``schedule``: the maintenance windows, when a provider knows them."""
    return DeferralPolicy(
        schedule,
        dt.timedelta(minutes=settings.defer_retry_minutes),
        settings.defer_max_attempts,
    )


def incident_json(text: str, hints: Mapping[str, object], reporter: str) -> str:
    """What a deferral job keeps of its incident to build a fresh scenario later."""
    return json.dumps({"text": text, "hints": dict(hints), "reporter": reporter})


@dataclass(frozen=True, slots=True)
class FollowUp:
    """What became of a deferred candidate, to be posted in its incident's thread."""

    recommendation_id: str
    channel: str
    thread_ts: str  # the incident's thread, or the bot's first message when it had none
    decision: Decision

    @property
    def gave_up(self) -> bool:
        return self.decision.outcome is Outcome.DEFERRED and self.decision.deferral is None


Poster = Callable[[FollowUp], None]  # raises when the post failed: the job is retried
FreshScenario = Callable[[str, dt.datetime, Mapping[str, object]], Scenario]


def run_due(
    service: NPOService,
    policy: DeferralPolicy,
    post: Poster,
    *,
    fresh_scenario: FreshScenario | None = None,
    limit: int = 20,
) -> dict[str, int]:
    """Judge every due deferral again and post what became of it; counts by result. A job
    whose post fails is given back and tried again on the next run; one failing job never
    stops the others."""
    now = service.clock()
    fresh_scenario = fresh_scenario or service.fresh_scenario  # the context providers, now
    with service.uow.write() as conn:
        jobs = claim_due(conn, now, policy.lease, limit)
    counts = {"posted": 0, "postponed": 0, "failed": 0}
    for job in jobs:
        try:
            counts[_run_one(service, policy, post, fresh_scenario, job, now)] += 1
        except Exception as exc:
            counts["failed"] += 1
            log.warning(
                "deferral re-evaluation failed: tried again later",
                extra={"recommendation_id": job.recommendation_id, "error": str(exc)},
            )
            with service.uow.write() as conn:
                release_job(conn, job)
    return counts


def _run_one(
    service: NPOService,
    policy: DeferralPolicy,
    post: Poster,
    fresh_scenario: FreshScenario,
    job: DueJob,
    now: dt.datetime,
) -> str:
    with service.engine.connect() as conn:
        decision = stored_decision(conn, job.recommendation_id)
        thread = job.thread_ts or posted_message(conn, job.recommendation_id)
    if decision is None or decision.pending is None:
        raise LookupError(f"recommendation {job.recommendation_id} has no deferred candidate")
    incident = json.loads(job.incident_json)
    scenario = fresh_scenario(str(incident["text"]), now, dict(incident.get("hints", {})))
    candidate = decision.pending
    verdict = service.spe.evaluate(scenario, candidate.action)
    attempt = job.attempts + 1
    ids = {"recommendation_id": job.recommendation_id, "playbook": candidate.playbook_id}
    if verdict.verdict is Verdict.DEFER and attempt < job.max_attempts:
        deferral = policy.next_check(now, attempt + 1)
        later = reevaluated(decision, verdict, now, deferral, scenario)
        with service.uow.write() as conn:
            if postpone_job(conn, job, deferral.at, now):
                store_decision(conn, job.recommendation_id, later)
        log.info(
            "deferral still deferred",
            extra={**ids, "attempt": attempt, "due_at": deferral.at.isoformat()},
        )
        return "postponed"
    settled = reevaluated(decision, verdict, now, fresh=scenario)
    if settled.outcome is Outcome.DEFERRED:  # the last attempt: give up and say so
        exp = settled.explanation
        note = f"gave up after {attempt} re-evaluation(s): still deferred"
        settled = replace(settled, explanation=replace(exp, trace=(*exp.trace, note)))
    follow = FollowUp(job.recommendation_id, job.channel, thread, settled)
    post(follow)  # before the job is marked done: a failed post leaves it to retry
    with service.uow.write() as conn:
        state = "gave_up" if follow.gave_up else "done"
        if finish_job(conn, job, state, settled.outcome.value, now):
            store_decision(conn, job.recommendation_id, settled)
            if settled.outcome is Outcome.NEEDS_APPROVAL:
                requester = str(incident.get("reporter", ""))
                open_approval(conn, job.recommendation_id, candidate.playbook_id, requester, now)
            audit(
                conn,
                "npo",
                f"deferral:{state}",
                job.recommendation_id,
                {"playbook": candidate.playbook_id, "outcome": settled.outcome.value},
                now,
            )
    log.info(
        "deferral re-evaluated",
        extra={**ids, "attempt": attempt, "outcome": settled.outcome.value, "state": state},
    )
    return "posted"
