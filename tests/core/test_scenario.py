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


# Keys computed by the code before unknown existed: stored scores are keyed on them.
@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"component": "link", "fault_type": "crc_errors"}, "802623f9987ddd29"),
        (
            {
                "component": "link",
                "fault_type": "flapping",
                "severity": "high",
                "redundancy": 2,
                "maintenance_window": True,
                "hour_of_day": 3,
            },
            "a934d41c0310ca1a",
        ),
        (
            {
                "component": "server",
                "fault_type": "disk_full",
                "severity": "critical",
                "redundancy": 0,
                "hour_of_day": 20,
            },
            "391624976d624d58",
        ),
        ({"component": "unknown", "fault_type": "unknown"}, "ec185077a3fb90d5"),
    ],
)
def test_keys_of_fully_known_scenarios_are_pinned(kwargs: dict[str, object], key: str) -> None:
    assert Scenario(**kwargs).context_key == key  # type: ignore[arg-type]


def test_unknown_is_its_own_level() -> None:
    known = Scenario("link", "flapping", redundancy=1, maintenance_window=False)
    unknown = Scenario("link", "flapping", redundancy=None, maintenance_window=None, severity=None)
    assert unknown.context()["redundancy"] == "unknown"
    assert unknown.context()["maintenance_window"] == "unknown"
    assert unknown.context()["severity"] == "unknown"
    assert len({known.context_key, unknown.context_key}) == 2
    assert unknown.features()["redundancy"] is None
    assert unknown.unknown() == (
        "severity",
        "redundancy",
        "maintenance_window",
        "device",
        "recent_faults",
    )
    policy = unknown.as_policy_input()
    assert policy["redundancy"] is None and "redundancy" in policy["unknown"]  # type: ignore[operator]


def test_facts_show_their_source_and_age_or_unknown() -> None:
    from core.scenario import Provenance

    s = Scenario(
        "link",
        "flapping",
        redundancy=2,
        maintenance_window=None,
        provenance=(("redundancy", Provenance("prometheus", 40.0)),),
    )
    texts = {f.name: f.text for f in s.facts()}
    assert texts["redundancy"] == "redundancy 2 — prometheus, 40 s ago"
    assert texts["maintenance_window"] == "maintenance window: unknown"
    assert s.source_of("redundancy") == Provenance("prometheus", 40.0)
    some = s.facts({"redundancy", "component"})  # a subset keeps the order of FACTS
    assert [f.name for f in some] == ["component", "redundancy"]
    assert [f.text for f in some] == [texts["component"], texts["redundancy"]]
    with pytest.raises(ScenarioError, match="provenance"):
        Scenario("link", "x", provenance=(("colour", Provenance("me")),))


def test_the_retrain_model_sees_unknown_as_its_own_level() -> None:
    from core.model import feature_names

    unknown = Scenario("link", "flapping", redundancy=None, maintenance_window=None)
    names = feature_names("link-flap-drain", unknown.context())
    assert "redundancy=unknown" in names and "maintenance_window=unknown" in names
    known = feature_names("link-flap-drain", Scenario("link", "flapping").context())
    assert "redundancy=unknown" not in known
