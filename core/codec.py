"""Decisions to and from plain JSON-able dicts, so a stored decision can be re-rendered."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Hashable
from dataclasses import asdict, fields, is_dataclass
from typing import Any, cast

from core.bandit import ArmChoice
from core.decision import (
    Candidate,
    Decision,
    Deferral,
    Explanation,
    Fact,
    Outcome,
    ThresholdJustification,
    VisualClue,
)
from core.policy import Action, PolicyVerdict, RuleHit, Verdict
from core.scenario import Provenance, Scenario


def _nan_to_none(value: float) -> float | None:
    return None if value != value else value


@functools.cache
def _field_names(cls: Hashable) -> tuple[str, ...] | None:
    """The field names of a dataclass type, None for any other type: looked up once per
    type, not on every value (``fields`` rebuilds its tuple on each call)."""
    if isinstance(cls, type) and is_dataclass(cls):
        return tuple(f.name for f in fields(cls))
    return None


def _plain(value: Any) -> Any:
    """``dataclasses.asdict`` without its deep copy of every leaf (a third of a stored
    recommendation's encoding): containers are rebuilt, leaves (numbers, strings, enums,
    datetimes) are shared, which is safe because the result is only serialised."""
    names = _field_names(cast(Hashable, type(value)))
    if names is not None:
        return {name: _plain(getattr(value, name)) for name in names}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    return value


def decision_to_dict(decision: Decision) -> dict[str, Any]:
    scenario = decision.scenario
    data = {
        f.name: _plain(getattr(decision, f.name)) for f in fields(decision) if f.name != "scenario"
    }
    data["scenario"] = {
        f: getattr(scenario, f)
        for f in (
            "component",
            "fault_type",
            "severity",
            "redundancy",
            "utilisation",
            "maintenance_window",
            "hour_of_day",
            "text",
            "device",
            "interface",
            "recent_faults",
        )
    }
    data["scenario"]["active_changes"] = list(scenario.active_changes)
    data["scenario"]["provenance"] = [[n, asdict(p)] for n, p in scenario.provenance]
    data["explanation"]["threshold"]["sample"] = _nan_to_none(decision.explanation.threshold.sample)
    if decision.arm is not None:
        data["arm"]["sample"] = _nan_to_none(decision.arm.sample)
    if decision.deferral is not None:
        data["deferral"]["at"] = decision.deferral.at.isoformat()
    return data


def _verdict(d: dict[str, Any]) -> PolicyVerdict:
    return PolicyVerdict(
        Verdict(d["verdict"]),
        tuple(RuleHit(r["policy"], Verdict(r["verdict"]), r["message"]) for r in d["rules"]),
        tuple(d["policies_checked"]),
    )


def _candidate(d: dict[str, Any]) -> Candidate:
    return Candidate(**{**d, "action": Action(**d["action"])})


def _deferral(d: dict[str, Any]) -> Deferral:
    return Deferral(**{**d, "at": dt.datetime.fromisoformat(d["at"])})


def _float(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def decision_from_dict(data: dict[str, Any]) -> Decision:
    s = dict(data["scenario"])
    s["active_changes"] = tuple(s.get("active_changes", ()))
    s["provenance"] = tuple((n, Provenance(**p)) for n, p in s.get("provenance", ()))
    e = data["explanation"]
    t = dict(e["threshold"])
    t["sample"] = _float(t["sample"])
    explanation = Explanation(
        trace=tuple(e["trace"]),
        facts=tuple(Fact(**f) for f in e["facts"]),
        visual=VisualClue(
            e["visual"]["score"], e["visual"]["threshold"], tuple(e["visual"]["recent_losses"])
        ),
        threshold=ThresholdJustification(**t),
        compliance=_verdict(e["compliance"]),
    )
    arm = data.get("arm")
    return Decision(
        outcome=Outcome(data["outcome"]),
        scenario=Scenario(**s),
        candidates=tuple(_candidate(c) for c in data["candidates"]),
        verdicts=tuple(_verdict(v) for v in data["verdicts"]),
        explanation=explanation,
        chosen=_candidate(data["chosen"]) if data.get("chosen") else None,
        arm=ArmChoice(**{**arm, "sample": _float(arm["sample"])}) if arm else None,
        pending=_candidate(data["pending"]) if data.get("pending") else None,
        deferral=_deferral(data["deferral"]) if data.get("deferral") else None,
        approved_by=str(data.get("approved_by", "")),
    )
