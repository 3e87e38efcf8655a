"""Per-scenario scores: a Beta posterior whose prior is the calibrated model prior.

A scenario (playbook, context key) starts at the model prior p — for an unseen deployment
the calibrated P(this candidate is right | retrieval evidence). That prior is worth ``k``
observations: Beta(k·p, k·(1 − p)). Each judgment adds evidence: a like one success, an
override ``override_weight`` failures, neutral a little of both, a skip nothing. The score is
the posterior mean ``(k·p + successes)/(k + successes + failures)``.

This is the paper's Robbins–Monro refinement ``s ← s + η·w·(y − s)`` with the step that makes
it an average, η_n = w/(k + Σw), instead of a constant η: evidence is a sum, so a withdrawn or
replaced vote is taken back exactly (subtract it), in any order, and a retrained prior
re-bases every scenario at once. With k = 0.5 and an override worth 2, two confirmations
take any prior to at least 0.8 (recommended the third time at every threshold up to 0.8),
one override brings any prior to at most 0.2, and one override after two confirmations to
at most 0.56. A calibrated prior is right on average over many scenarios, not about this
one: half a judgment is what it is worth against the operator's word on this scenario. The
constant-η rule is kept as ``ScoringRule.ROBBINS_MONRO`` for the simulator's paper variant.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from core.feedback import FeedbackKind, signal

DEFAULT_PRIOR_STRENGTH = 0.5
DEFAULT_OVERRIDE_WEIGHT = 2.0
DEFAULT_NEUTRAL_WEIGHT = 0.25
DEFAULT_ETA = 0.2


class ScoringRule(enum.StrEnum):
    BETA = "beta"
    ROBBINS_MONRO = "robbins_monro"  # the paper's constant step (order-dependent)


@dataclass(frozen=True, slots=True)
class ScoringConfig:
    """``prior_strength`` k: what the model prior is worth, in confirmations."""

    prior_strength: float = DEFAULT_PRIOR_STRENGTH
    override_weight: float = DEFAULT_OVERRIDE_WEIGHT
    neutral_weight: float = DEFAULT_NEUTRAL_WEIGHT
    rule: ScoringRule = ScoringRule.BETA
    eta: float = DEFAULT_ETA  # the Robbins–Monro rule's constant step

    def __post_init__(self) -> None:
        if self.prior_strength <= 0.0:
            raise ValueError(f"prior_strength: {self.prior_strength} must be > 0")
        if self.override_weight <= 0.0:
            raise ValueError(f"override_weight: {self.override_weight} must be > 0")
        if self.neutral_weight < 0.0:
            raise ValueError(f"neutral_weight: {self.neutral_weight} must be >= 0")
        if not 0.0 < self.eta <= 1.0:
            raise ValueError(f"eta: {self.eta} must be within (0, 1]")


@dataclass(frozen=True, slots=True)
class Evidence:
    """What the judgments of one scenario add to its prior (sums, so exactly invertible)."""

    successes: float = 0.0
    failures: float = 0.0
    observations: int = 0

    def __add__(self, other: Evidence) -> Evidence:
        return Evidence(
            self.successes + other.successes,
            self.failures + other.failures,
            self.observations + other.observations,
        )

    def __sub__(self, other: Evidence) -> Evidence:
        # Sums of small multiples of 1/8 are exact in binary floating point; clamp the
        # rest of rounding so an emptied scenario is exactly empty.
        return Evidence(
            max(0.0, self.successes - other.successes),
            max(0.0, self.failures - other.failures),
            max(0, self.observations - other.observations),
        )

    @property
    def empty(self) -> bool:
        return self.observations == 0

    @property
    def local(self) -> float | None:
        """The scenario's own share of successes, without the prior (None: no evidence)."""
        total = self.successes + self.failures
        return None if total <= 0.0 else self.successes / total


def evidence(kind: FeedbackKind, config: ScoringConfig) -> Evidence:
    """The evidence one judgment adds; a skip withholds judgment and adds none."""
    if kind is FeedbackKind.LIKE:
        return Evidence(1.0, 0.0, 1)
    if kind is FeedbackKind.OVERRIDE:
        return Evidence(0.0, config.override_weight, 1)
    if kind is FeedbackKind.NEUTRAL:
        half = config.neutral_weight / 2.0
        return Evidence(half, half, 1)
    return Evidence()


def evidence_of_counts(counts: Mapping[FeedbackKind, int], config: ScoringConfig) -> Evidence:
    """The evidence of a scenario's live votes, given how many there are of each kind."""
    total = Evidence()
    for kind, n in counts.items():
        one = evidence(kind, config)
        total = total + Evidence(one.successes * n, one.failures * n, one.observations * n)
    return total


def posterior(found: Evidence, prior: float, config: ScoringConfig) -> float:
    """``(k·p + successes)/(k + successes + failures)``: the prior alone without evidence."""
    p = min(1.0, max(0.0, prior))
    k = config.prior_strength
    return (k * p + found.successes) / (k + found.successes + found.failures)


ScenarioId = tuple[str, str]
"""(playbook id, context key)."""


class ScoreTable:
    """In-memory per-scenario evidence, for the simulator and the console adapter.

    The bot derives the same evidence from its live votes (``evidence_of_counts``).
    """

    def __init__(self, config: ScoringConfig | None = None) -> None:
        self.config = config or ScoringConfig()
        self._evidence: dict[ScenarioId, Evidence] = {}
        self._rm: dict[ScenarioId, float] = {}  # the Robbins–Monro rule's running value

    def get(self, scenario: ScenarioId) -> Evidence | None:
        return self._evidence.get(scenario)

    def score(self, scenario: ScenarioId, model_prior: float) -> float:
        if self.config.rule is ScoringRule.ROBBINS_MONRO:
            return self._rm.get(scenario, model_prior)
        return posterior(self._evidence.get(scenario, Evidence()), model_prior, self.config)

    def add(self, scenario: ScenarioId, found: Evidence, kind: FeedbackKind, prior: float) -> None:
        """Add one judgment's evidence (and step the Robbins–Monro value)."""
        if found.empty:
            return
        self._evidence[scenario] = self._evidence.get(scenario, Evidence()) + found
        sig = signal(kind)
        if sig.label is not None:
            value = self._rm.get(scenario, prior)
            self._rm[scenario] = value + self.config.eta * sig.weight * (sig.label - value)

    def remove(self, scenario: ScenarioId, found: Evidence) -> None:
        """Take one judgment's evidence back exactly (the Robbins–Monro value cannot be)."""
        if found.empty or scenario not in self._evidence:
            return
        left = self._evidence[scenario] - found
        if left.empty:
            del self._evidence[scenario]
        else:
            self._evidence[scenario] = left

    def items(self) -> list[tuple[ScenarioId, Evidence]]:
        return sorted(self._evidence.items())

    def __len__(self) -> int:
        return len(self._evidence)
