"""The safety policy engine (SPE) interface: no recommendation may bypass it."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol

from core.scenario import Scenario

RISKS = ("low", "medium", "high")


class Verdict(enum.StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    DEFER = "defer"
    NEEDS_APPROVAL = "needs_approval"


# The strictest verdict wins when several rules fire.
_SEVERITY = {Verdict.ALLOW: 0, Verdict.NEEDS_APPROVAL: 1, Verdict.DEFER: 2, Verdict.DENY: 3}


def strictest(verdicts: list[Verdict]) -> Verdict:
    return max(verdicts, key=_SEVERITY.__getitem__, default=Verdict.ALLOW)


@dataclass(frozen=True, slots=True)
class Action:
    """The remediation a playbook would perform, as the policies reason about it."""

    name: str
    target: str = ""
    blast_radius: int = 1
    risk: str = "medium"

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("action.name: must not be empty")
        if self.blast_radius < 0:
            raise ValueError(f"action.blast_radius: {self.blast_radius} must be >= 0")
        if self.risk not in RISKS:
            raise ValueError(f"action.risk: {self.risk!r} is not one of {', '.join(RISKS)}")

    def as_policy_input(self) -> dict[str, object]:
        return {
            "name": self.name,
            "target": self.target,
            "blast_radius": self.blast_radius,
            "risk": self.risk,
        }


@dataclass(frozen=True, slots=True)
class RuleHit:
    """One policy rule that fired: which policy, which outcome, and why."""

    policy: str
    verdict: Verdict
    message: str


@dataclass(frozen=True, slots=True)
class PolicyVerdict:
    verdict: Verdict
    rules: tuple[RuleHit, ...] = ()
    policies_checked: tuple[str, ...] = field(default=())

    @property
    def allowed(self) -> bool:
        return self.verdict is Verdict.ALLOW

    @property
    def summary(self) -> str:
        if not self.rules:
            checked = ", ".join(self.policies_checked) or "no policies"
            return f"Compliant: {len(self.policies_checked)} policies checked ({checked})."
        label = {
            Verdict.DENY: "Denied",
            Verdict.DEFER: "Deferred",
            Verdict.NEEDS_APPROVAL: "Needs approval",
            Verdict.ALLOW: "Allowed",
        }[self.verdict]
        reasons = "; ".join(f"{r.policy}: {r.message}" for r in self.rules)
        return f"{label}. {reasons}."


class PolicyError(ValueError):
    """A policy module failed to load or evaluate; the message names file and line."""


class SafetyPolicyEngine(Protocol):
    def evaluate(self, scenario: Scenario, action: Action) -> PolicyVerdict:
        """Judge one action in one scenario; must be deterministic in its inputs."""
        ...


class MemoisedEngine:
    """Caches verdicts of a deterministic engine (the simulator asks the same few thousand
    questions many times).

    For one thread only: its users (the simulator jobs in ``bot/reporting/simulation.py``, one per
    process, and the benchmark) never share it, so it takes no lock. The bot's threads share
    the ``RegoPolicyEngine`` itself, which is thread-safe."""

    def __init__(self, engine: SafetyPolicyEngine) -> None:
        self._engine = engine
        self._cache: dict[tuple[Scenario, Action], PolicyVerdict] = {}

    def evaluate(self, scenario: Scenario, action: Action) -> PolicyVerdict:
        key = (scenario, action)
        verdict = self._cache.get(key)
        if verdict is None:
            verdict = self._engine.evaluate(scenario, action)
            self._cache[key] = verdict
        return verdict
