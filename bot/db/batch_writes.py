"""Rows one batch of votes appends, written with one statement per table at the end.

Per-vote rows (the claimed delivery, the vote, its audit entry, a retrain request) are
plain dicts inserted in bulk: building and flushing an ORM object per row cost more than
the whole database round trip. Rows a batch updates many times (a scenario score, the
bandit arms, the monitor document) stay ORM objects and are written once, at the flush.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert, update
from sqlmodel import Session, col

from bot.db.engine import table_of
from bot.db.models import AuditEntry, Feedback, ProcessedEvent, Recommendation, RetrainRequest


@dataclass(slots=True)
class BatchWrites:
    events: list[dict[str, Any]] = field(default_factory=list)
    votes: list[dict[str, Any]] = field(default_factory=list)
    audits: list[dict[str, Any]] = field(default_factory=list)
    retrains: list[dict[str, Any]] = field(default_factory=list)
    judged: set[str] = field(default_factory=set)

    def flush(self, session: Session) -> None:
        """Write everything pending (also before a query that must see it)."""
        connection = session.connection()
        tables: tuple[tuple[type[Any], list[dict[str, Any]]], ...] = (
            (ProcessedEvent, self.events),
            (Feedback, self.votes),
            (AuditEntry, self.audits),
            (RetrainRequest, self.retrains),
        )
        for model, rows in tables:
            if rows:
                connection.execute(insert(table_of(model)), rows)
                rows.clear()
        if self.judged:
            connection.execute(
                update(Recommendation)
                .where(col(Recommendation.id).in_(self.judged))
                .values(status="judged")
            )
            self.judged.clear()
        session.flush()
