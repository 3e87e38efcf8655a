"""The tick's columnar read of the live log against the ORM path it replaced, on SQLite
and PostgreSQL: the same shadow verdict, the same models and the same monitor signals."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sqlalchemy import insert, text, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bot.db.engine import read_only, table_of
from bot.db.models import Feedback
from bot.db.scenario_code import scenario_hash
from bot.db.vote_log import _coded_rows, _cursor_rows, read_live_log
from bot.service import FeedbackInput, FeedbackStatus, IncidentInput, NPOService
from core.feedback import FeedbackKind, alignment_loss, signal
from core.log_columns import evaluate_log, monitor_signals
from core.model import Example, LogisticModel, SimilarityPrior, fit, fit_log
from core.monitor import LoggedVote, MetaMonitor, MonitorConfig
from core.npo import NPOConfig, evaluate_candidate
from core.rego import RegoPolicyEngine
from tests.fakes import FakeHit, FakeRetriever

KINDS = list(FeedbackKind)


def _fill(engine: Engine, spe: RegoPolicyEngine, n: int, coded: bool = True) -> None:
    """Votes on one recommendation: several playbooks and contexts (one listed in another
    key order), abstentions' votes without a playbook, skips, withdrawn votes, and
    similarities on the bins' edges; ``coded=False``: stored as before revision 0005,
    without their scenario's code."""
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
        playbook = "" if rng.random() < 0.05 else f"pb-{rng.integers(0, 5)}"
        context = contexts[int(rng.integers(0, len(contexts)))]
        rows.append(
            {
                "recommendation_id": rec,
                "playbook_id": playbook,
                "context_key": "k",
                "operator_id": f"U{i}",
                "kind": kind.value,
                "label": signal(kind).label,
                "weight": signal(kind).weight,
                "score": score,
                "similarity": float(sims[int(rng.integers(0, len(sims)))]),
                "context_json": context,
                "scenario_hash": scenario_hash(kind.value, playbook, context) if coded else None,
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


@pytest.mark.parametrize("coded", [True, False], ids=["by-code", "by-strings"])
def test_the_columnar_read_gives_the_orm_paths_models_and_signals(
    engine: Engine, rego_engine: RegoPolicyEngine, coded: bool
) -> None:
    _fill(engine, rego_engine, 1500, coded)
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
    """The read by every vote's strings, taken when a vote has no stored code."""
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


def _columns(engine: Engine) -> tuple[list[object], ...]:
    with read_only(engine).connect() as conn:
        votes, log = read_live_log(conn)
    return (
        votes.seq.tolist(),
        votes.kind.tolist(),
        [votes.playbooks[p] if p >= 0 else None for p in votes.playbook.tolist()],
        [log.playbooks[p] for p in log.playbook.tolist()],
        [log.contexts[c] for c in log.context.tolist()],
        log.similarity.tolist(),
    )


def test_one_vote_without_its_code_sends_the_read_to_the_strings(
    engine: Engine, rego_engine: RegoPolicyEngine
) -> None:
    """A vote a replica on revision 0004 stored: the whole read goes by the strings, and
    gives what the codes gave."""
    _fill(engine, rego_engine, 300)
    before = _columns(engine)
    with engine.begin() as conn:
        conn.execute(
            update(table_of(Feedback))
            .where(table_of(Feedback).c.id == 7)
            .values(scenario_hash=None)
        )
    with read_only(engine).connect() as conn:
        assert _coded_rows(conn) is None
    assert _columns(engine) == before


def test_a_scenario_whose_strings_do_not_match_its_code_is_read_by_its_strings(
    engine: Engine, rego_engine: RegoPolicyEngine
) -> None:
    """The first vote of a scenario changed behind the code's back: the check of its code
    catches it, and the read by strings sees the change."""
    _fill(engine, rego_engine, 300)
    votes = table_of(Feedback)
    with engine.begin() as conn:
        first = conn.execute(
            text(
                "SELECT id FROM feedback WHERE NOT withdrawn AND playbook_id = 'pb-2' "
                "AND kind = 'like' ORDER BY seq, id LIMIT 1"
            )
        ).scalar_one()
        conn.execute(update(votes).where(votes.c.id == first).values(playbook_id="pb-9"))
    with read_only(engine).connect() as conn:
        assert _coded_rows(conn) is None
    assert "pb-9" in _columns(engine)[3]


def test_the_service_stores_each_votes_code_and_a_replacement_updates_it(
    engine: Engine, rego_engine: RegoPolicyEngine
) -> None:
    service = NPOService(
        engine,
        FakeRetriever([FakeHit("pb-0", 0.8), FakeHit("pb-1", 0.7)]),
        rego_engine,
        NPOConfig(),
        np.random.default_rng(0),
    )
    rec = service.recommend(IncidentInput("link flapping on sw1", "console")).recommendation_id
    votes = [
        FeedbackInput(rec, "U1", FeedbackKind.LIKE, "ev-1", playbook_id="pb-0"),
        FeedbackInput(rec, "U2", FeedbackKind.SKIPPED, "ev-2"),
        FeedbackInput(rec, "U1", FeedbackKind.OVERRIDE, "ev-3", reason="no", playbook_id="pb-0"),
    ]
    statuses = [service.record_feedback(vote).status for vote in votes]
    assert statuses == [FeedbackStatus.STORED, FeedbackStatus.STORED, FeedbackStatus.REPLACED]
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT kind, playbook_id, context_json, scenario_hash FROM feedback")
        ).all()
    assert sorted(r.kind for r in rows) == ["override", "skipped"]
    for kind, playbook, context, code in rows:
        assert code == scenario_hash(kind, playbook, context)
    with read_only(engine).connect() as conn:
        assert _coded_rows(conn) is not None
