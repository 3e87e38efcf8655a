"""Scenario evidence, derived from the live votes (never stored apart from them).

A scenario's score is its prior plus the evidence of its current votes (``core.scoring``).
Evidence is a sum, so it is counted straight from the votes: a withdrawn or replaced vote
is out of the count the moment its row changes, with nothing else to keep in step.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from sqlalchemy import bindparam, func, select
from sqlalchemy.engine import Connection

from bot.db.engine import table_of
from bot.db.models import Feedback
from bot.db.prepared import Prepared
from core.feedback import FeedbackKind
from core.scoring import Evidence, ScoringConfig, evidence_of_counts

Key = tuple[str, str]  # (playbook id, context key)

_VOTES = table_of(Feedback)
_LIVE = _VOTES.c.withdrawn.is_(False)
_COUNTS = select(_VOTES.c.playbook_id, _VOTES.c.context_key, _VOTES.c.kind, func.count())
_OF_CONTEXT = Prepared(  # every decision reads it
    _COUNTS.where(_VOTES.c.context_key == bindparam("ctx"), _LIVE).group_by(
        _VOTES.c.playbook_id, _VOTES.c.context_key, _VOTES.c.kind
    ),
    "context evidence",
)
_OF_KEYS = _COUNTS.where(
    _VOTES.c.context_key.in_(bindparam("contexts", expanding=True)),
    _VOTES.c.playbook_id.in_(bindparam("playbooks", expanding=True)),
    _LIVE,
).group_by(_VOTES.c.playbook_id, _VOTES.c.context_key, _VOTES.c.kind)


def _fold(rows: Iterable[tuple[str, str, str, int]], config: ScoringConfig) -> dict[Key, Evidence]:
    counts: dict[Key, dict[FeedbackKind, int]] = defaultdict(dict)
    for pb, ctx, kind, n in rows:
        if pb:  # a skip that judged no candidate
            counts[(pb, ctx)][FeedbackKind(kind)] = int(n)
    found = {key: evidence_of_counts(c, config) for key, c in counts.items()}
    return {key: ev for key, ev in found.items() if not ev.empty}


def context_evidence(
    conn: Connection, context_key: str, config: ScoringConfig
) -> dict[str, Evidence]:
    """The evidence of every playbook judged in this context (a handful), by playbook."""
    rows = _OF_CONTEXT.all(conn, {"ctx": context_key})
    return {pb: ev for (pb, _), ev in _fold(rows, config).items()}


def scenario_evidence(
    conn: Connection, keys: Iterable[Key], config: ScoringConfig
) -> dict[Key, Evidence]:
    """The evidence of these scenarios (absent: none), in one query."""
    wanted = set(keys)
    if not wanted:
        return {}
    params = {
        "playbooks": sorted({pb for pb, _ in wanted}),
        "contexts": sorted({ctx for _, ctx in wanted}),
    }
    rows = conn.execute(_OF_KEYS, params)
    return {k: ev for k, ev in _fold(rows, config).items() if k in wanted}
