"""Scenario evidence is counted from the live votes: withdrawn votes and skips add none,
and only the scenarios asked for are returned."""

from __future__ import annotations

import datetime as dt

import numpy as np
from sqlalchemy.engine import Engine

from bot.db.scores import context_evidence, scenario_evidence
from bot.service import FeedbackInput, IncidentInput, NPOService
from core.feedback import FeedbackKind
from core.npo import NPOConfig, ThresholdMode
from core.scoring import evidence_of_counts
from tests.fakes import FakeHit, FakeRetriever, ScriptedSPE

NOW = dt.datetime(2026, 11, 25, 3, tzinfo=dt.UTC)


def _service(engine: Engine) -> NPOService:
    retriever = FakeRetriever(
        [FakeHit("optic", 0.85, "replace_optic"), FakeHit("drain", 0.6, "drain_link")]
    )
    cfg = NPOConfig(threshold_mode=ThresholdMode.FIXED, fixed_threshold=0.5)
    return NPOService(engine, retriever, ScriptedSPE(), cfg, np.random.default_rng(0), lambda: NOW)


def test_evidence_counts_live_votes_only(engine: Engine) -> None:
    svc = _service(engine)
    night = [svc.recommend(IncidentInput("CRC errors on leaf-1", "console")) for _ in range(4)]
    ctx = night[0].decision.scenario.context_key
    votes = [
        ("U1", FeedbackKind.LIKE, None),
        ("U2", FeedbackKind.LIKE, None),
        ("U3", FeedbackKind.OVERRIDE, None),
        ("U4", FeedbackKind.NEUTRAL, "drain"),
        ("U5", FeedbackKind.SKIPPED, None),
    ]
    for i, (user, kind, pb) in enumerate(votes):
        rec = night[i % len(night)].recommendation_id
        svc.record_feedback(FeedbackInput(rec, user, kind, f"e{i}", playbook_id=pb))
    svc.withdraw_feedback(night[1].recommendation_id, "U2", "w1")  # one like withdrawn
    cfg = svc.config.scoring
    with engine.connect() as conn:
        found = context_evidence(conn, ctx, cfg)
        some = scenario_evidence(conn, [("optic", ctx), ("missing", ctx)], cfg)
        other = context_evidence(conn, "no-such-context", cfg)
    assert found["optic"] == evidence_of_counts(
        {FeedbackKind.LIKE: 1, FeedbackKind.OVERRIDE: 1}, cfg
    )
    assert found["drain"] == evidence_of_counts({FeedbackKind.NEUTRAL: 1}, cfg)
    assert some == {("optic", ctx): found["optic"]}
    assert other == {}
