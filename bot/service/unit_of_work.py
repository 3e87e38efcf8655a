"""The one way the use cases reach the database: a write is one transaction, a read is a
read-only snapshot, and every part of the service tells time by the same clock.

Each use case (recommend, feedback, the outbox, reads) holds the same ``UnitOfWork``, so a
test or a deployment that swaps the clock swaps it for all of them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field

from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session

from bot.db.engine import bounded_wait, read_only, transaction


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(slots=True)
class UnitOfWork:
    engine: Engine
    clock: Callable[[], dt.datetime] = utcnow
    reader: Engine = field(init=False)

    def __post_init__(self) -> None:
        self.reader = read_only(self.engine)

    def write(self) -> AbstractContextManager[Connection]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        return self.engine.begin()

    @contextmanager
    def write_within(self, wait: dt.timedelta) -> Iterator[Connection]:
        """A transaction that waits at most ``wait`` for another writer (a deadline)."""
        with bounded_wait(self.engine, wait) as conn, conn.begin():
            yield conn

    def read(self) -> AbstractContextManager[Connection]:
        """A read-only snapshot (Core queries)."""
        return self.reader.connect()

    def read_rows(self) -> Session:
        """A read-only ORM session."""
        return Session(self.reader)

    def write_rows(self) -> AbstractContextManager[Session]:
        """An ORM session in one transaction."""
        return transaction(self.engine)
