"""The simulator's loop is the bot's loop: the same scripted episodes — recommendations,
likes, overrides, neutral votes, skips, confirmations of an abstention's candidate,
replaced and withdrawn votes — through the service on a database and through
``core.npo.NPO`` in memory end in the same learning state: threshold arms, scenario
evidence and scores, the votes the meta-monitor reads, and its signals."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from bot.db.engine import table_of
from bot.db.models import BanditArm, Feedback
from bot.db.scores import context_evidence
from bot.service import FeedbackInput, IncidentInput, NPOService
from core.bandit import BanditConfig
from core.decision import Decision
from core.feedback import FeedbackKind
from core.monitor import LoggedVote
from core.npo import NPO, Match, NPOConfig, ThresholdMode
from core.policy import Action, Verdict
from tests.fakes import FakeHit, FakeRetriever, ScriptedSPE

NOW = dt.datetime(2026, 12, 1, 14, tzinfo=dt.UTC)
HITS = [
    FakeHit("optic", 0.82, "replace_optic"),
    FakeHit("drain", 0.66, "drain_link"),
    FakeHit("bounce", 0.45, "shutdown_port"),
]
TEXTS = (
    "CRC errors on leaf-1 eth1/1 severity=high",
    "CRC errors on leaf-2 eth1/2 severity=low",
    "link flapping on spine-1 severity=critical",
)
LIKE, OVER, NEU, SKIP = (
    FeedbackKind.LIKE,
    FeedbackKind.OVERRIDE,
    FeedbackKind.NEUTRAL,
    FeedbackKind.SKIPPED,
)
# (incident index, [(voter, kind or "withdraw", playbook)])
SCRIPT: list[tuple[int, list[tuple[str, FeedbackKind | str, str | None]]]] = [
    (0, [("ana", LIKE, None)]),
    (1, [("ana", OVER, None), ("bo", LIKE, "drain")]),
    (0, [("ana", LIKE, None), ("ana", OVER, None)]),  # replaced
    (2, [("bo", NEU, None), ("bo", "withdraw", None)]),  # withdrawn
    (1, [("ana", LIKE, "bounce"), ("cy", SKIP, None)]),
    (0, [("ana", LIKE, "drain"), ("ana", LIKE, "optic")]),  # moved to another candidate
    (2, [("bo", OVER, None)]),
    (
        1,
        [("cy", LIKE, None), ("cy", "withdraw", None), ("cy", OVER, None)],
    ),  # back after withdrawal
]


def _config() -> NPOConfig:
    return NPOConfig(
        threshold_mode=ThresholdMode.THOMPSON,
        bandit=BanditConfig(start=0.67, discount=0.95),
    )


def _matches() -> list[Match]:
    return [
        Match(h.doc_id, h.title, Action(str(h.metadata["action"]), ""), h.similarity) for h in HITS
    ]


@pytest.mark.parametrize("spe_drain", [Verdict.ALLOW, Verdict.NEEDS_APPROVAL])
def test_service_and_core_learn_the_same(engine: Engine, spe_drain: Verdict) -> None:
    spe = ScriptedSPE({"drain_link": spe_drain})
    svc = NPOService(
        engine, FakeRetriever(HITS), spe, _config(), np.random.default_rng(7), lambda: NOW
    )
    core = NPO(spe, _config(), np.random.default_rng(7))
    event = 0
    for index, votes in SCRIPT:
        recorded = svc.recommend(IncidentInput(TEXTS[index], "console"))
        decision: Decision = recorded.decision
        # The core scores the same incident exactly as the service did.
        mine = [core.candidate(decision.scenario, m) for m in _matches()]
        assert sorted((c.playbook_id, round(c.score, 12)) for c in mine) == sorted(
            (c.playbook_id, round(c.score, 12)) for c in decision.candidates
        )
        for voter, kind, playbook in votes:
            event += 1
            if kind == "withdraw":
                svc.withdraw_feedback(recorded.recommendation_id, voter, f"w{event}")
                core.withdraw(decision, voter)
                continue
            assert isinstance(kind, FeedbackKind)
            result = svc.record_feedback(
                FeedbackInput(
                    recorded.recommendation_id, voter, kind, f"e{event}", playbook_id=playbook
                )
            )
            core.feedback(decision, playbook, kind, voter)
            if result.local_score is not None:  # the score the operator is told
                target = next(c for c in decision.candidates if c.playbook_id == result.playbook_id)
                sid = (target.playbook_id, decision.scenario.context_key)
                assert result.local_score == pytest.approx(
                    core.scores.score(sid, target.model_prior), abs=1e-12
                )

    with engine.connect() as conn:
        arm_t, vote_t = table_of(BanditArm), table_of(Feedback)
        arms = conn.execute(select(arm_t.c.alpha, arm_t.c.beta).order_by(arm_t.c.arm_index)).all()
        rows = conn.execute(
            select(vote_t.c.seq, vote_t.c.kind, vote_t.c.loss, vote_t.c.playbook_id)
            .where(vote_t.c.withdrawn.is_(False))
            .order_by(vote_t.c.seq)
        ).all()
        contexts = {ctx for (_, ctx), _ev in core.scores.items()}
        stored = {
            (pb, ctx): ev
            for ctx in contexts
            for pb, ev in context_evidence(conn, ctx, svc.config.scoring).items()
        }
    np.testing.assert_allclose([a for a, _ in arms], core.bandit.alpha, atol=1e-9)
    np.testing.assert_allclose([b for _, b in arms], core.bandit.beta, atol=1e-9)
    assert stored == dict(core.scores.items())
    service_votes = [LoggedVote(s, FeedbackKind(k), loss, pb or None) for s, k, loss, pb in rows]
    assert [(v.kind, round(v.loss, 12), v.playbook_id) for v in service_votes] == [
        (v.kind, round(v.loss, 12), v.playbook_id) for v in core.votes
    ]
    assert core.monitor.signals(core.votes) == core.monitor.signals(service_votes)
