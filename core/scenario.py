"""Incident scenarios and their stable context key.

The context key is what per-scenario learning is keyed on, so it must be stable across
processes and releases: it hashes the *discretised* features with SHA-1, never Python's
randomised ``hash``.

A feature may be *unknown* (``None``): nobody said, and no context source knew. Unknown is
its own level (``unknown``) in the context key, in the retrain model's features and in the
policies' input; it is never replaced by a guess. When every feature is known the canonical
string, and hence the key, is exactly what it was before unknown existed (stored scores are
keyed on it). Each known fact may carry its provenance (source and age), which the
explanation shows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Final

SEVERITIES: Final = ("low", "medium", "high", "critical")
HOUR_BUCKETS: Final = ("night", "morning", "afternoon", "evening")
UNKNOWN: Final = "unknown"
# The features a context source can supply (and the ones policies may find unknown).
FACTS: Final = (
    "component",
    "fault_type",
    "severity",
    "redundancy",
    "utilisation",
    "maintenance_window",
    "device",
    "recent_faults",
)


class ScenarioError(ValueError):
    """A scenario field is out of range; the message names the field."""


def hour_bucket(hour: int) -> str:
    """Six-hour buckets: operators' preferences differ by shift, not by minute."""
    return HOUR_BUCKETS[hour // 6]


def redundancy_bucket(redundancy: int | None) -> str:
    """0 (no spare path), 1 (one spare), 2+ (comfortable) or unknown."""
    if redundancy is None:
        return UNKNOWN
    return "2+" if redundancy >= 2 else str(redundancy)


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where a fact came from and how old it was when the scenario was built.

    ``age_seconds`` is None for facts that are as old as the incident itself (its text, its
    alert labels)."""

    source: str
    age_seconds: float | None = None
    detail: str = ""

    def __post_init__(self) -> None:
        if not self.source.strip():
            raise ScenarioError("provenance.source: must not be empty")
        if self.age_seconds is not None and self.age_seconds < 0:
            raise ScenarioError(f"provenance.age_seconds: {self.age_seconds} must be >= 0")

    @property
    def text(self) -> str:
        """``prometheus, 40 s ago`` — what an explanation shows after the value."""
        if self.age_seconds is None:
            return self.source
        return f"{self.source}, {_age(self.age_seconds)} ago"


def _age(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"


@dataclass(frozen=True, slots=True)
class ScenarioFact:
    """One feature for an explanation: its name, value (None: unknown) and provenance."""

    name: str
    value: object | None
    provenance: Provenance | None

    @property
    def text(self) -> str:
        """``redundancy 2 — prometheus, 40 s ago`` or ``maintenance window: unknown``."""
        label = self.name.replace("_", " ")
        if self.value is None:
            return f"{label}: unknown"
        value = self.value
        if isinstance(value, bool):
            value = "yes" if value else "no"
        elif isinstance(value, float):
            value = f"{value:.2f}"
        suffix = f" — {self.provenance.text}" if self.provenance else ""
        return f"{label} {value}{suffix}"


@dataclass(frozen=True, slots=True)
class Scenario:
    """One incident as the core sees it.

    ``redundancy`` counts the healthy redundant paths or peers that remain if the target is
    taken out of service; ``utilisation`` is the target's load in [0, 1].
    ``active_changes`` names devices that another change is already touching;
    ``interface`` is the device's port or bundle the incident names (``xe-1/0/3``);
    ``recent_faults`` counts recent incidents on the same device (not part of the key).
    ``provenance`` maps fact names to where each came from (facts without one were set by
    the caller, e.g. a simulator or a test).
    """

    component: str | None
    fault_type: str | None
    severity: str | None = "medium"
    redundancy: int | None = 1
    utilisation: float | None = 0.5
    maintenance_window: bool | None = False
    hour_of_day: int = 12
    text: str = ""
    device: str = ""
    interface: str = ""
    active_changes: tuple[str, ...] = field(default=())
    recent_faults: int | None = None
    provenance: tuple[tuple[str, Provenance], ...] = field(default=())
    _context: tuple[tuple[str, str], ...] = field(init=False, repr=False, compare=False, default=())
    _key: str = field(init=False, repr=False, compare=False, default="")

    def __post_init__(self) -> None:
        for name in ("component", "fault_type"):
            value = getattr(self, name)
            if value is not None and not value.strip():
                raise ScenarioError(f"{name}: must not be empty")
            if value is not None and value.strip().lower() == UNKNOWN:
                object.__setattr__(self, name, None)  # the old spelling of unknown
        if self.severity is not None and self.severity not in SEVERITIES:
            raise ScenarioError(
                f"severity: {self.severity!r} is not one of {', '.join(SEVERITIES)}"
            )
        if self.redundancy is not None and self.redundancy < 0:
            raise ScenarioError(f"redundancy: {self.redundancy} must be >= 0")
        if self.recent_faults is not None and self.recent_faults < 0:
            raise ScenarioError(f"recent_faults: {self.recent_faults} must be >= 0")
        if self.utilisation is not None and not 0.0 <= self.utilisation <= 1.0:
            raise ScenarioError(f"utilisation: {self.utilisation} must be within [0, 1]")
        if not 0 <= self.hour_of_day <= 23:
            raise ScenarioError(f"hour_of_day: {self.hour_of_day} must be within 0..23")
        for name, _ in self.provenance:
            if name not in FACTS:
                raise ScenarioError(f"provenance: {name!r} is not one of {', '.join(FACTS)}")
        window = self.maintenance_window
        context = (
            ("component", _level(self.component)),
            ("fault_type", _level(self.fault_type)),
            ("hour", hour_bucket(self.hour_of_day)),
            ("maintenance_window", UNKNOWN if window is None else ("yes" if window else "no")),
            ("redundancy", redundancy_bucket(self.redundancy)),
            ("severity", self.severity or UNKNOWN),
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

    def features(self) -> dict[str, object | None]:
        """The raw features as plain JSON values, None for unknown (``npo chat --json``)."""
        return {
            "component": self.component,
            "fault_type": self.fault_type,
            "severity": self.severity,
            "redundancy": self.redundancy,
            "utilisation": self.utilisation,
            "maintenance_window": self.maintenance_window,
            "hour_of_day": self.hour_of_day,
            "device": self.device or None,
            "interface": self.interface or None,
            "recent_faults": self.recent_faults,
        }

    def unknown(self) -> tuple[str, ...]:
        """The names of the features nobody knew, in ``FACTS`` order."""
        values = self.features()
        return tuple(name for name in FACTS if values[name] is None)

    def source_of(self, name: str) -> Provenance | None:
        """Where the fact ``name`` came from, if the builder of the scenario said."""
        return next((p for n, p in self.provenance if n == name), None)

    def facts(self, names: Collection[str] = FACTS) -> tuple[ScenarioFact, ...]:
        """Every fact (or those in ``names``), in ``FACTS`` order, with its value (None:
        unknown) and provenance, for explanations."""
        values = self.features()
        return tuple(ScenarioFact(n, values[n], self.source_of(n)) for n in FACTS if n in names)

    def as_policy_input(self) -> dict[str, object]:
        """The scenario as the safety policies read it (plain JSON types): unknown facts
        are ``null`` and are listed in ``unknown``, so a policy decides what they mean."""
        return {
            "component": self.component,
            "fault_type": self.fault_type,
            "severity": self.severity,
            "redundancy": self.redundancy,
            "utilisation": self.utilisation,
            "maintenance_window": self.maintenance_window,
            "hour_of_day": self.hour_of_day,
            "device": self.device,
            "interface": self.interface,
            "active_changes": list(self.active_changes),
            "recent_faults": self.recent_faults,
            "unknown": list(self.unknown()),
            "sources": {
                n: {"source": p.source, "age_seconds": p.age_seconds} for n, p in self.provenance
            },
        }


def _level(value: str | None) -> str:
    return UNKNOWN if value is None else value.strip().lower()
