"""Group commit: every caller gets its own outcome, concurrent callers share batches."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from bot.db.group_commit import GroupCommit


class _Doubler:
    """Doubles numbers in batches; a batch holding a negative number fails as a whole."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.entered = threading.Event()  # a batch is being processed
        self.gate = threading.Event()  # cleared: hold batches until the test releases them
        self.gate.set()

    def __call__(self, items: Sequence[int]) -> list[int]:
        self.entered.set()
        self.gate.wait(5)
        self.batches.append(list(items))
        if any(i < 0 for i in items):
            raise ValueError(f"negative in {list(items)}")
        return [2 * i for i in items]


def _submit_all(writer: GroupCommit[int, int], items: list[int]) -> dict[int, object]:
    outcomes: dict[int, object] = {}

    def call(i: int) -> None:
        try:
            outcomes[i] = writer.submit(i)
        except ValueError as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in items]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    return outcomes


def test_a_lone_caller_gets_its_result_in_a_batch_of_one() -> None:
    process = _Doubler()
    writer = GroupCommit(process)
    assert writer.submit(21) == 42
    assert process.batches == [[21]]


def test_callers_waiting_behind_a_batch_share_the_next_one() -> None:
    process = _Doubler()
    writer = GroupCommit(process)
    process.gate.clear()  # hold the first batch until everyone has queued
    first = threading.Thread(target=writer.submit, args=(0,))
    first.start()
    assert process.entered.wait(5)
    rest: dict[int, object] = {}
    threads = [
        threading.Thread(target=lambda i=i: rest.__setitem__(i, writer.submit(i)))
        for i in range(1, 9)
    ]
    for t in threads:
        t.start()
    while len(writer._queue) < 8:
        threading.Event().wait(0.01)
    process.gate.set()
    first.join(5)
    for t in threads:
        t.join(5)
    assert rest == {i: 2 * i for i in range(1, 9)}
    assert process.batches[0] == [0]
    assert sorted(process.batches[1]) == list(range(1, 9))  # one transaction for all eight
    assert len(process.batches) == 2


def test_a_failing_batch_fails_only_the_bad_item() -> None:
    process = _Doubler()
    writer = GroupCommit(process)
    process.gate.clear()
    blocker = threading.Thread(target=writer.submit, args=(100,))
    blocker.start()
    assert process.entered.wait(5)
    outcomes: dict[int, object] = {}
    done = threading.Thread(target=lambda: outcomes.update(_submit_all(writer, [1, -2, 3])))
    done.start()
    while len(writer._queue) < 3:
        threading.Event().wait(0.01)
    process.gate.set()
    blocker.join(5)
    done.join(10)
    assert outcomes[1] == 2 and outcomes[3] == 6
    assert isinstance(outcomes[-2], ValueError)
    assert sorted(process.batches[1]) == [-2, 1, 3]  # tried together, then one by one
    assert sorted(map(tuple, process.batches[2:])) == [(-2,), (1,), (3,)]


def test_batches_are_bounded() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        GroupCommit(_Doubler(), max_batch=0)
    process = _Doubler()
    writer = GroupCommit(process, max_batch=3)
    outcomes = _submit_all(writer, list(range(20)))
    assert outcomes == {i: 2 * i for i in range(20)}
    assert max(len(b) for b in process.batches) <= 3
