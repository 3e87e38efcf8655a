"""The decision objective in operator terms (DESIGN.md §2): what a decision was worth.

A recommendation the operator likes is worth +1; one the operator overrides costs ``C``
(a wrong recommendation costs trust and time, default 3); neutral is in between (0). An
abstention whose candidate the operator then confirms was a missed recommendation (a cost,
default 0.5); an abstention nobody answers, or answers by rejecting the candidates, is worth
nothing. An operator's *skip* withholds judgment: it is worth nothing either way and teaches
nothing. This is what the threshold bandit maximises; the paper's alignment loss stays the
per-decision measure of the score (``core.feedback.alignment_loss``) that drives the monitor.

For a calibrated score s the expected utility of surfacing is ``s − (1 − s)·C`` and of
abstaining ``−s·M``, so surfacing pays when ``s ≥ C/(1 + C + M)``: the threshold the bandit
starts from (with M = 0 it is the familiar ``C/(1 + C)``).
"""

from __future__ import annotations

from dataclasses import dataclass

from core.feedback import FeedbackKind

DEFAULT_OVERRIDE_COST = 3.0
DEFAULT_MISS_COST = 0.5


@dataclass(frozen=True, slots=True)
class UtilityConfig:
    override_cost: float = DEFAULT_OVERRIDE_COST  # C
    miss_cost: float = DEFAULT_MISS_COST  # M
    neutral_value: float = 0.0

    def __post_init__(self) -> None:
        if self.override_cost <= 0:
            raise ValueError(f"override_cost: {self.override_cost} must be > 0")
        if self.miss_cost < 0:
            raise ValueError(f"miss_cost: {self.miss_cost} must be >= 0")
        if not -self.override_cost <= self.neutral_value <= 1.0:
            raise ValueError(
                f"neutral_value: {self.neutral_value} must be within [-{self.override_cost}, 1]"
            )

    @property
    def best_threshold(self) -> float:
        """τ* = C/(1 + C + M): where surfacing a calibrated score starts to pay."""
        return self.override_cost / (1.0 + self.override_cost + self.miss_cost)

    @property
    def low(self) -> float:
        return -max(self.override_cost, self.miss_cost)

    @property
    def high(self) -> float:
        return 1.0

    def reward(self, value: float) -> float:
        """A utility mapped onto [0, 1], the scale of a Beta posterior's evidence."""
        return (value - self.low) / (self.high - self.low)


def utility(surfaced: bool, kind: FeedbackKind | None, config: UtilityConfig) -> float:
    """The worth of one decision about one candidate, given the operator's judgment of it.

    ``surfaced``: the candidate was shown as the recommendation (or would have been, for a
    counterfactual arm). ``kind`` None: nobody judged it.
    """
    if kind is None or kind is FeedbackKind.SKIPPED:
        return 0.0
    if surfaced:
        if kind is FeedbackKind.LIKE:
            return 1.0
        if kind is FeedbackKind.OVERRIDE:
            return -config.override_cost
        return config.neutral_value
    return -config.miss_cost if kind is FeedbackKind.LIKE else 0.0
