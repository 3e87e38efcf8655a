"""Maintenance windows from Alertmanager time intervals and from an iCalendar file."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml

from bot.context.windows import (
    ICalendarWindows,
    IntervalCalendar,
    WindowConfigError,
    intervals_from_config,
)

UTC = dt.UTC
AM_CONFIG = """
time_intervals:
  - name: weekly-maintenance
    time_intervals:
      - weekdays: ['tuesday']
        times: [{start_time: '02:00', end_time: '04:00'}]
  - name: month-end
    time_intervals:
      - days_of_month: ['-1']
        times: [{start_time: '22:00', end_time: '24:00'}]
        location: Europe/Berlin
"""


def _calendar(*names: str) -> IntervalCalendar:
    return IntervalCalendar(intervals_from_config(yaml.safe_load(AM_CONFIG), names))


def test_weekly_window_inside_outside_and_next_opening() -> None:
    cal = _calendar("weekly-maintenance")
    tuesday = dt.datetime(2026, 12, 1, 2, 30, tzinfo=UTC)  # a Tuesday
    assert cal.in_window(tuesday) is True
    assert cal.in_window(tuesday.replace(hour=4)) is False  # end is exclusive
    assert cal.next_opening(tuesday) == dt.datetime(2026, 12, 8, 2, 0, tzinfo=UTC)
    assert cal.next_opening(dt.datetime(2026, 12, 3, tzinfo=UTC)) == dt.datetime(
        2026, 12, 8, 2, 0, tzinfo=UTC
    )


def test_negative_days_of_month_in_a_time_zone() -> None:
    cal = _calendar("month-end")
    # 31 Dec 22:00 in Berlin is 21:00 UTC.
    assert cal.next_opening(dt.datetime(2026, 12, 2, tzinfo=UTC)) == dt.datetime(
        2026, 12, 31, 21, 0, tzinfo=UTC
    )
    assert cal.in_window(dt.datetime(2026, 12, 31, 22, 30, tzinfo=UTC)) is True
    assert cal.in_window(dt.datetime(2026, 12, 30, 22, 30, tzinfo=UTC)) is False


def test_unknown_interval_names_are_refused_with_the_known_ones() -> None:
    with pytest.raises(WindowConfigError, match=r"nightly.*known: month-end, weekly-maintenance"):
        _calendar("nightly")


ICS = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//npo//test//EN
BEGIN:VEVENT
UID:weekly@npo
DTSTART:20261103T020000Z
DTEND:20261103T040000Z
RRULE:FREQ=WEEKLY;BYDAY=TU
EXDATE:20261208T020000Z
SUMMARY:Fabric maintenance
END:VEVENT
BEGIN:VEVENT
UID:once@npo
DTSTART:20261205T100000Z
DURATION:PT1H
SUMMARY:One-off
END:VEVENT
END:VCALENDAR
"""


def test_icalendar_recurrence_exceptions_and_single_events(tmp_path: Path) -> None:
    path = tmp_path / "maintenance.ics"
    path.write_text(ICS)
    cal = ICalendarWindows(path)
    assert cal.in_window(dt.datetime(2026, 12, 1, 3, 0, tzinfo=UTC)) is True
    assert cal.in_window(dt.datetime(2026, 12, 1, 5, 0, tzinfo=UTC)) is False
    assert cal.in_window(dt.datetime(2026, 12, 8, 3, 0, tzinfo=UTC)) is False  # EXDATE
    after = dt.datetime(2026, 12, 1, 5, 0, tzinfo=UTC)
    assert cal.next_opening(after) == dt.datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
    assert cal.next_opening(dt.datetime(2026, 12, 6, tzinfo=UTC)) == dt.datetime(
        2026, 12, 15, 2, 0, tzinfo=UTC
    )
    assert cal.loaded_at is not None


def test_a_broken_calendar_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.ics"
    path.write_text("BEGIN:VCALENDAR\nBEGIN:VEVENT\nSUMMARY:x\nEND:VEVENT\nEND:VCALENDAR\n")
    with pytest.raises(WindowConfigError, match=r"bad\.ics.*DTSTART"):
        ICalendarWindows(path).in_window(dt.datetime(2026, 12, 1, tzinfo=UTC))
