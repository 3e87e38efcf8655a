"""Group commit: concurrent callers share one transaction and one durable commit.

Each caller hands in its item and waits for its own outcome, so "returned" still means
"committed". Whoever arrives while no batch is running processes everything queued so far
(first in, first out); the others wait and are woken with their results. A batch that
fails is retried item by item, so one bad item (or a conflict with another replica)
only fails its own caller.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

_MAX_YIELDS = 4  # how long a batch waits for concurrent callers, at most
T = TypeVar("T")
R = TypeVar("R")


@dataclass(slots=True)
class _Slot(Generic[T, R]):
    item: T
    done: bool = False
    result: R | None = None
    error: Exception | None = None

    def outcome(self) -> R:
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]


class GroupCommit(Generic[T, R]):
    """``process`` takes a batch and returns one result per item, in order."""

    def __init__(self, process: Callable[[Sequence[T]], list[R]], max_batch: int = 128) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch: {max_batch} must be >= 1")
        self._process, self._max_batch = process, max_batch
        self._cond = threading.Condition()
        self._queue: list[_Slot[T, R]] = []
        self._busy = False
        self._last_batch = 0  # size of the batch run last: >1 means callers are concurrent

    def submit(self, item: T) -> R:
        slot: _Slot[T, R] = _Slot(item)
        with self._cond:
            self._queue.append(slot)
        while True:
            with self._cond:
                while self._busy and not slot.done:
                    self._cond.wait()
                if slot.done:
                    return slot.outcome()
                self._busy = True
                concurrent = self._last_batch > 1 or len(self._queue) > 1
            if concurrent:  # let callers woken with this one queue their next item first
                self._gather()
            with self._cond:
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                self._last_batch = len(batch)
            try:
                self._run(batch)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _gather(self) -> None:
        """Yield the interpreter while the queue still grows (each yield ~0.1 ms; a lone
        caller never gets here). One yield let the woken callers queue about 6 of 8 items:
        one more fills the batch, and a batch's fixed cost is most of a vote's."""
        seen = -1
        for _ in range(_MAX_YIELDS):
            with self._cond:
                queued = len(self._queue)
            if queued == seen or queued >= self._max_batch:
                return
            seen = queued
            time.sleep(0)

    def _run(self, batch: list[_Slot[T, R]]) -> None:
        try:
            results = self._process([s.item for s in batch])
        except Exception as exc:
            if len(batch) == 1:
                batch[0].error, batch[0].done = exc, True
                return
            for slot in batch:  # one by one: each caller gets its own outcome
                self._run([slot])
            return
        for slot, result in zip(batch, results, strict=True):
            slot.result, slot.done = result, True
