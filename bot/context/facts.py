"""What a context provider reads (the incident) and returns (observed facts)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from core.scenario import Provenance


@dataclass(frozen=True, slots=True)
class Observed:
    """One fact a source reported: the value, who said it and when it was true.

    ``observed_at`` is None for facts as old as the incident (its text, its labels)."""

    value: object
    source: str
    observed_at: dt.datetime | None = None
    detail: str = ""

    def provenance(self, now: dt.datetime) -> Provenance:
        age = None
        if self.observed_at is not None:
            age = max(0.0, (now - self.observed_at).total_seconds())
        return Provenance(self.source, age, self.detail)


@dataclass(frozen=True, slots=True)
class IncidentRef:
    """What providers may look at: the names extraction found, the alert's labels and the
    time of the incident. No provider sees the database row or the Slack payload."""

    text: str
    now: dt.datetime
    device: str = ""
    interface: str = ""
    component: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)


class ContextProvider(Protocol):
    """A source of facts. ``facts`` may block on I/O (it runs in a worker thread with a
    deadline); it returns only what it knows and raises on failure."""

    @property
    def name(self) -> str: ...

    def facts(self, incident: IncidentRef, timeout: float) -> Mapping[str, Observed]: ...


class MaintenanceCalendar(Protocol):
    """A maintenance-window source: whether a moment is inside a window, and when the next
    window opens (UTC), both None when the source cannot say."""

    def in_window(self, at: dt.datetime) -> bool | None: ...

    def next_opening(self, after: dt.datetime) -> dt.datetime | None: ...
