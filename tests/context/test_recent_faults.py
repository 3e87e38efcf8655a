"""Recent faults on the same device, counted from our own incidents table."""

from __future__ import annotations

import datetime as dt
import json

from sqlalchemy.engine import Engine
from sqlmodel import Session

from bot.context.facts import IncidentRef
from bot.context.recent import RecentFaultsProvider
from bot.db.models import Incident

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def _incident(device: str, hours_ago: float) -> Incident:
    return Incident(
        source="console",
        text=f"{device} down",
        scenario_json=json.dumps({"device": device, "component": "link"}),
        context_key="k",
        created_at=NOW - dt.timedelta(hours=hours_ago),
    )


def test_counts_only_this_device_within_the_window(engine: Engine) -> None:
    with Session(engine) as session:
        for device, hours in [("leaf-7", 1), ("leaf-7", 5), ("leaf-7", 30), ("leaf-70", 1)]:
            session.add(_incident(device, hours))
        session.add(_incident('we%ird_"dev', 1))
        session.commit()
    provider = RecentFaultsProvider(engine, hours=24)
    facts = provider.facts(IncidentRef("", NOW, device="leaf-7"), 1.0)
    assert facts["recent_faults"].value == 2
    assert facts["recent_faults"].source == "incident store"
    odd = provider.facts(IncidentRef("", NOW, device='we%ird_"dev'), 1.0)
    assert odd["recent_faults"].value == 1
    assert provider.facts(IncidentRef("", NOW), 1.0) == {}
