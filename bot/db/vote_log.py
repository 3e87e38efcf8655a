"""The live feedback log read as columns, for the monitor tick.

A million votes as ORM objects, or even as SQLAlchemy rows, cost more than all the tick's
arithmetic, and every Python object made for them is interpreter time taken from the
threads that record votes. So the votes are read as numbers only: seq, id, the stored
64-bit code of their scenario (``bot.db.scenario_code``), similarity and loss. The
strings of each distinct scenario (kind, playbook, context) are then read from one vote
that carries its code, and checked against it:

* PostgreSQL builds the columns itself: one row of binary arrays (``array_send``), which
  numpy reads in place and orders; the scenarios' strings come in the same repeatable-read
  snapshot.
* SQLite has no such output: the numbers come from the driver's cursor in batches, within
  the read transaction the connection is in.

Votes stored without a code (a replica still on revision 0004), or a scenario whose strings
do not match its code, send the whole read the slower way: every vote's strings.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from bot.db.engine import table_of
from bot.db.models import Feedback
from bot.db.scenario_code import scenario_hash
from core.feedback import signal
from core.log_columns import KINDS, VoteColumns
from core.model import LabelledLog, first_seen

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

_LIVE = _VOTES.c.withdrawn.is_(False)
# Unordered: the database sorts nothing, numpy orders the rows by (seq, id).
_NUMBERS = sa.select(
    _VOTES.c.seq,
    _VOTES.c.id,
    sa.func.coalesce(_VOTES.c.scenario_hash, 0),
    _VOTES.c.similarity,
    _VOTES.c.loss,
).where(_LIVE)
_NUMBER = np.dtype(
    [("seq", "i8"), ("id", "i8"), ("code", "i8"), ("similarity", "f8"), ("loss", "f8")]
)
# One row of five arrays in PostgreSQL's binary format: one aggregate node feeds every
# array the same rows in the same order.
_PG_NUMBERS = sa.text(
    "SELECT array_send(array_agg(seq::int8)), array_send(array_agg(id::int8)),"
    " array_send(array_agg(coalesce(scenario_hash, 0)::int8)),"
    " array_send(array_agg(similarity::float8)), array_send(array_agg(loss::float8))"
    " FROM feedback WHERE NOT withdrawn"
)
_STRINGS = sa.select(_VOTES.c.id, _VOTES.c.kind, _VOTES.c.playbook_id, _VOTES.c.context_json).where(
    _VOTES.c.id.in_(sa.bindparam("ids", expanding=True))
)
_LOOKUP_BATCH = 5_000  # ids per IN list (SQLite allows 32,766 parameters)

_SEP = "\x1f"  # the string path's key: JSON escapes it, kinds and playbook ids do not carry it
_ROWS = (
    sa.select(
        _VOTES.c.seq,
        _VOTES.c.kind + _SEP + _VOTES.c.playbook_id + _SEP + _VOTES.c.context_json,
        _VOTES.c.similarity,
        _VOTES.c.loss,
    )
    .where(_LIVE)
    .order_by(_VOTES.c.seq, _VOTES.c.id)
)
_ROW = np.dtype([("seq", "i8"), ("key", "O"), ("similarity", "f8"), ("loss", "f8")])


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


def _numbers(conn: Connection) -> npt.NDArray[Any]:
    """Every live vote's numbers, in no particular order (a structured array)."""
    if conn.dialect.name == "postgresql":
        # One backend for the tick's read: parallel workers would take the cores the
        # backends recording votes need (for this transaction only).
        conn.exec_driver_sql("SET LOCAL max_parallel_workers_per_gather = 0")
        # A binary cursor: the arrays arrive as their bytes, not as twice as much hex text.
        with conn.connection.dbapi_connection.cursor(binary=True) as cursor:  # type: ignore[union-attr]
            cursor.execute(_PG_NUMBERS.text)
            arrays = cursor.fetchone()
        if arrays is None or arrays[0] is None:  # no live vote
            return np.zeros(0, dtype=_NUMBER)
        kinds = ("i8", "i8", "i8", "f8", "f8")
        columns = [_pg_array(bytes(a), k) for a, k in zip(arrays, kinds, strict=True)]
        out = np.empty(len(columns[0]), dtype=_NUMBER)
        for name, column in zip(_NUMBER.names or (), columns, strict=True):
            out[name] = column
        return out
    sql = str(_NUMBERS.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    parts = []
    try:
        cursor.execute(sql)
        while batch := cursor.fetchmany(_BATCH):
            parts.append(np.array(batch, dtype=_NUMBER))
    finally:
        cursor.close()
    return np.concatenate(parts) if parts else np.zeros(0, dtype=_NUMBER)


def _scenarios_of(
    conn: Connection, ids: Sequence[int], codes: Sequence[int]
) -> list[Scenario] | None:
    """The strings of the scenario each vote ``ids[i]`` carries, or None when one does not
    match its code ``codes[i]`` (the vote was replaced since, or it was stored by hand)."""
    found: dict[int, Scenario] = {}
    for start in range(0, len(ids), _LOOKUP_BATCH):
        part = list(ids[start : start + _LOOKUP_BATCH])
        for vote_id, kind, playbook_id, context_json in conn.execute(_STRINGS, {"ids": part}):
            found[int(vote_id)] = (str(kind), str(playbook_id), str(context_json))
    scenarios = []
    for vote_id, code in zip(ids, codes, strict=True):
        scenario = found.get(int(vote_id))
        if scenario is None or scenario_hash(*scenario) != code:
            return None
        scenarios.append(scenario)
    return scenarios


def _coded_rows(conn: Connection) -> tuple[_Rows, list[Scenario]] | None:
    """The live log by the stored codes; None when it must be read by its strings."""
    numbers = _numbers(conn)
    if (numbers["code"] == 0).any():
        return None
    numbers = numbers[np.lexsort((numbers["id"], numbers["seq"]))]
    distinct, inverse = np.unique(numbers["code"], return_inverse=True)
    scenario, heads = first_seen(inverse.ravel().astype(np.int64))
    scenarios = _scenarios_of(
        conn, numbers["id"][heads].tolist(), distinct[inverse.ravel()[heads]].tolist()
    )
    if scenarios is None:
        return None
    return (
        numbers["seq"].astype(np.int64),
        scenario,
        numbers["similarity"].astype(np.float64),
        numbers["loss"].astype(np.float64),
    ), scenarios


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
    (seq, scenario, similarity, loss), scenarios = _coded_rows(conn) or _cursor_rows(conn)
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
