"""``npo audit export``: the audit log as JSON lines or CSV, for people and other tools."""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Iterator
from typing import Protocol, TextIO

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bot.db.models import AuditEntry

FIELDS = ("at", "actor", "action", "subject", "detail")


def _rows(engine: Engine, since: dt.datetime) -> Iterator[dict[str, str]]:
    with Session(engine) as session:
        entries = session.exec(
            select(AuditEntry)
            .where(col(AuditEntry.created_at) >= since)
            .order_by(col(AuditEntry.created_at), col(AuditEntry.id))
        ).all()
    for e in entries:
        yield as_row(e)


class Entry(Protocol):
    """An audit row: the ORM object, or a Core row of the table (bulk reads)."""

    @property
    def created_at(self) -> dt.datetime: ...
    @property
    def actor(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def subject(self) -> str: ...
    @property
    def detail_json(self) -> str: ...


def as_row(e: Entry) -> dict[str, str]:
    """One entry as exported (also the format of the retention archive,
    bot/monitoring/retention.py)."""
    at = e.created_at if e.created_at.tzinfo else e.created_at.replace(tzinfo=dt.UTC)
    return {
        "at": at.isoformat(),
        "actor": e.actor,
        "action": e.action,
        "subject": e.subject,
        "detail": e.detail_json,
    }


def jsonl_line(row: dict[str, str]) -> str:
    return json.dumps({**row, "detail": json.loads(row["detail"])}) + "\n"


def export(engine: Engine, since: dt.datetime, fmt: str, out: TextIO) -> int:
    count = 0
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=FIELDS)
        writer.writeheader()
        for row in _rows(engine, since):
            writer.writerow(row)
            count += 1
    elif fmt == "jsonl":
        for row in _rows(engine, since):
            out.write(jsonl_line(row))
            count += 1
    else:
        raise ValueError(f"--format: {fmt!r} is not jsonl or csv")
    return count
