"""The live feedback log read as columns, for the monitor tick.

A million votes as ORM objects, or even as SQLAlchemy rows, cost more than all the tick's
arithmetic, and every Python object made for them is interpreter time taken from the
threads that record votes. So a vote's kind, playbook and context travel as one code into
a table of the few thousand distinct ones, and the rest as numbers:

* PostgreSQL builds the columns itself: one row of binary arrays (seq, id, a 64-bit hash
  of the scenario, similarity, loss), which numpy reads in place and orders; the distinct
  scenarios with their hashes come first, in the same repeatable-read snapshot.
* SQLite has no such output: the rows come from the driver's cursor in batches, the
  three strings joined into one column (the driver's cost is per row and column).
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

Scenario = tuple[str, str, str]  # kind, playbook id ("" for none), context JSON
_Rows = tuple[
    npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]
]

_SEP = "\x1f"  # unit separator: JSON escapes it, kinds and playbook ids do not carry it
_ROWS = (
    sa.select(
        _VOTES.c.seq,
        _VOTES.c.kind + _SEP + _VOTES.c.playbook_id + _SEP + _VOTES.c.context_json,
        _VOTES.c.similarity,
        _VOTES.c.loss,
    )
    .where(_VOTES.c.withdrawn.is_(False))
    .order_by(_VOTES.c.seq, _VOTES.c.id)
)
_ROW = np.dtype([("seq", "i8"), ("key", "O"), ("similarity", "f8"), ("loss", "f8")])

_KEY = "kind || chr(31) || playbook_id || chr(31) || context_json"
# Each distinct (kind, playbook, context) with a 64-bit hash of it: the code the votes carry.
_PG_SCENARIOS = sa.text(
    f"SELECT hashtextextended({_KEY}, 0), kind, playbook_id, context_json FROM feedback"
    " WHERE NOT withdrawn GROUP BY kind, playbook_id, context_json"
)
# One row of five arrays in PostgreSQL's binary format (array_send), which numpy reads in
# place. Unordered, so the server sorts nothing: one aggregate node feeds every array the
# same rows in the same order, and numpy orders them by (seq, id).
_PG_VOTES = sa.text(
    "SELECT array_send(array_agg(seq::int8)), array_send(array_agg(id::int8)),"
    f" array_send(array_agg(hashtextextended({_KEY}, 0))),"
    " array_send(array_agg(similarity::float8)), array_send(array_agg(loss::float8))"
    " FROM feedback WHERE NOT withdrawn"
)


def _pg_array(data: bytes, kind: str) -> npt.NDArray[Any]:
    """A one-dimensional array of 8-byte values without NULLs, from array_send: a 20-byte
    header (dimensions, NULL flag, element type, length, lower bound), then each value
    after its 4-byte length."""
    dims, has_null = (int(x) for x in np.frombuffer(data, ">i4", 2))
    if dims == 0:
        return np.zeros(0, dtype=kind)
    if dims != 1 or has_null:
        raise RuntimeError(f"array_send: {dims} dimensions, NULLs: {bool(has_null)}")
    count = int(np.frombuffer(data, ">i4", 1, 12)[0])
    values = np.frombuffer(data, np.dtype([("len", ">i4"), ("value", ">" + kind)]), count, 20)
    if not (values["len"] == 8).all():
        raise RuntimeError("array_send: a value is not 8 bytes long")
    return values["value"].astype(kind)


def _postgres_rows(conn: Connection) -> tuple[_Rows, list[Scenario]] | None:
    """None when two scenarios share a hash (about 1 in 10^11 for 10,000 of them): the
    caller then reads rows instead."""
    # One backend for the tick's read: parallel workers would take the cores the backends
    # recording votes need (for this transaction only).
    conn.exec_driver_sql("SET LOCAL max_parallel_workers_per_gather = 0")
    hashed = conn.execute(_PG_SCENARIOS).all()
    hashes = np.array([h for h, *_ in hashed], dtype=np.int64)
    order = np.argsort(hashes, kind="stable")
    if len(np.unique(hashes)) != len(hashes):
        return None
    scenarios: list[Scenario] = [(k, p, c) for _, k, p, c in hashed]
    # A binary cursor: the arrays arrive as their bytes, not as twice as much hex text.
    with conn.connection.dbapi_connection.cursor(binary=True) as cursor:  # type: ignore[union-attr]
        cursor.execute(_PG_VOTES.text)
        arrays = cursor.fetchone()
    if arrays is None or arrays[0] is None:  # no live vote
        empty = np.zeros(0, dtype=np.int64)
        return (empty, empty, np.zeros(0), np.zeros(0)), scenarios
    seq, ids, keys = (_pg_array(bytes(a), "i8") for a in arrays[:3])
    similarity, loss = (_pg_array(bytes(a), "f8") for a in arrays[3:])
    by_seq = np.lexsort((ids, seq))
    sorted_hashes = hashes[order]
    at = np.searchsorted(sorted_hashes, keys[by_seq])
    if not (sorted_hashes[np.minimum(at, len(hashes) - 1)] == keys[by_seq]).all():
        raise RuntimeError("a vote's scenario is not in the snapshot's list (not repeatable read?)")
    return (seq[by_seq], order[at], similarity[by_seq], loss[by_seq]), scenarios


class _Codes(dict[str, int]):
    """Dictionary encoding: each new string gets the next code."""

    def __missing__(self, key: str) -> int:
        code = self[key] = len(self)
        return code


def _cursor_rows(conn: Connection) -> tuple[_Rows, list[Scenario]]:
    sql = str(_ROWS.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    raw: Any = conn.connection.dbapi_connection
    postgres = conn.dialect.name == "postgresql"
    cursor = raw.cursor(name="npo_live_votes") if postgres else raw.cursor()
    keys = _Codes()
    parts: list[tuple[npt.NDArray[Any], npt.NDArray[np.int64]]] = []
    try:
        if postgres:
            cursor.itersize = _BATCH
        cursor.execute(sql)
        while batch := cursor.fetchmany(_BATCH):
            rows = np.array(batch, dtype=_ROW)
            codes = np.fromiter(map(keys.__getitem__, rows["key"]), np.int64, len(rows))
            parts.append((rows[["seq", "similarity", "loss"]], codes))
    finally:
        cursor.close()
    scenarios: list[Scenario] = []
    for key in keys:
        kind, rest = key.split(_SEP, 1)
        playbook_id, context_json = rest.rsplit(_SEP, 1)
        scenarios.append((kind, playbook_id, context_json))
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return (empty, empty, np.zeros(0), np.zeros(0)), scenarios
    numbers = np.concatenate([p[0] for p in parts])
    return (
        numbers["seq"].astype(np.int64),
        np.concatenate([p[1] for p in parts]),
        numbers["similarity"].astype(np.float64),
        numbers["loss"].astype(np.float64),
    ), scenarios


def read_live_log(conn: Connection) -> tuple[VoteColumns, LabelledLog]:
    """Every live vote (for the monitor) and the labelled ones that judged a playbook (for
    the retrain model), ordered by seq, in the transaction ``conn`` is in (PostgreSQL: it
    must be repeatable read, the log is read in two statements)."""
    read = _postgres_rows(conn) if conn.dialect.name == "postgresql" else None
    (seq, scenario, similarity, loss), scenarios = read or _cursor_rows(conn)
    playbooks, contexts = _Codes(), _Codes()
    table = np.array(
        [(_KIND_CODE[k], playbooks[p], contexts[c]) for k, p, c in scenarios], dtype=np.int64
    ).reshape(-1, 3)
    kind, playbook, context = (table[scenario, i] for i in range(3))
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
