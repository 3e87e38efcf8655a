"""Thompson sampling over ordered decision thresholds.

Each arm τ has a Beta(α, β) posterior over "a recommendation surfaced at this threshold
is accepted". The paper's rule credits only the arm that was used, and only when the
recommendation was surfaced. Because the arms are ordered, one judged score s also tells
every higher arm what it would have done: each arm with τ_chosen ≤ τ ≤ s would have surfaced
it too, so the counterfactual rule gives all of them the same update (the paper's
semantics, with more evidence per judgment and without selection bias).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from core.feedback import FeedbackKind, signal

DEFAULT_ARMS: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass(frozen=True, slots=True)
class BanditConfig:
    """``discount`` γ < 1 forgets old evidence (drifting preferences); 1.0 keeps it all."""

    arms: tuple[float, ...] = DEFAULT_ARMS
    discount: float = 1.0
    counterfactual: bool = False

    def __post_init__(self) -> None:
        if not self.arms:
            raise ValueError("arms: at least one threshold is required")
        if any(not 0.0 <= a <= 1.0 for a in self.arms):
            raise ValueError(f"arms: every threshold must be within [0, 1], got {self.arms}")
        if list(self.arms) != sorted(set(self.arms)):
            raise ValueError(f"arms: thresholds must be strictly increasing, got {self.arms}")
        if not 0.0 < self.discount <= 1.0:
            raise ValueError(f"discount: {self.discount} must be within (0, 1]")


@dataclass(frozen=True, slots=True)
class ArmChoice:
    """The arm used for one decision, with what justified it."""

    index: int
    threshold: float
    alpha: float
    beta: float
    sample: float

    @property
    def posterior_mean(self) -> float:
        return self.alpha / (self.alpha + self.beta)


class ThresholdBandit:
    def __init__(
        self,
        config: BanditConfig | None = None,
        alpha: Sequence[float] | None = None,
        beta: Sequence[float] | None = None,
    ) -> None:
        self.config = config or BanditConfig()
        n = len(self.config.arms)
        self.alpha = np.ones(n) if alpha is None else np.asarray(alpha, dtype=np.float64)
        self.beta = np.ones(n) if beta is None else np.asarray(beta, dtype=np.float64)
        if self.alpha.shape != (n,) or self.beta.shape != (n,):
            raise ValueError(f"alpha/beta: need {n} values each, one per arm")
        if (self.alpha <= 0).any() or (self.beta <= 0).any():
            raise ValueError("alpha/beta: posterior parameters must be > 0")

    @property
    def arms(self) -> tuple[float, ...]:
        return self.config.arms

    def choose(self, rng: np.random.Generator) -> ArmChoice:
        """Sample θ_i ~ Beta(α_i, β_i) and use the arm with the largest sample."""
        samples = rng.beta(self.alpha, self.beta)
        i = int(np.argmax(samples))
        return ArmChoice(
            i, self.arms[i], float(self.alpha[i]), float(self.beta[i]), float(samples[i])
        )

    def arm_for(self, threshold: float) -> ArmChoice:
        """A deterministic choice of a given arm (fixed-threshold operation)."""
        i = self.arms.index(threshold)
        return ArmChoice(i, threshold, float(self.alpha[i]), float(self.beta[i]), float("nan"))

    def update(self, chosen: int, score: float, kind: FeedbackKind) -> None:
        """Learn from one judged decision made with arm ``chosen`` at ``score``."""
        sig = signal(kind)
        if sig.label is None:
            return
        self._discount()
        accepted, rejected = sig.weight * sig.label, sig.weight * (1.0 - sig.label)
        if not self.config.counterfactual:
            if score >= self.arms[chosen]:
                self.alpha[chosen] += accepted
                self.beta[chosen] += rejected
            return
        # Arms between the chosen one and the score would have surfaced this recommendation
        # too, and every recommendation they would surface is one the chosen arm surfaces:
        # for them the verdict is an unbiased sample. Lower arms would also have surfaced
        # items nobody judged, so crediting them would bias them upwards; arms above s would
        # have abstained.
        arms = np.asarray(self.arms)
        credited = (arms >= arms[chosen]) & (arms <= score)
        self.alpha[credited] += accepted
        self.beta[credited] += rejected

    def _discount(self) -> None:
        g = self.config.discount
        if g < 1.0:
            self.alpha = 1.0 + g * (self.alpha - 1.0)
            self.beta = 1.0 + g * (self.beta - 1.0)

    def posterior_means(self) -> list[float]:
        return [float(x) for x in self.alpha / (self.alpha + self.beta)]

    def to_dict(self) -> dict[str, object]:
        return {
            "arms": list(self.arms),
            "discount": self.config.discount,
            "counterfactual": self.config.counterfactual,
            "alpha": self.alpha.tolist(),
            "beta": self.beta.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> ThresholdBandit:
        config = BanditConfig(
            arms=tuple(float(a) for a in data["arms"]),  # type: ignore[attr-defined]
            discount=float(data["discount"]),  # type: ignore[arg-type]
            counterfactual=bool(data["counterfactual"]),
        )
        return cls(config, data["alpha"], data["beta"])  # type: ignore[arg-type]
