"""The deferral path through the service: a deferred candidate gets a persisted job, due
when the next window opens (or after the retry delay); when due, the SPE judges it again
with fresh context and the outcome is posted once, across replicas and restarts; a job
still deferred after its attempts says it gave up."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Mapping

import numpy as np
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from bot.db.models import Approval, DeferralJob, Recommendation
from bot.service import IncidentInput, NPOService
from bot.service.deferrals import DeferralPolicy, FollowUp, run_due
from core.decision import Outcome
from core.npo import NPOConfig, ThresholdMode
from core.policy import Verdict
from core.rego import RegoPolicyEngine
from core.scenario import Scenario
from tests.fakes import FakeHit, FakeRetriever, ScriptedSPE

T0 = dt.datetime(2026, 12, 3, 14, 5, tzinfo=dt.UTC)  # a Thursday afternoon
WINDOW = dt.datetime(2026, 12, 8, 2, 0, tzinfo=dt.UTC)  # Tuesday 02:00
TEXT = "CRC errors on leaf-12:eth1/3 severity=high redundancy=2"


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


class Windows:
    """A maintenance schedule: the given openings, in order."""

    def __init__(self, *openings: dt.datetime) -> None:
        self.openings = openings
        self.asked: list[dt.datetime] = []

    def next_opening(self, after: dt.datetime) -> dt.datetime | None:
        self.asked.append(after)
        return next((o for o in self.openings if o > after), None)


class Posts:
    """A poster that records (thread-safe) and can fail the next post."""

    def __init__(self) -> None:
        self.posted: list[FollowUp] = []
        self.fail_next = 0
        self._lock = threading.Lock()

    def __call__(self, follow: FollowUp) -> None:
        with self._lock:
            if self.fail_next:
                self.fail_next -= 1
                raise RuntimeError("channel_not_found")
            self.posted.append(follow)


def _service(engine: Engine, spe: object, clock: Clock, policy: DeferralPolicy) -> NPOService:
    retriever = FakeRetriever([FakeHit("link-optic", 0.9, "replace_optic")])
    cfg = NPOConfig(threshold_mode=ThresholdMode.FIXED, fixed_threshold=0.7)
    return NPOService(
        engine,
        retriever,
        spe,  # type: ignore[arg-type]
        cfg,
        np.random.default_rng(1),
        clock=clock,
        deferral=policy,
    )


def _job(engine: Engine, rec_id: str) -> DeferralJob:
    with Session(engine) as s:
        job = s.get(DeferralJob, rec_id)
        assert job is not None
        return job


def test_a_deferred_candidate_is_judged_again_when_the_window_opens(
    engine: Engine, rego_engine: RegoPolicyEngine
) -> None:
    """The real policies defer a change outside a window; at the window, the fresh context
    says "in a window" and the same policies allow it: the outcome is posted once."""
    clock = Clock(T0)
    policy = DeferralPolicy(Windows(WINDOW))
    svc = _service(engine, rego_engine, clock, policy)
    rec = svc.recommend(
        IncidentInput(
            TEXT,
            "slack",
            channel="C1",
            thread_ts="111.1",
            reporter="U1",
            hints={
                "maintenance_window": "no"
            },  # known: outside a window (unknown asks for approval)
        )
    )
    d = rec.decision
    assert d.outcome is Outcome.DEFERRED and d.pending is not None and d.chosen is None
    assert d.deferral is not None and d.deferral.text == "next window opens Tue 02:00 UTC"
    job = _job(engine, rec.recommendation_id)
    assert (job.due_at, job.state, job.attempts) == (WINDOW, "waiting", 0)

    seen: list[Scenario] = []

    def fresh(text: str, now: dt.datetime, hints: Mapping[str, object]) -> Scenario:
        from bot.extraction.rules import extract_scenario

        scenario = extract_scenario(text, now, {**hints, "maintenance_window": now >= WINDOW})
        seen.append(scenario)
        return scenario

    posts = Posts()
    clock.now = WINDOW - dt.timedelta(seconds=1)
    assert run_due(svc, policy, posts, fresh_scenario=fresh) == {
        "posted": 0,
        "postponed": 0,
        "failed": 0,
    }
    clock.now = WINDOW + dt.timedelta(seconds=20)
    assert run_due(svc, policy, posts, fresh_scenario=fresh)["posted"] == 1
    assert run_due(svc, policy, posts, fresh_scenario=fresh)["posted"] == 0  # once
    [follow] = posts.posted
    assert (follow.channel, follow.thread_ts) == ("C1", "111.1")
    assert follow.decision.outcome is Outcome.RECOMMEND
    assert follow.decision.chosen == d.pending
    assert seen[0].hour_of_day == 2 and seen[0].maintenance_window  # fresh context
    job = _job(engine, rec.recommendation_id)
    assert (job.state, job.attempts, job.outcome) == ("done", 1, "recommend")
    stored = svc.decision(rec.recommendation_id)
    assert stored is not None and stored.recommended  # votes now see it as surfaced
    last = stored.explanation.trace[-1]
    assert last.startswith("re-evaluated at 2026-12-08 02:00 UTC with fresh context (")
    assert "maintenance_window yes" in last and last.endswith("link-optic is allow")
    assert [v.verdict for v in stored.verdicts] == [Verdict.ALLOW]


def test_without_a_window_it_retries_then_says_it_gave_up(engine: Engine) -> None:
    clock = Clock(T0)
    policy = DeferralPolicy(None, dt.timedelta(minutes=30), max_attempts=3)
    spe = ScriptedSPE({"replace_optic": Verdict.DEFER})
    svc = _service(engine, spe, clock, policy)
    rec = svc.recommend(IncidentInput(TEXT, "slack", channel="C1", reporter="U1"))
    assert rec.decision.deferral is not None
    assert rec.decision.deferral.text == "no maintenance window known: checked again Thu 14:35 UTC"
    posts = Posts()
    for attempt in (1, 2):
        clock.now = _job(engine, rec.recommendation_id).due_at
        assert run_due(svc, policy, posts)["postponed"] == 1
        job = _job(engine, rec.recommendation_id)
        assert (job.attempts, job.state) == (attempt, "waiting")
        assert job.due_at == clock.now + dt.timedelta(minutes=30)
    assert posts.posted == []  # nothing to say while it still waits
    clock.now = _job(engine, rec.recommendation_id).due_at
    assert run_due(svc, policy, posts)["posted"] == 1
    [follow] = posts.posted
    assert follow.gave_up and follow.decision.outcome is Outcome.DEFERRED
    assert (
        follow.decision.explanation.trace[-1] == "gave up after 3 re-evaluation(s): still deferred"
    )
    clock.now += dt.timedelta(days=1)
    assert run_due(svc, policy, posts)["posted"] == 0
    assert _job(engine, rec.recommendation_id).state == "gave_up"


def test_a_failed_post_is_tried_again_and_still_posted_once(engine: Engine) -> None:
    clock = Clock(T0)
    policy = DeferralPolicy(None, dt.timedelta(minutes=5), max_attempts=1)
    spe = ScriptedSPE({"replace_optic": Verdict.DEFER})
    svc = _service(engine, spe, clock, policy)
    rec = svc.recommend(IncidentInput(TEXT, "slack", channel="C1", reporter="U1"))
    spe.verdicts.clear()  # allowed by the time it is due
    posts = Posts()
    posts.fail_next = 1
    clock.now = T0 + dt.timedelta(minutes=5)
    assert run_due(svc, policy, posts) == {"posted": 0, "postponed": 0, "failed": 1}
    assert _job(engine, rec.recommendation_id).claimed_until is None  # given back
    assert run_due(svc, policy, posts)["posted"] == 1
    assert run_due(svc, policy, posts)["posted"] == 0
    assert len(posts.posted) == 1


def test_a_job_held_by_a_dead_replica_is_taken_over_after_its_lease(engine: Engine) -> None:
    from bot.db.follow_up_rows import claim_due

    clock = Clock(T0)
    policy = DeferralPolicy(None, dt.timedelta(minutes=5), max_attempts=1)
    svc = _service(engine, ScriptedSPE({"replace_optic": Verdict.DEFER}), clock, policy)
    rec = svc.recommend(IncidentInput(TEXT, "slack", channel="C1", reporter="U1"))
    clock.now = T0 + dt.timedelta(minutes=5)
    with engine.begin() as conn:  # a replica claims it, then dies before posting
        assert [j.recommendation_id for j in claim_due(conn, clock.now, policy.lease, 10)] == [
            rec.recommendation_id
        ]
    posts = Posts()
    assert run_due(svc, policy, posts)["posted"] == 0  # still held
    clock.now += policy.lease + dt.timedelta(seconds=1)
    assert run_due(svc, policy, posts)["posted"] == 1


def test_a_reevaluation_that_needs_approval_opens_an_approval(engine: Engine) -> None:
    clock = Clock(T0)
    policy = DeferralPolicy(None, dt.timedelta(minutes=5), max_attempts=2)
    spe = ScriptedSPE({"replace_optic": Verdict.DEFER})
    svc = _service(engine, spe, clock, policy)
    rec = svc.recommend(IncidentInput(TEXT, "slack", channel="C1", reporter="U1"))
    spe.verdicts["replace_optic"] = Verdict.NEEDS_APPROVAL
    posts = Posts()
    clock.now = T0 + dt.timedelta(minutes=5)
    assert run_due(svc, policy, posts)["posted"] == 1
    assert posts.posted[0].decision.outcome is Outcome.NEEDS_APPROVAL
    with Session(engine) as s:
        approval = s.get(Approval, rec.recommendation_id)
        assert approval is not None and (approval.state, approval.requester) == ("pending", "U1")
        stored = s.get(Recommendation, rec.recommendation_id)
        assert stored is not None and stored.outcome == "needs_approval"


@pytest.mark.parametrize("replicas", [2])
def test_two_replicas_post_a_deferral_outcome_once(engine: Engine, replicas: int) -> None:
    """Two services on one database (SQLite and PostgreSQL) run the due jobs at the same
    moment, many times over: every outcome is posted exactly once."""
    clock = Clock(T0)
    policy = DeferralPolicy(None, dt.timedelta(minutes=5), max_attempts=1)
    spe = ScriptedSPE({"replace_optic": Verdict.DEFER})
    services = [_service(engine, spe, clock, policy) for _ in range(replicas)]
    recs = [
        services[i % replicas].recommend(IncidentInput(f"{TEXT} #{i}", "slack", channel="C1"))
        for i in range(12)
    ]
    spe.verdicts.clear()
    clock.now = T0 + dt.timedelta(minutes=5)
    posts = Posts()
    barrier = threading.Barrier(replicas)
    errors: list[BaseException] = []

    def replica(svc: NPOService) -> None:
        try:
            for _ in range(3):
                barrier.wait(10)
                run_due(svc, policy, posts, limit=5)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=replica, args=(svc,)) for svc in services]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    posted = sorted(f.recommendation_id for f in posts.posted)
    assert posted == sorted(r.recommendation_id for r in recs)  # each once, none lost
    with Session(engine) as s:
        assert {j.state for j in s.exec(select(DeferralJob)).all()} == {"done"}


def test_a_failing_schedule_falls_back_to_the_retry_delay() -> None:
    class Broken:
        def next_opening(self, after: dt.datetime) -> dt.datetime | None:
            raise TimeoutError("alertmanager did not answer")

    deferral = DeferralPolicy(Broken(), dt.timedelta(minutes=10)).next_check(T0)
    assert (deferral.at, deferral.window) == (T0 + dt.timedelta(minutes=10), False)
    with pytest.raises(ValueError, match="max attempts"):
        DeferralPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="retry"):
        DeferralPolicy(retry=dt.timedelta(0))
