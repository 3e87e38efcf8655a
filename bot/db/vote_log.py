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

_LIVE_VOTES = (
    sa.select(
        _VOTES.c.seq,
        _VOTES.c.kind,
        _VOTES.c.playbook_id,
        _VOTES.c.context_json,
        _VOTES.c.similarity,
        _VOTES.c.loss,
    )
    .where(_VOTES.c.withdrawn.is_(False))
    .order_by(_VOTES.c.seq, _VOTES.c.id)
)


class _Codes(dict[str, int]):
    """Dictionary encoding: each new string gets the next code."""

    def __missing__(self, key: str) -> int:
        code = self[key] = len(self)
        return code


def _codes(values: tuple[str, ...], codes: _Codes) -> npt.NDArray[np.int64]:
    return np.fromiter(map(codes.__getitem__, values), dtype=np.int64, count=len(values))


def _joined(parts: list[npt.NDArray[Any]], dtype: type[np.generic]) -> npt.NDArray[Any]:
    return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)


def read_live_log(conn: Connection) -> tuple[VoteColumns, LabelledLog]:
    """Every live vote (for the monitor) and the labelled ones that judged a playbook (for
    the retrain model), ordered by seq, in the transaction ``conn`` is in."""
    sql = str(_LIVE_VOTES.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    raw: Any = conn.connection.dbapi_connection
    postgres = conn.dialect.name == "postgresql"
    cursor = raw.cursor(name="npo_live_votes") if postgres else raw.cursor()
    playbooks, contexts = _Codes(), _Codes()
    columns: list[list[npt.NDArray[Any]]] = [[] for _ in range(6)]
    try:
        if postgres:
            cursor.itersize = _BATCH
        cursor.execute(sql)
        while batch := cursor.fetchmany(_BATCH):
            seqs, kinds, pbs, ctxs, sims, losses = zip(*batch, strict=True)
            for column, values in zip(
                columns,
                (
                    np.array(seqs, dtype=np.int64),
                    np.fromiter(map(_KIND_CODE.__getitem__, kinds), np.int64, len(kinds)),
                    _codes(pbs, playbooks),
                    _codes(ctxs, contexts),
                    np.array(sims, dtype=np.float64),
                    np.array(losses, dtype=np.float64),
                ),
                strict=True,
            ):
                column.append(values)
    finally:
        cursor.close()
    seq, kind, playbook, context = (_joined(c, np.int64) for c in columns[:4])
    similarity, loss = (_joined(c, np.float64) for c in columns[4:])
    names = tuple(playbooks)
    none = playbooks.get("", -1)  # a vote on an abstention judged no playbook
    votes = VoteColumns(
        seq, kind, loss.astype(np.float64), np.where(playbook == none, -1, playbook), names
    )
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
