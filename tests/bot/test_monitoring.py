"""Scheduled meta-monitoring with a fake clock: controlled retrains, pauses, expiry, and
one run per tick across replicas on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
import threading

import numpy as np
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bot.cli.commands import main
from bot.db.engine import make_engine
from bot.db.models import (
    ModelVersion,
    MonitorDecisionRow,
    Recommendation,
    RetrainRequest,
    SchedulerState,
)
from bot.db.state import read_monitor, read_monitor_history
from bot.monitoring.ticker import MonitorTicker, expire_unanswered
from bot.service import FeedbackInput, IncidentInput, NPOService
from core.feedback import FeedbackKind
from core.monitor import MonitorAction, MonitorConfig, MonitorPolicy
from core.npo import NPOConfig, RetrainConfig, ThresholdMode
from core.rego import RegoPolicyEngine
from tests.fakes import FakeHit, FakeRetriever

INTERVAL = dt.timedelta(minutes=15)
TEXT = "CRC errors on leaf-1:eth1 redundancy=2 in maintenance window"


class FakeClock:
    def __init__(self) -> None:
        self.now = dt.datetime(2026, 11, 25, 3, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, delta: dt.timedelta) -> None:
        self.now += delta


def _config(**kwargs: object) -> NPOConfig:
    base: dict[str, object] = {
        "threshold_mode": ThresholdMode.FIXED,
        "fixed_threshold": 0.5,
        "monitor": MonitorConfig(min_labels=4, pause_min_decisions=50),
    }
    return NPOConfig(**{**base, **kwargs})  # type: ignore[arg-type]


def _service(
    engine: Engine, spe: RegoPolicyEngine, clock: FakeClock, config: NPOConfig
) -> NPOService:
    hits = [FakeHit("link-optic", 0.85, "replace_optic"), FakeHit("link-drain", 0.6)]
    return NPOService(
        engine, FakeRetriever(hits), spe, config, np.random.default_rng(0), clock=clock
    )


def _overrides(service: NPOService, clock: FakeClock, n: int) -> None:
    """Operators keep overriding the optic playbook the prior likes (similarity 0.85)."""
    for i in range(n):
        rec = service.recommend(IncidentInput(TEXT, "console"))
        service.record_feedback(
            FeedbackInput(
                rec.recommendation_id,
                f"U{i}",
                FeedbackKind.OVERRIDE,
                f"o{i}-{clock.now}",
                playbook_id="link-optic",  # one override stops it being recommended
            )
        )
        clock.advance(dt.timedelta(minutes=1))


def test_a_helpful_retrain_replaces_the_live_model(
    engine: Engine, rego_engine: RegoPolicyEngine
) -> None:
    clock = FakeClock()
    config = _config()
    service = _service(engine, rego_engine, clock, config)
    ticker = MonitorTicker(engine, config, clock, INTERVAL)
    before = service.recommend(IncidentInput(TEXT, "console")).decision.candidates[0].model_prior
    _overrides(service, clock, 20)
    outcome = ticker.tick()
    assert outcome is not None
    assert outcome.action is MonitorAction.RETRAIN
    assert outcome.ideal is MonitorAction.RETRAIN  # M* from the shadow retrain agrees
    assert outcome.retrain is not None and outcome.retrain.accepted
    with Session(engine) as s:
        live = s.exec(select(ModelVersion).where(col(ModelVersion.live).is_(True))).one()
        assert live.id == outcome.model_version and live.trained_on == 20
        assert all(r.handled_at is not None for r in s.exec(select(RetrainRequest)))
        row = s.exec(select(MonitorDecisionRow)).one()
        assert (row.action, row.ideal_action) == ("retrain", "retrain")
    after = service.recommend(IncidentInput(TEXT, "console")).decision
    optic = next(c for c in after.candidates if c.playbook_id == "link-optic")
    assert optic.model_prior < before - 0.3  # the new model learned the overrides


def test_a_retrain_that_would_not_help_is_rejected(
    engine: Engine, rego_engine: RegoPolicyEngine
) -> None:
    clock = FakeClock()
    config = _config(retrain=RetrainConfig(min_gain=5.0))  # no candidate can gain that much
    service = _service(engine, rego_engine, clock, config)
    _overrides(service, clock, 20)
    outcome = MonitorTicker(engine, config, clock, INTERVAL).tick()
    assert outcome is not None and outcome.retrain is not None
    assert not outcome.retrain.accepted
    assert outcome.ideal is MonitorAction.HOLD
    with Session(engine) as s:
        versions = s.exec(select(ModelVersion)).all()
        assert [(v.accepted, v.live) for v in versions] == [(False, False)]


def test_repeated_overrides_pause_the_playbook(
    engine: Engine, rego_engine: RegoPolicyEngine
) -> None:
    clock = FakeClock()
    config = _config(monitor=MonitorConfig(pause_min_decisions=4, pause_override_rate=0.8))
    service = _service(engine, rego_engine, clock, config)
    notices: list[str] = []
    _overrides(service, clock, 6)
    outcome = MonitorTicker(engine, config, clock, INTERVAL, notices.append).tick()
    assert outcome is not None
    assert (outcome.action, outcome.playbook_id) == (MonitorAction.PAUSE_PLAYBOOK, "link-optic")
    assert notices and "link-optic" in notices[0] and "paused" in notices[0]
    candidates = service.recommend(IncidentInput(TEXT, "console")).decision.candidates
    assert [c.playbook_id for c in candidates] == ["link-drain"]


def test_a_tick_runs_once_per_interval_and_survives_a_restart(
    engine: Engine, rego_engine: RegoPolicyEngine, db_url: str
) -> None:
    clock = FakeClock()
    config = _config()
    assert MonitorTicker(engine, config, clock, INTERVAL).tick() is not None
    restarted = MonitorTicker(make_engine(db_url), config, clock, INTERVAL)
    assert restarted.tick() is None  # the same tick is not run twice after a restart
    clock.advance(INTERVAL)
    assert restarted.tick() is not None
    with Session(engine) as s:
        assert s.get(SchedulerState, "monitor_tick").runs == 2  # type: ignore[union-attr]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_replicas_on_postgresql_run_each_tick_once_and_take_over(
    db_url: str, engine: Engine, rego_engine: RegoPolicyEngine
) -> None:
    clock = FakeClock()
    config = _config()
    service = _service(engine, rego_engine, clock, config)
    _overrides(service, clock, 8)
    leader_engine, follower_engine = make_engine(db_url), make_engine(db_url)
    leader = MonitorTicker(leader_engine, config, clock, INTERVAL)
    follower = MonitorTicker(follower_engine, config, clock, INTERVAL)
    for _ in range(3):  # three ticks, both replicas racing for each
        barrier = threading.Barrier(2)
        results: list[object] = []

        def race(t: MonitorTicker, barrier: threading.Barrier, results: list[object]) -> None:
            barrier.wait()
            results.append(t.tick())

        threads = [
            threading.Thread(target=race, args=(t, barrier, results)) for t in (leader, follower)
        ]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert sum(r is not None for r in results) == 1
        clock.advance(INTERVAL)
    leader_engine.dispose()  # the leader dies
    assert follower.tick() is not None  # the follower takes the next tick
    with Session(engine) as s:
        assert s.get(SchedulerState, "monitor_tick").runs == 4  # type: ignore[union-attr]
        assert len(s.exec(select(MonitorDecisionRow)).all()) == 4
    follower_engine.dispose()


def test_unanswered_recommendations_expire_as_skipped(
    engine: Engine, rego_engine: RegoPolicyEngine
) -> None:
    clock = FakeClock()
    service = _service(engine, rego_engine, clock, _config())
    service.recommend(IncidentInput(TEXT, "console"))
    clock.advance(dt.timedelta(hours=1))
    assert expire_unanswered(service, clock.now, dt.timedelta(hours=24)) == 0
    clock.advance(dt.timedelta(hours=24))
    assert expire_unanswered(service, clock.now, dt.timedelta(hours=24)) == 1
    assert expire_unanswered(service, clock.now, dt.timedelta(hours=24)) == 0
    [row] = service.stats()
    assert (row.playbook_id, row.skipped) == ("link-optic", 1)


def test_an_unanswered_abstention_expires_without_a_vote(
    engine: Engine, rego_engine: RegoPolicyEngine
) -> None:
    """The bot's silence is not an operator's skip: no vote, no loss, nothing learned."""
    clock = FakeClock()
    service = _service(engine, rego_engine, clock, _config(fixed_threshold=0.9))
    rec = service.recommend(IncidentInput(TEXT, "console"))
    assert not rec.decision.recommended
    clock.advance(dt.timedelta(hours=25))
    assert expire_unanswered(service, clock.now, dt.timedelta(hours=24)) == 1
    assert expire_unanswered(service, clock.now, dt.timedelta(hours=24)) == 0
    assert service.stats() == [] and service.votes(rec.recommendation_id) == []
    with Session(engine) as s:
        row = s.get(Recommendation, rec.recommendation_id)
        assert row is not None and row.status == "expired"


def test_monitor_tick_command(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NPO_DATA_DIR", str(tmp_path))
    assert main(["monitor", "tick", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["action"] == "hold" and doc["ideal"] is None
    assert set(doc) == {
        "action",
        "reason",
        "playbook",
        "ideal",
        "shadow",
        "retrain",
        "model_version",
    }


def test_drift_raises_a_retrain_and_a_notice(engine: Engine, rego_engine: RegoPolicyEngine) -> None:
    clock = FakeClock()
    config = _config(
        monitor=MonitorConfig(min_labels=1000, ph_threshold=0.5, pause_min_decisions=1000)
    )
    service = _service(engine, rego_engine, clock, config)
    for i in range(30):  # a calm period: operators skip nothing, like the optic playbook
        rec = service.recommend(IncidentInput(TEXT, "console"))
        service.record_feedback(
            FeedbackInput(rec.recommendation_id, f"L{i}", FeedbackKind.LIKE, f"l{i}")
        )
    _overrides(service, clock, 8)  # then preferences change
    notices: list[str] = []
    outcome = MonitorTicker(engine, config, clock, INTERVAL, notices.append).tick()
    assert outcome is not None
    assert outcome.action is MonitorAction.RETRAIN and "Page" in outcome.reason
    assert notices and notices[0].startswith(":chart_with_upwards_trend: Drift")


def test_nightly_snapshot_is_taken_once_a_day(engine: Engine) -> None:
    from bot.db.models import StatsSnapshot
    from bot.monitoring.ticker import take_snapshot

    clock = FakeClock()
    assert take_snapshot(engine, clock.now, dt.timedelta(days=1))
    assert not take_snapshot(engine, clock.now + dt.timedelta(hours=1), dt.timedelta(days=1))
    assert take_snapshot(engine, clock.now + dt.timedelta(days=1), dt.timedelta(days=1))
    with Session(engine) as s:
        snaps = s.exec(select(StatsSnapshot)).all()
        assert len(snaps) == 2
        assert set(json.loads(snaps[0].report_json)) == {"playbooks", "arms", "monitor", "retrains"}


def test_the_scheduler_schedules_every_job(engine: Engine, rego_engine: RegoPolicyEngine) -> None:
    from bot.monitoring.scheduler import build_scheduler

    clock = FakeClock()
    config = _config()
    service = _service(engine, rego_engine, clock, config)
    scheduler = build_scheduler(
        MonitorTicker(engine, config, clock, INTERVAL), service, clock, dt.timedelta(hours=24)
    )
    assert sorted(job.id for job in scheduler.get_jobs()) == [
        "expiry",
        "monitor_tick",
        "stats_snapshot",
    ]


def test_votes_flow_while_the_tick_computes_and_a_pause_made_meanwhile_is_kept(
    engine: Engine, rego_engine: RegoPolicyEngine
) -> None:
    """The tick reads and fits outside any lock: a vote committed while it computes is not
    blocked, and a playbook a person pauses meanwhile stays paused after the tick saves."""
    clock = FakeClock()
    config = _config(monitor=MonitorConfig(min_labels=1000))  # the tick holds
    service = _service(engine, rego_engine, clock, config)
    rec = service.recommend(IncidentInput(TEXT, "console"))
    service.record_feedback(FeedbackInput(rec.recommendation_id, "U1", FeedbackKind.LIKE, "e1"))
    ticker = MonitorTicker(engine, config, clock, INTERVAL)
    started, release = threading.Event(), threading.Event()
    compute = ticker._snapshot

    def slow_snapshot(now: dt.datetime):  # type: ignore[no-untyped-def]
        snap = compute(now)
        started.set()
        release.wait(10)
        return snap

    ticker._snapshot = slow_snapshot  # type: ignore[method-assign]
    tick = threading.Thread(target=ticker.tick, kwargs={"force": True})
    tick.start()
    assert started.wait(10)
    second = service.recommend(IncidentInput(TEXT, "console"))
    stored = service.record_feedback(
        FeedbackInput(second.recommendation_id, "U2", FeedbackKind.LIKE, "e2")
    )
    assert stored.status.value == "stored"  # not blocked by the computing tick
    assert service.set_paused("link-drain", True, "U9", "flaky")
    release.set()
    tick.join(10)
    assert not tick.is_alive()
    with engine.connect() as conn:
        assert "link-drain" in read_monitor(conn, config.monitor).state.paused
    with Session(engine) as s:
        assert s.exec(select(MonitorDecisionRow)).one().action == "hold"


def test_each_judged_tick_teaches_the_learned_monitor_that_then_decides(
    engine: Engine, rego_engine: RegoPolicyEngine
) -> None:
    """The bot's tick keeps M*'s verdict with the tick's signals in the stored monitor
    document; with the learned M configured, it decides once both verdicts have been seen."""
    clock = FakeClock()
    monitor = MonitorConfig(
        min_labels=4,
        pause_min_decisions=500,
        policy=MonitorPolicy.LEARNED,
        learned_min_ticks=2,
        learned_min_each=1,
    )
    config = _config(monitor=monitor, retrain=RetrainConfig(min_holdout=2))
    service = _service(engine, rego_engine, clock, config)
    ticker = MonitorTicker(engine, config, clock, INTERVAL)
    reasons: list[str] = []
    verdicts: list[bool] = []
    for _ in range(8):
        _overrides(service, clock, 6)
        clock.advance(INTERVAL)
        outcome = ticker.tick()
        assert outcome is not None
        reasons.append(outcome.reason)
        if outcome.shadow.holdout:
            verdicts.append(outcome.shadow.accepted)
    with Session(engine) as s:
        stored = read_monitor_history(s.connection())
        assert read_monitor(s.connection(), config.monitor).state.history == []  # kept apart
    assert [t.retrain for t in stored] == verdicts
    assert verdicts[:2] == [True, False]  # the first retrain helped, the next did not
    # The rule answered until both verdicts had been seen; from then on the learned M,
    # which has learned that more of the same overrides no longer pay for a retrain.
    assert not any(r.startswith("learned monitor") for r in reasons[:2])
    assert all(r.startswith("learned monitor") and "< 0.50" in r for r in reasons[2:])
