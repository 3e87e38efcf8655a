"""Recent faults on the same device, from our own store: how many incidents named this
device in the last hours (a device that keeps failing is a different scenario)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bot.context.facts import IncidentRef, Observed
from bot.db.models import Incident

MAX_ROWS = 2000  # incidents read per query: a storm must not make this provider slow


class RecentFaultsProvider:
    name = "recent_faults"

    def __init__(self, engine: Engine, hours: float = 24.0) -> None:
        self.engine = engine
        self.hours = hours

    def facts(self, incident: IncidentRef, timeout: float) -> Mapping[str, Observed]:
        if not incident.device:
            return {}
        since = incident.now - dt.timedelta(hours=self.hours)
        quoted = json.dumps(incident.device)
        needle = quoted.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        with Session(self.engine) as session:
            rows = session.exec(
                select(Incident.scenario_json)
                .where(col(Incident.created_at) >= since)
                .where(col(Incident.scenario_json).like(f"%{needle}%", escape="\\"))
                .order_by(col(Incident.created_at).desc())
                .limit(MAX_ROWS)
            ).all()
        count = sum(1 for raw in rows if json.loads(raw).get("device") == incident.device)
        return {
            "recent_faults": Observed(
                count, "incident store", incident.now, f"last {self.hours:g} h"
            )
        }
