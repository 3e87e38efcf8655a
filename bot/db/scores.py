"""The refined scenario scores one batch of votes reads and changes, written once at the end.

A batch touches a handful of (playbook, context) rows, often the same one many times: they
are read in one query, changed in memory, and written with one statement per kind of change.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import and_, bindparam, delete, insert, select, update
from sqlalchemy.engine import Connection

from bot.db.engine import table_of
from bot.db.models import ScenarioScoreRow
from core.scoring import ScenarioScore

Key = tuple[str, str]  # (playbook id, context key)

_SCORES = table_of(ScenarioScoreRow)
_READ = select(
    _SCORES.c.playbook_id, _SCORES.c.context_key, _SCORES.c.value, _SCORES.c.observations
).where(
    _SCORES.c.playbook_id.in_(bindparam("playbooks", expanding=True)),
    _SCORES.c.context_key.in_(bindparam("contexts", expanding=True)),
)
_OF_CONTEXT = select(_SCORES.c.playbook_id, _SCORES.c.value, _SCORES.c.observations).where(
    _SCORES.c.context_key == bindparam("ctx")
)
_MATCH = and_(_SCORES.c.playbook_id == bindparam("pb"), _SCORES.c.context_key == bindparam("ctx"))
_UPDATE = (
    update(_SCORES)
    .where(_MATCH)
    .values(value=bindparam("v"), observations=bindparam("n"), updated_at=bindparam("now"))
)
_DELETE = delete(_SCORES).where(_MATCH)


def scenario_scores(conn: Connection, context_key: str) -> dict[str, ScenarioScore]:
    """The refined score of every playbook judged in this context (a handful)."""
    rows = conn.execute(_OF_CONTEXT, {"ctx": context_key})
    return {pb: ScenarioScore(value, n) for pb, value, n in rows}


@dataclass(slots=True)
class ScoreBook:
    """Scores as loaded, and which of them this batch changed or removed."""

    current: dict[Key, ScenarioScore] = field(default_factory=dict)
    stored: set[Key] = field(default_factory=set)  # rows that exist in the database
    changed: set[Key] = field(default_factory=set)
    loaded: set[Key] = field(default_factory=set)  # asked for, whether or not a row exists

    def load(self, conn: Connection, keys: Iterable[Key]) -> None:
        wanted = set(keys) - self.loaded
        if not wanted:
            return
        playbooks = sorted({pb for pb, _ in wanted})
        contexts = sorted({ctx for _, ctx in wanted})
        for pb, ctx, value, n in conn.execute(
            _READ, {"playbooks": playbooks, "contexts": contexts}
        ):
            if (pb, ctx) not in self.loaded:  # what this batch has seen may have changed
                self.current[(pb, ctx)] = ScenarioScore(value, n)
                self.stored.add((pb, ctx))
        self.loaded |= {(pb, ctx) for pb in playbooks for ctx in contexts}  # ⊇ wanted

    def get(self, key: Key) -> ScenarioScore | None:
        assert key in self.loaded, f"score {key} read before it was loaded"
        return self.current.get(key)

    def set(self, key: Key, score: ScenarioScore | None) -> None:
        """A new score, or None when the scenario has no votes left."""
        if score is None:
            self.current.pop(key, None)
        else:
            self.current[key] = score
        self.changed.add(key)

    def flush(self, conn: Connection, now: dt.datetime) -> None:
        inserts, updates, deletes = [], [], []
        for key in self.changed:
            score = self.current.get(key)
            pb, ctx = key
            if score is None:
                if key in self.stored:
                    deletes.append({"pb": pb, "ctx": ctx})
                    self.stored.discard(key)
            elif key in self.stored:
                updates.append(
                    {"pb": pb, "ctx": ctx, "v": score.value, "n": score.observations, "now": now}
                )
            else:
                inserts.append(
                    {
                        "playbook_id": pb,
                        "context_key": ctx,
                        "value": score.value,
                        "observations": score.observations,
                        "updated_at": now,
                    }
                )
                self.stored.add(key)
        if inserts:
            conn.execute(insert(_SCORES), inserts)
        if updates:
            conn.execute(_UPDATE, updates)
        if deletes:
            conn.execute(_DELETE, deletes)
        self.changed.clear()
