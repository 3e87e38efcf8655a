"""The live feedback log read as columns, for the monitor tick.

A million votes as ORM objects, or even as SQLAlchemy rows, cost more than all the tick's
arithmetic: the rows come straight from the driver's cursor in batches (a server-side
cursor on PostgreSQL, so neither side holds the whole result) and go into numpy arrays,
each distinct playbook and context kept once.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from bot.db.engine import table_of
from bot.db.models import Feedback
from core.feedback import signal
from core.log_columns import KINDS, VoteColumns
from core.model import LabelledLog

_VOTES = table_of(Feedback)
_BATCH = 20_000  # rows per fetch: one fetch is one call that holds the interpreter
_KIND_CODE = {kind.value: i for i, kind in enumerate(KINDS)}
_LABEL = np.array([signal(k).label if signal(k).label is not None else np.nan for k in KINDS])
_WEIGHT = np.array([signal(k).weight for k in KINDS])
_SKIPPED = _KIND_CODE["skipped"]

_SEP = "\x1f"  # unit separator: JSON escapes it, kinds and playbook ids do not carry it
# A vote's kind, playbook and context as one string: one column per row instead of three
# (the driver's cost is per column and row), a few thousand distinct values in all.
_SCENARIO = _VOTES.c.kind + _SEP + _VOTES.c.playbook_id + _SEP + _VOTES.c.context_json
_LIVE_VOTES = (
    sa.select(_VOTES.c.seq, _SCENARIO, _VOTES.c.similarity, _VOTES.c.loss)
    .where(_VOTES.c.withdrawn.is_(False))
    .order_by(_VOTES.c.seq, _VOTES.c.id)
)


class _Codes(dict[str, int]):
    """Dictionary encoding: each new string gets the next code."""

    def __missing__(self, key: str) -> int:
        code = self[key] = len(self)
        return code


def _joined(parts: list[npt.NDArray[Any]], dtype: type[np.generic]) -> npt.NDArray[Any]:
    return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)


def read_live_log(conn: Connection) -> tuple[VoteColumns, LabelledLog]:
    """Every live vote (for the monitor) and the labelled ones that judged a playbook (for
    the retrain model), ordered by seq, in the transaction ``conn`` is in."""
    sql = str(_LIVE_VOTES.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    raw: Any = conn.connection.dbapi_connection
    postgres = conn.dialect.name == "postgresql"
    cursor = raw.cursor(name="npo_live_votes") if postgres else raw.cursor()
    scenarios = _Codes()
    columns: list[list[npt.NDArray[Any]]] = [[] for _ in range(4)]
    try:
        if postgres:
            cursor.itersize = _BATCH
        cursor.execute(sql)
        while batch := cursor.fetchmany(_BATCH):
            seqs, keys, sims, losses = zip(*batch, strict=True)
            columns[0].append(np.array(seqs, dtype=np.int64))
            columns[1].append(np.fromiter(map(scenarios.__getitem__, keys), np.int64, len(keys)))
            columns[2].append(np.array(sims, dtype=np.float64))
            columns[3].append(np.array(losses, dtype=np.float64))
    finally:
        cursor.close()
    seq, scenario = (_joined(c, np.int64) for c in columns[:2])
    similarity, loss = (_joined(c, np.float64) for c in columns[2:])
    # Split each distinct scenario once; per row, its parts are looked up by its code.
    playbooks, contexts = _Codes(), _Codes()
    parts = np.zeros((len(scenarios), 3), dtype=np.int64)
    for code, key in enumerate(scenarios):
        kind_name, rest = key.split(_SEP, 1)
        playbook_id, context_json = rest.rsplit(_SEP, 1)
        parts[code] = (
            _KIND_CODE[kind_name],
            playbooks[playbook_id],
            contexts[context_json],
        )
    kind, playbook, context = (parts[scenario, i] for i in range(3))
    names = tuple(playbooks)
    none = playbooks.get("", -1)  # a vote on an abstention judged no playbook
    votes = VoteColumns(seq, kind, loss, np.where(playbook == none, -1, playbook), names)
    labelled = (kind != _SKIPPED) & (playbook != none)
    mappings = [json.loads(text) for text in contexts]  # each distinct context parsed once
    log = LabelledLog(
        names,
        mappings,
        playbook[labelled],
        context[labelled],
        similarity[labelled],
        _LABEL[kind[labelled]],
        _WEIGHT[kind[labelled]],
        seq[labelled],
    )
    return votes, log
