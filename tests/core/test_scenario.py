from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.scenario import Scenario, ScenarioError, hour_bucket, redundancy_bucket


def test_context_key_ignores_what_the_context_does_not_discretise() -> None:
    a = Scenario("link", "crc_errors", hour_of_day=1, redundancy=3, utilisation=0.2, text="a")
    b = Scenario("Link ", "CRC_errors", hour_of_day=5, redundancy=7, utilisation=0.9, text="b")
    assert a.context_key == b.context_key
    assert a.context() == b.context()


@pytest.mark.parametrize(
    "change",
    [
        {"component": "switch"},
        {"fault_type": "flapping"},
        {"severity": "critical"},
        {"redundancy": 0},
        {"maintenance_window": True},
        {"hour_of_day": 13},
    ],
)
def test_each_context_feature_changes_the_key(change: dict[str, object]) -> None:
    base = {
        "component": "link",
        "fault_type": "crc_errors",
        "severity": "high",
        "redundancy": 2,
        "maintenance_window": False,
        "hour_of_day": 2,
    }
    assert Scenario(**base).context_key != Scenario(**{**base, **change}).context_key  # type: ignore[arg-type]


def test_context_key_is_stable_across_processes() -> None:
    code = "from core.scenario import Scenario; print(Scenario('link','crc_errors').context_key)"
    keys = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": ""},
        ).stdout.strip()
        for seed in ("1", "2", "3")
    }
    assert keys == {Scenario("link", "crc_errors").context_key}


@given(st.integers(0, 23))
def test_hour_buckets_cover_the_day_in_order(hour: int) -> None:
    assert hour_bucket(hour) == ("night", "morning", "afternoon", "evening")[hour // 6]


@given(st.integers(0, 100))
def test_redundancy_bucket(r: int) -> None:
    assert redundancy_bucket(r) == ("2+" if r >= 2 else str(r))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"component": " "}, "component"),
        ({"fault_type": ""}, "fault_type"),
        ({"severity": "urgent"}, "severity"),
        ({"redundancy": -1}, "redundancy"),
        ({"utilisation": 1.5}, "utilisation"),
        ({"hour_of_day": 24}, "hour_of_day"),
    ],
)
def test_invalid_scenarios_name_the_field(kwargs: dict[str, object], field: str) -> None:
    args: dict[str, object] = {"component": "link", "fault_type": "down", **kwargs}
    with pytest.raises(ScenarioError, match=f"^{field}:"):
        Scenario(**args)  # type: ignore[arg-type]
