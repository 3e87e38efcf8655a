"""Maintenance windows as facts: Alertmanager's ``time_intervals`` (read from its API) or an
iCalendar file. Both answer "is this moment inside a window" and "when does the next one
open" (what the deferral path asks), in UTC.

Both are global windows (every device): a team whose windows differ per site runs one
calendar per site and one bot configuration per site.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import yaml

from bot.context.facts import IncidentRef, MaintenanceCalendar, Observed

_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_MONTHS = (
    "january", "february", "march", "april", "may", "june", "july", "august",
    "september", "october", "november", "december",
)  # fmt: skip
_HORIZON_DAYS = 400  # how far ahead the next opening is looked for


class WindowConfigError(ValueError):
    """A time interval or calendar is malformed; the message names the interval and field."""


def _ranges(items: Sequence[object], names: Sequence[str], where: str) -> list[tuple[int, int]]:
    """``['monday:friday', 'sunday']`` or ``['1:5', '-1']`` → inclusive (lo, hi) pairs."""
    out = []
    for item in items:
        parts = str(item).lower().split(":")
        if len(parts) > 2:
            raise WindowConfigError(f"{where}: {item!r} is not a value or a lo:hi range")

        def one(p: str) -> int:
            p = p.strip()
            if p in names:
                return names.index(p) + 1
            try:
                return int(p)
            except ValueError:
                raise WindowConfigError(f"{where}: {p!r} is not understood") from None

        lo = one(parts[0])
        out.append((lo, one(parts[-1])))
    return out


def _minutes(value: object, where: str) -> int:
    try:
        hours, minutes = str(value).split(":")
        total = int(hours) * 60 + int(minutes)
    except ValueError:
        raise WindowConfigError(f"{where}: {value!r} is not HH:MM") from None
    if not 0 <= total <= 1440:
        raise WindowConfigError(f"{where}: {value!r} is not within 00:00..24:00")
    return total


@dataclass(frozen=True, slots=True)
class TimeInterval:
    """One entry of an Alertmanager ``time_intervals[].time_intervals`` list."""

    times: tuple[tuple[int, int], ...] = ()  # minutes of the day, [start, end)
    weekdays: tuple[tuple[int, int], ...] = ()
    days_of_month: tuple[tuple[int, int], ...] = ()
    months: tuple[tuple[int, int], ...] = ()
    years: tuple[tuple[int, int], ...] = ()
    location: str = "UTC"

    @classmethod
    def parse(cls, raw: Mapping[str, Any], where: str) -> TimeInterval:
        times = tuple(
            (_minutes(t.get("start_time"), f"{where}.times"), _minutes(t.get("end_time"), where))
            for t in raw.get("times") or ()
        )
        location = str(raw.get("location") or "UTC")
        try:
            ZoneInfo(location)
        except (KeyError, ValueError):
            raise WindowConfigError(f"{where}.location: {location!r} is not a time zone") from None
        return cls(
            times=times,
            weekdays=tuple(_ranges(raw.get("weekdays") or (), _WEEKDAYS, f"{where}.weekdays")),
            days_of_month=tuple(_ranges(raw.get("days_of_month") or (), (), f"{where}.days")),
            months=tuple(_ranges(raw.get("months") or (), _MONTHS, f"{where}.months")),
            years=tuple(_ranges(raw.get("years") or (), (), f"{where}.years")),
            location=location,
        )

    def _day_matches(self, day: dt.date) -> bool:
        def inside(value: int, ranges: tuple[tuple[int, int], ...]) -> bool:
            return not ranges or any(lo <= value <= hi for lo, hi in ranges)

        to_next_month = ((day.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - day).days
        from_end = -to_next_month  # -1: the month's last day (Alertmanager's negative days)
        days_ok = not self.days_of_month or any(
            lo <= (day.day if lo > 0 else from_end) <= hi for lo, hi in self.days_of_month
        )
        return (
            inside(day.isoweekday(), self.weekdays)
            and days_ok
            and inside(day.month, self.months)
            and inside(day.year, self.years)
        )

    def spans(self, day: dt.date) -> list[tuple[dt.datetime, dt.datetime]]:
        """This interval's [start, end) spans on a local calendar day, in UTC."""
        if not self._day_matches(day):
            return []
        zone = ZoneInfo(self.location)
        midnight = dt.datetime(day.year, day.month, day.day, tzinfo=zone)
        out = []
        for start, end in self.times or ((0, 1440),):
            a = (midnight + dt.timedelta(minutes=start)).astimezone(dt.UTC)
            b = (midnight + dt.timedelta(minutes=end)).astimezone(dt.UTC)
            out.append((a, b))
        return out


def _spans_around(
    intervals: Sequence[TimeInterval], start: dt.datetime, days: int
) -> list[tuple[dt.datetime, dt.datetime]]:
    spans = []
    for interval in intervals:
        local = start.astimezone(ZoneInfo(interval.location)).date()
        for offset in range(-1, days + 1):
            spans.extend(interval.spans(local + dt.timedelta(days=offset)))
    return sorted(spans)


def _merged(spans: list[tuple[dt.datetime, dt.datetime]]) -> list[tuple[dt.datetime, dt.datetime]]:
    """Touching or overlapping spans as one window (Tue 22:00–24:00 + Wed 00:00–02:00)."""
    out: list[tuple[dt.datetime, dt.datetime]] = []
    for a, b in spans:
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


class IntervalCalendar:
    """Named Alertmanager time intervals as a calendar (pure: no I/O)."""

    def __init__(self, intervals: Sequence[TimeInterval]) -> None:
        self.intervals = tuple(intervals)

    def in_window(self, at: dt.datetime) -> bool | None:
        return any(a <= at < b for a, b in _merged(_spans_around(self.intervals, at, 1)))

    def next_opening(self, after: dt.datetime) -> dt.datetime | None:
        spans = _merged(_spans_around(self.intervals, after, _HORIZON_DAYS))
        return next((a for a, _ in spans if a > after), None)


def intervals_from_config(config: Mapping[str, Any], names: Sequence[str]) -> list[TimeInterval]:
    """The entries of the named intervals of an Alertmanager configuration (both the
    current ``time_intervals`` and the older ``mute_time_intervals`` key)."""
    named: dict[str, list[TimeInterval]] = {}
    for key in ("time_intervals", "mute_time_intervals"):
        for i, entry in enumerate(config.get(key) or ()):
            name = str(entry.get("name", ""))
            where = f"{key}[{i}] ({name})"
            named[name] = [
                TimeInterval.parse(raw, f"{where}.time_intervals[{j}]")
                for j, raw in enumerate(entry.get("time_intervals") or ())
            ]
    missing = [n for n in names if n not in named]
    if missing:
        known = ", ".join(sorted(named)) or "none"
        raise WindowConfigError(f"time interval(s) {', '.join(missing)} not found (known: {known})")
    return [ti for n in names for ti in named[n]]


class AlertmanagerWindows:
    """Reads the named time intervals from Alertmanager's API (``/api/v2/status``, the
    loaded configuration), at most once per ``refresh_seconds``; a failed read keeps
    the last good intervals and their age, and raises when there are none."""

    source = "alertmanager"

    def __init__(
        self,
        url: str,
        names: Sequence[str],
        refresh_seconds: float = 300.0,
        client: httpx.Client | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.names = tuple(names)
        self.refresh_seconds = refresh_seconds
        self._client = client or httpx.Client(base_url=url.rstrip("/"))
        self._clock = clock
        self._lock = threading.Lock()
        self._loaded: tuple[float, dt.datetime, IntervalCalendar] | None = None

    def calendar(self, timeout: float = 2.0) -> tuple[IntervalCalendar, dt.datetime]:
        with self._lock:
            if self._loaded and self._clock() - self._loaded[0] < self.refresh_seconds:
                return self._loaded[2], self._loaded[1]
            try:
                response = self._client.get("/api/v2/status", timeout=timeout)
                response.raise_for_status()
                original = response.json()["config"]["original"]
                config = yaml.safe_load(original) or {}
                calendar = IntervalCalendar(intervals_from_config(config, self.names))
            except Exception:
                if self._loaded is None:
                    raise
                return self._loaded[2], self._loaded[1]
            self._loaded = (self._clock(), dt.datetime.now(dt.UTC), calendar)
            return calendar, self._loaded[1]

    @property
    def loaded_at(self) -> dt.datetime | None:
        return self._loaded[1] if self._loaded else None

    def in_window(self, at: dt.datetime) -> bool | None:
        return self.calendar()[0].in_window(at)

    def next_opening(self, after: dt.datetime) -> dt.datetime | None:
        return self.calendar()[0].next_opening(after)


class ICalendarWindows:
    """Windows from an iCalendar file: VEVENTs parsed by ``icalendar``, their
    RRULE/RDATE/EXDATE recurrences expanded by ``dateutil``; the file is re-read when it
    changes. Floating times are UTC."""

    source = "calendar"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._loaded: tuple[float, dt.datetime, list[_Event]] | None = None

    def events(self) -> tuple[list[_Event], dt.datetime]:
        """The events, and when the file was last found unchanged (its data is current as
        of then: the age a window fact shows)."""
        mtime = self.path.stat().st_mtime
        checked = dt.datetime.now(dt.UTC)
        with self._lock:
            if self._loaded is None or self._loaded[0] != mtime:
                self._loaded = (mtime, checked, _parse_ics(self.path))
            else:
                self._loaded = (mtime, checked, self._loaded[2])
            return self._loaded[2], self._loaded[1]

    @property
    def loaded_at(self) -> dt.datetime | None:
        return self._loaded[1] if self._loaded else None

    def in_window(self, at: dt.datetime) -> bool | None:
        return any(e.contains(at) for e in self.events()[0])

    def next_opening(self, after: dt.datetime) -> dt.datetime | None:
        starts = [s for e in self.events()[0] if (s := e.next_start(after)) is not None]
        return min(starts, default=None)


@dataclass(frozen=True, slots=True)
class _Event:
    start: dt.datetime
    duration: dt.timedelta
    rule: Any  # dateutil rruleset, or None for a single event

    def contains(self, at: dt.datetime) -> bool:
        if self.rule is None:
            return self.start <= at < self.start + self.duration
        last = self.rule.before(at, inc=True)
        return last is not None and at < last + self.duration

    def next_start(self, after: dt.datetime) -> dt.datetime | None:
        if self.rule is None:
            return self.start if self.start > after else None
        found = self.rule.after(after, inc=False)
        return None if found is None else found.astimezone(dt.UTC)


def _utc(value: dt.date | dt.datetime) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _parse_ics(path: Path) -> list[_Event]:
    import icalendar
    from dateutil.rrule import rruleset, rrulestr

    try:
        calendar = icalendar.Calendar.from_ical(path.read_bytes())
    except ValueError as exc:
        raise WindowConfigError(f"{path}: not an iCalendar file ({exc})") from None
    events = []
    for n, event in enumerate(calendar.walk("VEVENT")):
        where = f"{path}: VEVENT #{n + 1} ({event.get('SUMMARY', '')})"
        if event.get("DTSTART") is None:
            raise WindowConfigError(f"{where}: DTSTART missing")
        start = _utc(event.decoded("DTSTART"))
        if event.get("DTEND") is not None:
            duration = _utc(event.decoded("DTEND")) - start
        elif event.get("DURATION") is not None:
            duration = event.decoded("DURATION")
        else:
            duration = dt.timedelta(days=1)
        if duration <= dt.timedelta(0):
            raise WindowConfigError(f"{where}: ends before it starts")
        rule = None
        if event.get("RRULE") is not None or event.get("RDATE") is not None:
            rule = rruleset()
            if event.get("RRULE") is not None:
                raw = event["RRULE"].to_ical()
                text = raw.decode() if isinstance(raw, bytes) else str(raw)
                try:
                    rule.rrule(rrulestr(text, dtstart=start))
                except ValueError as exc:
                    raise WindowConfigError(f"{where}: RRULE {text!r}: {exc}") from None
            for prop, add in (("RDATE", rule.rdate), ("EXDATE", rule.exdate)):
                values = event.get(prop)
                for group in values if isinstance(values, list) else [values] if values else []:
                    for item in group.dts:
                        add(_utc(item.dt))
            if event.get("RRULE") is None:
                rule.rdate(start)
        events.append(_Event(start, duration, rule))
    return events


class WindowProvider:
    """A maintenance calendar as a context provider: the fact ``maintenance_window`` at the
    incident's time, as old as the calendar data it was read from."""

    def __init__(self, calendar: MaintenanceCalendar, source: str, name: str = "") -> None:
        self.calendar = calendar
        self.source = source
        self.name = name or source

    def facts(self, incident: IncidentRef, timeout: float) -> Mapping[str, Observed]:
        inside = self.calendar.in_window(incident.now)
        if inside is None:
            return {}
        loaded = getattr(self.calendar, "loaded_at", None)
        return {"maintenance_window": Observed(inside, self.source, loaded)}
