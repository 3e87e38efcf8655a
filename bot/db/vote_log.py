"""The live feedback log read as columns, for the monitor tick.

A million votes as ORM objects, or even as SQLAlchemy rows, cost more than all the tick's
arithmetic, and every Python object made for them is interpreter time taken from the
threads that record votes. So a vote's kind, playbook and context travel as one code into
a table of the few thousand distinct ones, and the rest as numbers:

* PostgreSQL builds the columns itself: one row holding one binary array of
  (seq, code, similarity, loss) records, ordered by seq, which numpy reads in place.
* SQLite has no such output: the rows come from the driver's cursor in batches, the
  three strings joined into one column (its cost is per row and column).
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
_SQLITE_VOTES = (
    sa.select(
        _VOTES.c.seq,
        _VOTES.c.kind + _SEP + _VOTES.c.playbook_id + _SEP + _VOTES.c.context_json,
        _VOTES.c.similarity,
        _VOTES.c.loss,
    )
    .where(_VOTES.c.withdrawn.is_(False))
    .order_by(_VOTES.c.seq, _VOTES.c.id)
)
_SQLITE_ROW = np.dtype([("seq", "i8"), ("key", "O"), ("similarity", "f8"), ("loss", "f8")])

_PG_SCENARIOS = sa.text(
    "SELECT DISTINCT kind, playbook_id, context_json FROM feedback WHERE NOT withdrawn"
)
# array_send: the array in PostgreSQL's binary format, each record a fixed 72 bytes.
_PG_VOTES = sa.text(
    "SELECT array_send(array_agg(ROW(f.seq::int8, s.code - 1, f.similarity::float8,"
    " f.loss::float8) ORDER BY f.seq, f.id))"
    " FROM feedback f JOIN unnest(CAST(:kinds AS text[]), CAST(:playbooks AS text[]),"
    " CAST(:contexts AS text[])) WITH ORDINALITY AS s(kind, playbook_id, context_json, code)"
    " ON s.kind = f.kind AND s.playbook_id = f.playbook_id AND s.context_json = f.context_json"
    " WHERE NOT f.withdrawn"
)


def _pg_record() -> np.dtype[Any]:
    """One element of the record array: its length, its field count, then per field its
    type, its length and its 8 bytes (no field is NULL)."""
    fields: list[tuple[str, str]] = [("len", ">i4"), ("count", ">i4")]
    for name, kind in (("seq", ">i8"), ("code", ">i8"), ("similarity", ">f8"), ("loss", ">f8")):
        fields += [(f"{name}_oid", ">i4"), (f"{name}_len", ">i4"), (name, kind)]
    return np.dtype(fields)


def _postgres_rows(conn: Connection) -> tuple[_Rows, list[Scenario]]:
    scenarios: list[Scenario] = [(k, p, c) for k, p, c in conn.execute(_PG_SCENARIOS)]
    params = {
        "kinds": [s[0] for s in scenarios],
        "playbooks": [s[1] for s in scenarios],
        "contexts": [s[2] for s in scenarios],
    }
    data = conn.execute(_PG_VOTES, params).scalar_one()
    if data is None:  # no live vote
        empty = np.zeros(0, dtype=np.int64)
        return (empty, empty, np.zeros(0), np.zeros(0)), scenarios
    buf = bytes(data)
    dims = int(np.frombuffer(buf, ">i4", 1)[0])
    assert dims == 1, f"array_send: {dims} dimensions"
    count = int(np.frombuffer(buf, ">i4", 1, 12)[0])
    rec = np.frombuffer(buf, _pg_record(), count, 20)
    assert (rec["count"] == 4).all() and (rec["loss_len"] == 8).all(), "a NULL in the log"
    return (
        rec["seq"].astype(np.int64),
        rec["code"].astype(np.int64),
        rec["similarity"].astype(np.float64),
        rec["loss"].astype(np.float64),
    ), scenarios


class _Codes(dict[str, int]):
    """Dictionary encoding: each new string gets the next code."""

    def __missing__(self, key: str) -> int:
        code = self[key] = len(self)
        return code


def _sqlite_rows(conn: Connection) -> tuple[_Rows, list[Scenario]]:
    sql = str(_SQLITE_VOTES.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    keys = _Codes()
    parts: list[tuple[npt.NDArray[Any], npt.NDArray[np.int64]]] = []
    try:
        cursor.execute(sql)
        while batch := cursor.fetchmany(_BATCH):
            rows = np.array(batch, dtype=_SQLITE_ROW)
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
    reader = _postgres_rows if conn.dialect.name == "postgresql" else _sqlite_rows
    (seq, scenario, similarity, loss), scenarios = reader(conn)
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
