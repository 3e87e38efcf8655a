"""The tick's columnar read of the live log against the ORM path it replaced, on SQLite
and PostgreSQL: the same shadow verdict, the same models and the same monitor signals."""

from __future__ import annotations

import json

import numpy as np
from sqlalchemy import insert
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bot.db.engine import read_only, table_of
from bot.db.models import Feedback
from bot.db.vote_log import _cursor_rows, read_live_log
from bot.service import IncidentInput, NPOService
from core.feedback import FeedbackKind, alignment_loss, signal
from core.log_columns import evaluate_log, monitor_signals
from core.model import Example, LogisticModel, SimilarityPrior, fit, fit_log
from core.monitor import LoggedVote, MetaMonitor, MonitorConfig
from core.npo import NPOConfig, evaluate_candidate
from core.rego import RegoPolicyEngine
from tests.fakes import FakeHit, FakeRetriever

KINDS = list(FeedbackKind)


def _fill(engine: Engine, spe: RegoPolicyEngine, n: int) -> None:
    """Votes on one recommendation: several playbooks and contexts (one listed in another
    key order), abstentions' votes without a playbook, skips, withdrawn votes, and
    similarities on the bins' edges."""
    service = NPOService(
        engine, FakeRetriever([FakeHit("pb-0", 0.8)]), spe, NPOConfig(), np.random.default_rng(0)
    )
    rec = service.recommend(IncidentInput("history", "console")).recommendation_id
    rng = np.random.default_rng(7)
    contexts = [
        json.dumps({"component": "link", "hour": "night"}),
        json.dumps({"hour": "night", "component": "link"}),
        json.dumps({"component": "server", "hour": "day", "severity": "high"}),
        json.dumps({"component": "switch"}),
    ]
    sims = np.concatenate([np.arange(0, 41) / 40, rng.uniform(0.2, 0.95, 200)])
    rows = []
    for i in range(n):
        kind = KINDS[int(rng.choice(4, p=[0.5, 0.25, 0.15, 0.1]))]
        score = float(rng.uniform(0, 1))
        rows.append(
            {
                "recommendation_id": rec,
                "playbook_id": "" if rng.random() < 0.05 else f"pb-{rng.integers(0, 5)}",
                "context_key": "k",
                "operator_id": f"U{i}",
                "kind": kind.value,
                "label": signal(kind).label,
                "weight": signal(kind).weight,
                "score": score,
                "similarity": float(sims[int(rng.integers(0, len(sims)))]),
                "context_json": contexts[int(rng.integers(0, len(contexts)))],
                "loss": alignment_loss(kind, score),
                "source_event_id": f"e{i}",
                "withdrawn": bool(rng.random() < 0.05),
                "seq": n - i if i % 7 == 0 else i + 1,  # not in insertion order
            }
        )
    with engine.begin() as conn:
        conn.execute(insert(table_of(Feedback)), rows)


def _by_orm(engine: Engine) -> tuple[list[Example], list[LoggedVote]]:
    """What the tick read before: ORM rows turned into examples and logged votes."""
    with Session(engine) as session:
        rows = session.exec(
            select(Feedback)
            .where(col(Feedback.withdrawn).is_(False))
            .order_by(col(Feedback.seq), col(Feedback.id))
        ).all()
    votes = [LoggedVote(r.seq, FeedbackKind(r.kind), r.loss, r.playbook_id or None) for r in rows]
    log = [
        Example(
            r.playbook_id, json.loads(r.context_json), r.similarity, FeedbackKind(r.kind), r.seq
        )
        for r in rows
        if r.playbook_id and r.kind != FeedbackKind.SKIPPED
    ]
    return log, votes


def test_the_columnar_read_gives_the_orm_paths_models_and_signals(
    engine: Engine, rego_engine: RegoPolicyEngine
) -> None:
    _fill(engine, rego_engine, 1500)
    examples, logged = _by_orm(engine)
    with read_only(engine).connect() as conn:
        votes, log = read_live_log(conn)
    assert len(log) == len(examples) and len(votes) == len(logged)
    assert log.seq.tolist() == [ex.seq for ex in examples]
    config = NPOConfig()
    live = fit(examples[:300])
    for trained_upto, prior in ((0, SimilarityPrior()), (examples[299].seq, live)):
        old, old_model = evaluate_candidate(examples, trained_upto, prior, config)
        new, new_model = evaluate_log(log, trained_upto, prior, config)
        assert new == old and old.holdout > 0
        assert isinstance(old_model, LogisticModel) and isinstance(new_model, LogisticModel)
        assert np.array_equal(new_model.weights, old_model.weights)
    full_old, full_new = fit(examples, config.fit), fit_log(log, config.fit)
    assert np.array_equal(full_new.weights, full_old.weights)
    assert full_new.similarity_weight == full_old.similarity_weight
    monitor = MetaMonitor(MonitorConfig())
    monitor.state.retrained_at = 400
    monitor.state.resumed_at = {"pb-1": 900}
    assert monitor_signals(monitor, votes) == monitor.signals(logged)


def test_an_empty_log_reads_as_empty_columns(engine: Engine) -> None:
    with read_only(engine).connect() as conn:
        votes, log = read_live_log(conn)
    assert len(votes) == len(log) == 0 and votes.newest == 0


def test_the_row_by_row_read_gives_the_same_columns(
    engine: Engine, rego_engine: RegoPolicyEngine
) -> None:
    """PostgreSQL reads rows when two scenarios' hashes collide; SQLite always does."""
    _fill(engine, rego_engine, 400)
    with read_only(engine).connect() as conn:
        votes, log = read_live_log(conn)
        (seq, code, similarity, loss), scenarios = _cursor_rows(conn)
    assert seq.tolist() == votes.seq.tolist()
    assert loss.tolist() == votes.loss.tolist()
    kinds = [scenarios[c][0] for c in code.tolist()]
    assert kinds == [KINDS[k].value for k in votes.kind.tolist()]
    labelled = [c for c in code.tolist() if scenarios[c][1] and scenarios[c][0] != "skipped"]
    assert [scenarios[c][1] for c in labelled] == [log.playbooks[p] for p in log.playbook.tolist()]
    assert [json.loads(scenarios[c][2]) for c in labelled] == [
        log.contexts[c] for c in log.context.tolist()
    ]
    assert similarity[np.isin(code, labelled)].tolist() == log.similarity.tolist()
