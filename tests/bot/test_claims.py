"""Claiming a delivery: once per id, in one statement (also a batch of ids), and a concurrent
claim of the same id neither fails nor claims it twice (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable

from sqlalchemy import Engine, func, select

from bot.db.engine import table_of
from bot.db.feedback_rows import claim_event, claim_events, is_claimed
from bot.db.models import ProcessedEvent

NOW = dt.datetime(2026, 12, 3, tzinfo=dt.UTC)


def _count(engine: Engine) -> int:
    with engine.connect() as conn:
        counted = select(func.count()).select_from(table_of(ProcessedEvent))
        return int(conn.execute(counted).scalar_one())


def test_an_id_is_claimed_once(engine: Engine) -> None:
    with engine.begin() as conn:
        assert claim_event(conn, "Ev1", NOW)
    with engine.begin() as conn:
        assert not claim_event(conn, "Ev1", NOW)
        assert claim_event(conn, "Ev2", NOW)
        assert is_claimed(conn, "Ev1") and is_claimed(conn, "Ev2")
    assert _count(engine) == 2


def test_a_claim_rolled_back_leaves_the_id_free(engine: Engine) -> None:
    try:
        with engine.begin() as conn:
            assert claim_event(conn, "Ev1", NOW)
            raise RuntimeError("the decision failed to store")
    except RuntimeError:
        pass
    with engine.begin() as conn:
        assert claim_event(conn, "Ev1", NOW)


def _at_once(work: Callable[[int], None], n: int = 4) -> list[BaseException]:
    """Run ``work(0..n-1)`` on n threads released together; what any of them raised."""
    errors: list[BaseException] = []
    start = threading.Barrier(n)

    def run(k: int) -> None:
        try:
            start.wait()
            work(k)
        except BaseException as exc:  # returned: the test must see it
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return errors


def test_concurrent_claims_of_one_id_give_one_winner(engine: Engine) -> None:
    claims: list[bool] = []

    def claim(_: int) -> None:
        with engine.begin() as conn:
            claims.append(claim_event(conn, "EvSame", NOW))

    assert _at_once(claim) == []
    assert sorted(claims) == [False, False, False, True]
    assert _count(engine) == 1


def test_a_batch_claims_only_the_ids_still_free(engine: Engine) -> None:
    with engine.begin() as conn:
        assert claim_event(conn, "Ev1", NOW)
    with engine.begin() as conn:
        assert claim_events(conn, ["Ev1", "Ev2", "Ev3", "Ev2"], NOW) == {"Ev2", "Ev3"}
        assert claim_events(conn, ["Ev3"], NOW) == set()  # seen inside the same transaction
        assert claim_events(conn, [], NOW) == set()
    assert _count(engine) == 3


def test_concurrent_batches_claim_each_id_once(engine: Engine) -> None:
    won: list[set[str]] = []
    ids = [f"Ev{i}" for i in range(20)]

    def claim(k: int) -> None:
        with engine.begin() as conn:  # overlapping sets, in different orders
            won.append(claim_events(conn, ids[k * 3 :] + ids[: k * 3], NOW))

    assert _at_once(claim) == []
    assert sorted(i for w in won for i in w) == sorted(ids)
    assert _count(engine) == len(ids)
