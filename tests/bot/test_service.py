"""The application service on SQLite and PostgreSQL: storage, idempotency, replacement,
withdrawal and concurrent writers."""

from __future__ import annotations

import datetime as dt
import json
import threading

import numpy as np
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine
from sqlmodel import Session, func, select

from bot.db.migrate import alembic_config, current_revision, upgrade
from bot.db.models import (
    AuditEntry,
    BanditArm,
    Feedback,
    LearningClock,
    MonitorStateRow,
    Recommendation,
    RetrainRequest,
)
from bot.db.scores import context_evidence
from bot.service import FeedbackInput, FeedbackStatus, IncidentInput, NPOService
from core.codec import decision_to_dict
from core.decision import Outcome
from core.feedback import FeedbackKind
from core.npo import NPOConfig, ThresholdMode
from core.rego import RegoPolicyEngine
from tests.fakes import FakeHit, FakeRetriever

NOW = dt.datetime(2026, 11, 25, 3, 0, tzinfo=dt.UTC)
TEXT = "CRC errors on leaf-12:eth1/3 severity=high redundancy=2 in maintenance window"


def _service(engine: Engine, spe: RegoPolicyEngine, **config: object) -> NPOService:
    retriever = FakeRetriever(
        [
            FakeHit("link-optic", 0.85, "replace_optic"),
            FakeHit("link-drain", 0.7, "drain_link"),
            FakeHit("diagnostics", 0.5, "collect_diagnostics"),
        ]
    )
    settings: dict[str, object] = {"threshold_mode": ThresholdMode.FIXED, "fixed_threshold": 0.5}
    cfg = NPOConfig(**{**settings, **config})  # type: ignore[arg-type]
    return NPOService(engine, retriever, spe, cfg, np.random.default_rng(0), clock=lambda: NOW)


def _count(engine: Engine, model: type) -> int:
    with Session(engine) as s:
        return int(s.exec(select(func.count()).select_from(model)).one())


def test_migrations_are_idempotent(db_url: str) -> None:
    upgrade(db_url)
    upgrade(db_url)
    head = ScriptDirectory.from_config(alembic_config(db_url)).get_current_head()
    assert head is not None
    assert current_revision(db_url) == head


def test_recommend_stores_the_decision_and_audits_it(
    engine: Engine, rego_engine: RegoPolicyEngine
) -> None:
    svc = _service(engine, rego_engine)
    rec = svc.recommend(IncidentInput(TEXT, "console", reporter="U1"))
    assert rec.decision.outcome is Outcome.RECOMMEND
    assert rec.decision.chosen is not None and rec.decision.chosen.playbook_id == "link-optic"
    stored = svc.decision(rec.recommendation_id)
    assert stored is not None and decision_to_dict(stored) == decision_to_dict(rec.decision)
    with Session(engine) as s:
        row = s.get(Recommendation, rec.recommendation_id)
        assert row is not None and row.playbook_id == "link-optic" and row.spe_verdict == "allow"
        audit = s.exec(select(AuditEntry)).one()
        assert (audit.actor, audit.action) == ("U1", "recommend")
    svc.attach_message(rec.recommendation_id, "C1", "1700.1")
    assert svc.recommendation_for_message("C1", "1700.1") == rec.recommendation_id


def test_feedback_is_stored_once_per_event(engine: Engine, rego_engine: RegoPolicyEngine) -> None:
    svc = _service(engine, rego_engine)
    rid = svc.recommend(IncidentInput(TEXT, "console")).recommendation_id
    fb = FeedbackInput(rid, "U1", FeedbackKind.LIKE, "evt-1")
    first = svc.record_feedback(fb)
    assert first.status is FeedbackStatus.STORED
    k = svc.config.scoring.prior_strength
    assert first.local_score == pytest.approx((k * 0.85 + 1) / (k + 1))
    for _ in range(3):  # Slack retries and a second replica
        assert svc.record_feedback(fb).status is FeedbackStatus.DUPLICATE
    assert _count(engine, Feedback) == 1
    [stats] = svc.stats()
    assert (stats.playbook_id, stats.decisions, stats.likes) == ("link-optic", 1, 1)


def test_a_later_vote_replaces_the_earlier_one(
    engine: Engine, rego_engine: RegoPolicyEngine
) -> None:
    svc = _service(engine, rego_engine, threshold_mode=ThresholdMode.THOMPSON)
    rec = svc.recommend(IncidentInput(TEXT, "console"))
    rid = rec.recommendation_id
    assert (
        svc.record_feedback(FeedbackInput(rid, "U1", FeedbackKind.LIKE, "e1")).status
        is FeedbackStatus.STORED
    )
    result = svc.record_feedback(
        FeedbackInput(rid, "U1", FeedbackKind.OVERRIDE, "e2", reason="wrong card")
    )
    assert result.status is FeedbackStatus.REPLACED
    k, w = svc.config.scoring.prior_strength, svc.config.scoring.override_weight
    assert result.local_score == pytest.approx(k * 0.85 / (k + w))  # only the override counts
    [stats] = svc.stats()
    assert (stats.decisions, stats.likes, stats.overrides) == (1, 0, 1)
    only_override = _service(engine, rego_engine, threshold_mode=ThresholdMode.THOMPSON)
    alone = only_override.config.bandit
    with Session(engine) as s:
        arms = s.exec(select(BanditArm)).all()
        # The like was taken back: what is left is the override alone. Arms at or below
        # the score 0.85 would have shown the overridden candidate (reward 0 on the
        # utility scale); the arm at 0.9 would have abstained, rightly (reward 0.75).
        prior_a, prior_b = alone.prior()
        u = svc.config.utility
        gained_a = [a.alpha - p for a, p in zip(arms, prior_a, strict=True)]
        gained_b = [a.beta - p for a, p in zip(arms, prior_b, strict=True)]
        assert gained_a == pytest.approx([0, 0, 0, 0, u.reward(0.0)])
        assert gained_b == pytest.approx([1, 1, 1, 1, 1 - u.reward(0.0)])
        assert s.exec(select(RetrainRequest)).one().reason.endswith("wrong card")


def test_withdrawing_a_reaction_removes_its_effect(
    engine: Engine, rego_engine: RegoPolicyEngine
) -> None:
    svc = _service(engine, rego_engine)
    rid = svc.recommend(IncidentInput(TEXT, "console")).recommendation_id
    svc.record_feedback(FeedbackInput(rid, "U1", FeedbackKind.LIKE, "react-add", source="reaction"))
    result = svc.withdraw_feedback(rid, "U1", "react-remove")
    assert result.status is FeedbackStatus.WITHDRAWN
    assert svc.stats() == []
    with engine.connect() as conn:
        ctx = svc.decision(rid).scenario.context_key  # type: ignore[union-attr]
        assert context_evidence(conn, ctx, svc.config.scoring) == {}
    assert svc.withdraw_feedback(rid, "U1", "react-remove").status is FeedbackStatus.DUPLICATE
    assert (
        svc.withdraw_feedback(rid, "U1", "react-remove-2").status
        is FeedbackStatus.NOTHING_TO_WITHDRAW
    )


def test_an_abstention_lets_operators_like_the_right_candidate(
    engine: Engine, rego_engine: RegoPolicyEngine
) -> None:
    svc = _service(engine, rego_engine, fixed_threshold=0.9)
    rec = svc.recommend(IncidentInput(TEXT, "console"))
    assert rec.decision.outcome is Outcome.ABSTAIN
    liked = svc.record_feedback(
        FeedbackInput(
            rec.recommendation_id, "U2", FeedbackKind.LIKE, "e1", playbook_id="link-drain"
        )
    )
    assert (liked.status, liked.playbook_id) == (FeedbackStatus.STORED, "link-drain")
    other = svc.record_feedback(
        FeedbackInput(rec.recommendation_id, "U3", FeedbackKind.LIKE, "e2", playbook_id="nope")
    )
    assert other.status is FeedbackStatus.NOT_A_CANDIDATE
    unknown = svc.record_feedback(FeedbackInput("missing", "U3", FeedbackKind.LIKE, "e3"))
    assert unknown.status is FeedbackStatus.UNKNOWN_RECOMMENDATION


def test_moving_a_vote_to_another_candidate_moves_its_evidence(
    engine: Engine, rego_engine: RegoPolicyEngine
) -> None:
    svc = _service(engine, rego_engine, fixed_threshold=0.9)
    rec = svc.recommend(IncidentInput(TEXT, "console"))
    rid = rec.recommendation_id
    first = FeedbackInput(rid, "U2", FeedbackKind.LIKE, "e1", playbook_id="link-drain")
    assert svc.record_feedback(first).status is FeedbackStatus.STORED
    moved = svc.record_feedback(
        FeedbackInput(rid, "U2", FeedbackKind.LIKE, "e2", playbook_id="link-optic")
    )
    assert (moved.status, moved.playbook_id) == (FeedbackStatus.REPLACED, "link-optic")
    with engine.connect() as conn:
        ctx = rec.decision.scenario.context_key
        scored = set(context_evidence(conn, ctx, svc.config.scoring))
        assert scored == {"link-optic"}  # link-drain has no vote left: no evidence either
    with Session(engine) as s:
        last = s.exec(select(AuditEntry).order_by(AuditEntry.id.desc())).first()  # type: ignore[union-attr]
        assert last is not None
        assert json.loads(last.detail_json)["replaced"] == "like"


def test_a_batch_learns_exactly_what_one_by_one_learns(
    engine: Engine, rego_engine: RegoPolicyEngine
) -> None:
    """Group commit is only an optimisation: a batch with repeats, replacements and bad
    items gives the same results and the same state as the same votes one at a time."""
    svc = _service(engine, rego_engine, threshold_mode=ThresholdMode.THOMPSON)
    rids = [svc.recommend(IncidentInput(TEXT, "console")).recommendation_id for _ in range(4)]
    votes = [
        FeedbackInput(rids[0], "U1", FeedbackKind.LIKE, "b1"),
        FeedbackInput(rids[0], "U1", FeedbackKind.LIKE, "b1"),  # the same delivery again
        FeedbackInput(rids[1], "U1", FeedbackKind.NEUTRAL, "b2"),
        FeedbackInput(rids[1], "U1", FeedbackKind.OVERRIDE, "b3", reason="no"),  # replaces
        FeedbackInput(rids[2], "U2", FeedbackKind.LIKE, "b4", playbook_id="nope"),
        FeedbackInput("missing", "U2", FeedbackKind.LIKE, "b5"),
        FeedbackInput(rids[3], "U3", FeedbackKind.SKIPPED, "b6"),
        FeedbackInput(rids[2], "U2", FeedbackKind.LIKE, "b7"),
    ]
    batched = svc.feedback.record_batch(votes)

    def state(e: Engine) -> tuple[object, ...]:
        with e.connect() as conn:
            contexts = {r[0] for r in conn.execute(select(Feedback.context_key))}
            scores = sorted(
                (pb, ctx, ev.successes, ev.failures, ev.observations)
                for ctx in contexts
                for pb, ev in context_evidence(conn, ctx, svc.config.scoring).items()
            )
        with Session(e) as s:
            arms = [(a.alpha, a.beta) for a in s.exec(select(BanditArm))]
            votes = sorted(
                (f.operator_id, f.kind, f.loss, f.seq, f.bandit_json)
                for f in s.exec(select(Feedback))
            )
            clock = s.exec(select(LearningClock)).one()
            retrains = len(s.exec(select(RetrainRequest)).all())
        return arms, scores, votes, (clock.step, clock.bandit_steps), retrains

    after_batch = state(engine)
    # Forget every vote and what was learned from it, then send the same votes one by one.
    with Session(engine) as s:
        for model in (Feedback, RetrainRequest, AuditEntry):
            for row in s.exec(select(model)):
                s.delete(row)
        for arm in s.exec(select(BanditArm)):
            s.delete(arm)
        s.delete(s.exec(select(LearningClock)).one())
        from bot.db.models import ProcessedEvent

        for ev in s.exec(select(ProcessedEvent)):
            s.delete(ev)
        for rec in s.exec(select(Recommendation)):
            rec.status = "open"
            s.add(rec)
        s.commit()
    single = [svc.feedback.record_batch([v])[0] for v in votes]
    assert batched == single
    assert state(engine) == after_batch
    assert [r.status for r in batched] == [
        FeedbackStatus.STORED,
        FeedbackStatus.DUPLICATE,
        FeedbackStatus.STORED,
        FeedbackStatus.REPLACED,
        FeedbackStatus.NOT_A_CANDIDATE,
        FeedbackStatus.UNKNOWN_RECOMMENDATION,
        FeedbackStatus.STORED,
        FeedbackStatus.STORED,
    ]


def test_concurrent_writers_lose_no_update(engine: Engine, rego_engine: RegoPolicyEngine) -> None:
    svc = _service(engine, rego_engine, threshold_mode=ThresholdMode.THOMPSON)
    recs = [svc.recommend(IncidentInput(TEXT, "console")) for _ in range(40)]
    surfaced = sum(1 for r in recs if r.decision.recommended)
    errors: list[BaseException] = []

    def worker(w: int) -> None:
        try:
            for i, rec in enumerate(recs):
                if i % 4 == w % 4:
                    svc.record_feedback(
                        FeedbackInput(
                            rec.recommendation_id, f"U{w}", FeedbackKind.LIKE, f"e{w}-{i}"
                        )
                    )
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert _count(engine, Feedback) == 80
    with engine.connect() as conn:
        ctx = recs[0].decision.scenario.context_key
        found = context_evidence(conn, ctx, svc.config.scoring)["link-optic"]
        assert found.observations == 80 and found.successes == 80
    with Session(engine) as s:
        arms = s.exec(select(BanditArm)).all()
        # Every like teaches all five arms one unit of evidence: none was lost.
        prior_a, prior_b = svc.config.bandit.prior()
        gained = sum(a.alpha + a.beta for a in arms) - sum(prior_a) - sum(prior_b)
        assert gained == pytest.approx(5 * 80)
        assert surfaced >= 0
    with Session(engine) as s:
        clock = s.get(LearningClock, 1)
        assert clock is not None and clock.step == 80  # one learning step per vote
        assert sorted(f.seq for f in s.exec(select(Feedback))) == list(range(1, 81))


def test_concurrent_recommendations_on_a_fresh_database_all_land(
    engine: Engine, rego_engine: RegoPolicyEngine
) -> None:
    """Decisions read in read-only transactions; reading state nobody has stored yet (no
    monitor document, no arms) must not write, or concurrent readers fail on SQLite."""
    service = _service(engine, rego_engine, threshold_mode=ThresholdMode.THOMPSON)
    errors: list[BaseException] = []

    def burst(worker: int) -> None:
        try:
            for i in range(5):
                service.recommend(IncidentInput(f"CRC errors on leaf-{worker} #{i}", "console"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=burst, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert _count(engine, Recommendation) == 40
    assert _count(engine, MonitorStateRow) == 0  # reading created nothing


def test_operator_preferences(engine: Engine, rego_engine: RegoPolicyEngine) -> None:
    svc = _service(engine, rego_engine)
    assert svc.verbosity("U1", "full") == "full"
    svc.set_verbosity("U1", "brief")
    assert svc.verbosity("U1", "full") == "brief"
    with pytest.raises(ValueError, match="verbosity"):
        svc.set_verbosity("U1", "loud")
    # a recommendation carries its reporter's preference, read with the decision
    assert svc.recommend(IncidentInput(TEXT, "slack", reporter="U1")).verbosity == "brief"
    assert svc.recommend(IncidentInput(TEXT, "slack", reporter="U2")).verbosity == ""
    assert svc.recommend(IncidentInput(TEXT, "alertmanager")).verbosity == ""
