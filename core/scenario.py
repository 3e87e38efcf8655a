"""Incident scenarios and their stable context key.

The context key is what per-scenario learning is keyed on, so it must be stable across
processes and releases: it hashes the *discretised* features with SHA-1, never Python's
randomised ``hash``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Final

SEVERITIES: Final = ("low", "medium", "high", "critical")
HOUR_BUCKETS: Final = ("night", "morning", "afternoon", "evening")


class ScenarioError(ValueError):
    """A scenario field is out of range; the message names the field."""


def hour_bucket(hour: int) -> str:
    """Six-hour buckets: operators' preferences differ by shift, not by minute."""
    return HOUR_BUCKETS[hour // 6]


def redundancy_bucket(redundancy: int) -> str:
    """0 (no spare path), 1 (one spare) or 2+ (comfortable)."""
    return "2+" if redundancy >= 2 else str(redundancy)


@dataclass(frozen=True, slots=True)
class Scenario:
    """One incident as the core sees it.

    ``redundancy`` counts the healthy redundant paths or peers that remain if the target is
    taken out of service; ``utilisation`` is the target's load in [0, 1].
    ``active_changes`` names devices that another change is already touching.
    """

    component: str
    fault_type: str
    severity: str = "medium"
    redundancy: int = 1
    utilisation: float = 0.5
    maintenance_window: bool = False
    hour_of_day: int = 12
    text: str = ""
    device: str = ""
    active_changes: tuple[str, ...] = field(default=())
    _context: tuple[tuple[str, str], ...] = field(init=False, repr=False, compare=False, default=())
    _key: str = field(init=False, repr=False, compare=False, default="")

    def __post_init__(self) -> None:
        if not self.component.strip():
            raise ScenarioError("component: must not be empty")
        if not self.fault_type.strip():
            raise ScenarioError("fault_type: must not be empty")
        if self.severity not in SEVERITIES:
            raise ScenarioError(
                f"severity: {self.severity!r} is not one of {', '.join(SEVERITIES)}"
            )
        if self.redundancy < 0:
            raise ScenarioError(f"redundancy: {self.redundancy} must be >= 0")
        if not 0.0 <= self.utilisation <= 1.0:
            raise ScenarioError(f"utilisation: {self.utilisation} must be within [0, 1]")
        if not 0 <= self.hour_of_day <= 23:
            raise ScenarioError(f"hour_of_day: {self.hour_of_day} must be within 0..23")
        context = (
            ("component", self.component.strip().lower()),
            ("fault_type", self.fault_type.strip().lower()),
            ("hour", hour_bucket(self.hour_of_day)),
            ("maintenance_window", "yes" if self.maintenance_window else "no"),
            ("redundancy", redundancy_bucket(self.redundancy)),
            ("severity", self.severity),
        )
        canonical = "|".join(f"{k}={v}" for k, v in context)
        # Frozen dataclass: derived fields are set once here, never changed afterwards.
        object.__setattr__(self, "_context", context)
        object.__setattr__(self, "_key", hashlib.sha1(canonical.encode("utf-8")).hexdigest()[:16])

    def context(self) -> dict[str, str]:
        """The discretised features that define a scenario's context (sorted by name)."""
        return dict(self._context)

    @property
    def context_key(self) -> str:
        """A 16-hex-digit key, identical for scenarios with the same discretised context."""
        return self._key

    def as_policy_input(self) -> dict[str, object]:
        """The scenario as the safety policies read it (plain JSON types)."""
        return {
            "component": self.component,
            "fault_type": self.fault_type,
            "severity": self.severity,
            "redundancy": self.redundancy,
            "utilisation": self.utilisation,
            "maintenance_window": self.maintenance_window,
            "hour_of_day": self.hour_of_day,
            "device": self.device,
            "active_changes": list(self.active_changes),
        }
