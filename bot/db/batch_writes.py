"""Rows one batch of votes appends, written with one statement per table at the end.

Per-vote rows (the vote, its audit entry, a retrain request) are
plain dicts inserted in bulk: building and flushing an ORM object per row cost more than
the whole database round trip. Rows a batch changes many times (scenario scores, bandit
arms, the monitor document) are written once by their own modules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, insert, update
from sqlalchemy.engine import Connection

from bot.db.engine import table_of
from bot.db.models import AuditEntry, Feedback, Recommendation, RetrainRequest

_INSERTS = {
    name: insert(table_of(model))
    for name, model in (
        ("votes", Feedback),
        ("audits", AuditEntry),
        ("retrains", RetrainRequest),
    )
}
_RECS = table_of(Recommendation)
_JUDGED = (
    update(_RECS).where(_RECS.c.id.in_(bindparam("ids", expanding=True))).values(status="judged")
)


@dataclass(slots=True)
class BatchWrites:
    votes: list[dict[str, Any]] = field(default_factory=list)
    audits: list[dict[str, Any]] = field(default_factory=list)
    retrains: list[dict[str, Any]] = field(default_factory=list)
    judged: set[str] = field(default_factory=set)

    def flush(self, conn: Connection) -> None:
        """Write everything pending (also before a query that must see it)."""
        for name, rows in (
            ("votes", self.votes),
            ("audits", self.audits),
            ("retrains", self.retrains),
        ):
            if rows:
                conn.execute(_INSERTS[name], rows)
                rows.clear()
        if self.judged:
            conn.execute(_JUDGED, {"ids": sorted(self.judged)})
            self.judged.clear()
