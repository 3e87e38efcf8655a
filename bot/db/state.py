"""Shared rows every writer touches: the meta-monitor's state document and the audit log."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlmodel import Session

from bot.db.models import AuditEntry, MonitorStateRow
from core.monitor import MetaMonitor, MonitorConfig, MonitorState, PageHinkley


def load_monitor(session: Session, config: MonitorConfig, lock: bool) -> MetaMonitor:
    """The monitor as stored (created on first use); ``lock`` row-locks it on PostgreSQL,
    which serialises every learning update behind it."""
    locking = lock and session.get_bind().dialect.name == "postgresql"
    row = session.get(MonitorStateRow, 1, with_for_update=locking)
    if row is None:
        fresh = MonitorState(ph=PageHinkley(config.ph_delta, config.ph_threshold))
        row = MonitorStateRow(id=1, state_json=json.dumps(fresh.to_dict()))
        session.add(row)
        session.flush()
    return MetaMonitor(config, MonitorState.from_dict(json.loads(row.state_json)))


def save_monitor(session: Session, monitor: MetaMonitor, now: dt.datetime) -> None:
    row = session.get(MonitorStateRow, 1) or MonitorStateRow(id=1, state_json="{}")
    row.state_json, row.updated_at = json.dumps(monitor.state.to_dict()), now
    session.add(row)


def audit(
    session: Session,
    actor: str,
    action: str,
    subject: str,
    detail: dict[str, Any],
    now: dt.datetime,
) -> None:
    session.add(
        AuditEntry(
            actor=actor,
            action=action,
            subject=subject,
            detail_json=json.dumps(detail),
            created_at=now,
        )
    )
