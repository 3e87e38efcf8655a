"""The batch's scenario-score book: loads once, writes each kind of change once, and never
lets a later load overwrite what the batch has already changed."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from bot.db.models import ScenarioScoreRow
from bot.db.scores import ScoreBook
from core.scoring import ScenarioScore

NOW = dt.datetime(2026, 11, 25, 3, tzinfo=dt.UTC)


def _stored(engine: Engine) -> dict[tuple[str, str], tuple[float, int]]:
    with Session(engine) as s:
        rows = s.exec(select(ScenarioScoreRow)).all()
        return {(r.playbook_id, r.context_key): (r.value, r.observations) for r in rows}


def _seed(engine: Engine, *rows: tuple[str, str, float, int]) -> None:
    with Session(engine) as s:
        for pb, ctx, value, n in rows:
            s.add(ScenarioScoreRow(playbook_id=pb, context_key=ctx, value=value, observations=n))
        s.commit()


def test_inserts_updates_and_deletes_are_written_once(engine: Engine) -> None:
    _seed(engine, ("a", "c1", 0.5, 1), ("b", "c1", 0.4, 2))
    book = ScoreBook()
    with engine.begin() as conn:
        book.load(conn, [("a", "c1"), ("b", "c1"), ("new", "c1")])
        assert book.get(("a", "c1")) == ScenarioScore(0.5, 1)
        assert book.get(("new", "c1")) is None
        book.set(("a", "c1"), ScenarioScore(0.6, 2))
        book.set(("b", "c1"), None)
        book.set(("new", "c1"), ScenarioScore(0.7, 1))
        book.flush(conn, NOW)
    assert _stored(engine) == {("a", "c1"): (0.6, 2), ("new", "c1"): (0.7, 1)}
    with engine.begin() as conn:  # a second flush of the same book changes nothing more
        book.set(("new", "c1"), ScenarioScore(0.8, 2))
        book.flush(conn, NOW)
    assert _stored(engine)[("new", "c1")] == (0.8, 2)


def test_a_later_load_does_not_bring_back_what_the_batch_changed(engine: Engine) -> None:
    _seed(engine, ("a", "c1", 0.5, 1), ("a", "c2", 0.3, 1), ("b", "c1", 0.9, 4))
    book = ScoreBook()
    with engine.begin() as conn:
        book.load(conn, [("a", "c1")])
        book.set(("a", "c1"), None)  # the scenario lost its last vote
        book.load(conn, [("b", "c1"), ("a", "c2")])  # its query also returns (a, c1)
        assert book.get(("a", "c1")) is None
        assert book.get(("b", "c1")) == ScenarioScore(0.9, 4)
        book.flush(conn, NOW)
    assert ("a", "c1") not in _stored(engine)


def test_reading_a_score_that_was_never_loaded_is_a_bug(engine: Engine) -> None:
    with pytest.raises(AssertionError, match="before it was loaded"):
        ScoreBook().get(("a", "c1"))
