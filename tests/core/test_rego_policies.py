"""The bundled policies, evaluated by the real regopy interpreter."""

from __future__ import annotations

import pytest

from core.policy import Action, MemoisedEngine, PolicyError, Verdict
from core.rego import RegoPolicyEngine
from core.scenario import Scenario
from tests.fakes import ScriptedSPE


def _scenario(**kwargs: object) -> Scenario:
    base: dict[str, object] = {
        "component": "link",
        "fault_type": "crc_errors",
        "severity": "high",
        "redundancy": 2,
        "maintenance_window": True,
        "device": "leaf-1:eth1",
    }
    return Scenario(**{**base, **kwargs})  # type: ignore[arg-type]


def test_policies_are_discovered(rego_engine: RegoPolicyEngine) -> None:
    assert rego_engine.policies == (
        "blast_radius",
        "change_conflict",
        "maintenance_window",
        "min_redundancy",
    )


def test_a_safe_change_is_allowed(rego_engine: RegoPolicyEngine) -> None:
    verdict = rego_engine.evaluate(_scenario(), Action("drain_link", "leaf-1:eth1"))
    assert verdict.verdict is Verdict.ALLOW
    assert verdict.rules == ()
    assert verdict.summary.startswith("Compliant: 4 policies")


@pytest.mark.parametrize(
    ("redundancy", "expected"),
    [(0, Verdict.DENY), (1, Verdict.NEEDS_APPROVAL), (2, Verdict.ALLOW)],
)
def test_minimum_redundancy_before_draining(
    rego_engine: RegoPolicyEngine, redundancy: int, expected: Verdict
) -> None:
    verdict = rego_engine.evaluate(_scenario(redundancy=redundancy), Action("drain_link"))
    assert verdict.verdict is expected
    if expected is not Verdict.ALLOW:
        assert [r.policy for r in verdict.rules] == ["min_redundancy"]
        assert "leaf-1:eth1" in verdict.rules[0].message


def test_read_only_actions_ignore_redundancy_and_windows(rego_engine: RegoPolicyEngine) -> None:
    scenario = _scenario(redundancy=0, maintenance_window=False, active_changes=("leaf-1:eth1",))
    verdict = rego_engine.evaluate(scenario, Action("collect_diagnostics", blast_radius=50))
    assert verdict.verdict is Verdict.ALLOW


@pytest.mark.parametrize(
    ("severity", "risk", "expected"),
    [
        ("high", "low", Verdict.DEFER),
        ("low", "medium", Verdict.DEFER),
        ("critical", "medium", Verdict.ALLOW),
        ("critical", "high", Verdict.NEEDS_APPROVAL),
    ],
)
def test_changes_outside_maintenance_windows(
    rego_engine: RegoPolicyEngine, severity: str, risk: str, expected: Verdict
) -> None:
    scenario = _scenario(maintenance_window=False, severity=severity)
    verdict = rego_engine.evaluate(scenario, Action("replace_optic", risk=risk))
    assert verdict.verdict is expected


@pytest.mark.parametrize(
    ("blast", "expected"), [(3, Verdict.ALLOW), (4, Verdict.NEEDS_APPROVAL), (11, Verdict.DENY)]
)
def test_blast_radius_limit(rego_engine: RegoPolicyEngine, blast: int, expected: Verdict) -> None:
    verdict = rego_engine.evaluate(_scenario(), Action("restart_service", blast_radius=blast))
    assert verdict.verdict is expected


def test_never_act_on_a_device_already_being_changed(rego_engine: RegoPolicyEngine) -> None:
    busy = _scenario(active_changes=("spine-2",))
    assert rego_engine.evaluate(busy, Action("reboot_device", "spine-2")).verdict is Verdict.DENY
    assert rego_engine.evaluate(busy, Action("reboot_device", "spine-3")).verdict is Verdict.ALLOW
    # the scenario's own device counts when the action names no target
    own = _scenario(device="spine-2", active_changes=("spine-2",))
    verdict = rego_engine.evaluate(own, Action("restart_service"))
    assert verdict.verdict is Verdict.DENY
    assert verdict.rules[0].policy == "change_conflict"


def test_the_strictest_verdict_wins_and_every_rule_is_listed(rego_engine: RegoPolicyEngine) -> None:
    scenario = _scenario(redundancy=1, maintenance_window=False, severity="medium")
    verdict = rego_engine.evaluate(scenario, Action("drain_device", blast_radius=5))
    assert verdict.verdict is Verdict.DEFER
    assert [r.verdict for r in verdict.rules] == [
        Verdict.DEFER,
        Verdict.NEEDS_APPROVAL,
        Verdict.NEEDS_APPROVAL,
    ]
    assert verdict.summary.startswith("Deferred.")


def test_syntax_errors_name_the_file_and_line(policy_modules: dict[str, str]) -> None:
    broken = (
        "package npo.policies.broken\n\nimport rego.v1\n\ndeny contains msg if {\n  msg := \n}\n"
    )
    with pytest.raises(PolicyError, match=r"^policies/broken\.rego:6:7: Invalid assignment"):
        RegoPolicyEngine({**policy_modules, "policies/broken.rego": broken})


def test_unknown_functions_name_the_file(policy_modules: dict[str, str]) -> None:
    broken = "package npo.policies.broken\n\nimport rego.v1\n\ndeny contains x if x := nosuch(1)\n"
    with pytest.raises(PolicyError, match=r"^policies/broken\.rego: .*nosuch"):
        RegoPolicyEngine({**policy_modules, "policies/broken.rego": broken})


def test_modules_without_policy_packages_are_rejected() -> None:
    with pytest.raises(PolicyError, match="no module defines"):
        RegoPolicyEngine({"x.rego": "package other\n\nx := 1\n"})
    with pytest.raises(PolicyError, match="at least one"):
        RegoPolicyEngine({})


def test_memoised_engine_asks_each_question_once() -> None:
    inner = ScriptedSPE({"drain_link": Verdict.DENY})
    engine = MemoisedEngine(inner)
    s = _scenario()
    for _ in range(3):
        assert engine.evaluate(s, Action("drain_link")).verdict is Verdict.DENY
        assert engine.evaluate(s, Action("replace_optic")).verdict is Verdict.ALLOW
    assert inner.calls == 2


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": ""}, "action.name"),
        ({"blast_radius": -1}, "action.blast_radius"),
        ({"risk": "extreme"}, "action.risk"),
    ],
)
def test_invalid_actions(kwargs: dict[str, object], field: str) -> None:
    args: dict[str, object] = {"name": "drain_link", **kwargs}
    with pytest.raises(ValueError, match=f"^{field}"):
        Action(**args)  # type: ignore[arg-type]


def test_unknown_redundancy_on_a_drain_needs_approval_saying_so(
    rego_engine: RegoPolicyEngine,
) -> None:
    verdict = rego_engine.evaluate(_scenario(redundancy=None), Action("drain_link"))
    assert verdict.verdict is Verdict.NEEDS_APPROVAL
    assert [r.policy for r in verdict.rules] == ["min_redundancy"]
    assert "redundancy unknown" in verdict.rules[0].message


def test_unknown_window_is_not_read_as_outside(rego_engine: RegoPolicyEngine) -> None:
    verdict = rego_engine.evaluate(
        _scenario(maintenance_window=None, severity="medium"), Action("drain_link")
    )
    assert verdict.verdict is Verdict.NEEDS_APPROVAL  # not DEFER, not ALLOW
    assert "maintenance window unknown" in verdict.rules[0].message
    outside = rego_engine.evaluate(
        _scenario(maintenance_window=False, severity="medium"), Action("drain_link")
    )
    assert outside.verdict is Verdict.DEFER


def test_known_facts_let_a_drain_through(rego_engine: RegoPolicyEngine) -> None:
    assert rego_engine.evaluate(_scenario(redundancy=2), Action("drain_link")).allowed
    critical = _scenario(redundancy=2, maintenance_window=None, severity="critical")
    assert rego_engine.evaluate(critical, Action("drain_link")).allowed


def test_verdicts_are_cached_by_policy_input(policy_modules: dict[str, str]) -> None:
    engine = RegoPolicyEngine(policy_modules)
    first = engine.evaluate(_scenario(redundancy=0), Action("drain_link"))
    again = engine.evaluate(_scenario(redundancy=0, text="other words"), Action("drain_link"))
    assert again is first  # the text is no policy input: the same question
    other = engine.evaluate(_scenario(redundancy=2), Action("drain_link"))
    assert other is not first and other.verdict is not first.verdict


def test_the_cache_keeps_only_the_newest_verdicts(policy_modules: dict[str, str]) -> None:
    engine = RegoPolicyEngine(policy_modules, cache_size=1)
    a = engine.evaluate(_scenario(redundancy=0), Action("drain_link"))
    engine.evaluate(_scenario(redundancy=2), Action("drain_link"))
    assert engine.evaluate(_scenario(redundancy=0), Action("drain_link")) is not a
    uncached = RegoPolicyEngine(policy_modules, cache_size=0)
    b = uncached.evaluate(_scenario(), Action("drain_link"))
    assert uncached.evaluate(_scenario(), Action("drain_link")) is not b
    with pytest.raises(ValueError, match=r"^cache_size"):
        RegoPolicyEngine(policy_modules, cache_size=-1)


def test_policies_that_read_the_clock_are_never_cached(policy_modules: dict[str, str]) -> None:
    clocked = (
        "package npo.policies.late_night\n\n"
        'defer contains "wait for the day shift" if {\n'
        "    time.now_ns() < 0\n"
        "}\n"
    )
    engine = RegoPolicyEngine({**policy_modules, "policies/late_night.rego": clocked})
    first = engine.evaluate(_scenario(), Action("drain_link"))
    assert engine.evaluate(_scenario(), Action("drain_link")) is not first
