"""Providers run concurrently within one budget; slow or failing ones leave facts unknown."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

from bot.context.config import ContextConfigError, build_gatherer, load_config
from bot.context.facts import IncidentRef, Observed
from bot.context.gather import ContextGatherer
from bot.context.labels import LabelsProvider

NOW = dt.datetime(2026, 12, 1, 3, 0, tzinfo=dt.UTC)


class _Fixed:
    def __init__(self, name: str, facts: Mapping[str, Observed], delay: float = 0.0) -> None:
        self.name, self._facts, self.delay = name, facts, delay

    def facts(self, incident: IncidentRef, timeout: float) -> Mapping[str, Observed]:
        time.sleep(self.delay)
        return self._facts


class _Broken:
    name = "broken"

    def facts(self, incident: IncidentRef, timeout: float) -> Mapping[str, Observed]:
        raise ConnectionError("connection refused")


def test_slow_and_failing_providers_are_left_behind_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fast = _Fixed("fast", {"redundancy": Observed(2, "fast")})
    slow = _Fixed("slow", {"utilisation": Observed(0.5, "slow")}, delay=1.0)
    gatherer = ContextGatherer([fast, slow, _Broken()], budget_seconds=0.2)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        got = gatherer.gather(IncidentRef("x", NOW))
    assert time.monotonic() - started < 0.5
    assert set(got.facts) == {"redundancy"}
    assert set(got.failed) == {"slow", "broken"}
    assert "200 ms budget" in got.failed["slow"]
    assert "connection refused" in got.failed["broken"]
    assert len([r for r in caplog.records if "stay unknown" in r.getMessage()]) == 2


def test_earlier_providers_win_a_shared_fact() -> None:
    first = _Fixed("a", {"redundancy": Observed(3, "a")})
    second = _Fixed("b", {"redundancy": Observed(1, "b")})
    got = ContextGatherer([first, second]).gather(IncidentRef("x", NOW))
    assert got.facts["redundancy"].source == "a"


def test_labels_and_message_pairs_are_facts_with_their_source() -> None:
    ref = IncidentRef(
        "xe-1/0/3 flapping redundancy=2 maintenance_window=yes utilisation=40%",
        NOW,
        labels={"severity": "warning", "redundancy": "1"},
    )
    facts = LabelsProvider().facts(ref, 0.1)
    assert (facts["redundancy"].value, facts["redundancy"].source) == (1, "alert label")
    assert facts["severity"].value == "medium"
    assert (facts["maintenance_window"].value, facts["maintenance_window"].source) == (
        True,
        "message",
    )
    assert facts["utilisation"].value == pytest.approx(0.4)
    bad = LabelsProvider().facts(IncidentRef("redundancy=lots utilisation=3", NOW), 0.1)
    assert bad == {}


def test_configuration_errors_name_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "context.yml"
    path.write_text("prometheus:\n  url: http://p:9090\n  components:\n    link: {speed: up}\n")
    with pytest.raises(ContextConfigError, match=r"context.yml: prometheus.components.*speed"):
        load_config(path)
    path.write_text("budget_ms: 300\nmaintenance:\n  calendar: maint.ics\n")
    config = load_config(path)
    assert config.maintenance is not None and config.maintenance.calendar == tmp_path / "maint.ics"
    assert len(build_gatherer(config).providers) == 2  # labels + calendar
