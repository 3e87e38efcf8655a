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


@dataclass(frozen=True, slots=True)
class ArmDelta:
    """What one vote added to each arm, and at which learning step (for exact take-back)."""

    arms: tuple[float, ...]
    alpha: tuple[float, ...]
    beta: tuple[float, ...]
    step: int

    def to_dict(self) -> dict[str, object]:
        return {
            "arms": list(self.arms),
            "alpha": list(self.alpha),
            "beta": list(self.beta),
            "step": self.step,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> ArmDelta:
        def floats(key: str) -> tuple[float, ...]:
            value = data[key]
            assert isinstance(value, list)
            return tuple(float(x) for x in value)

        return cls(floats("arms"), floats("alpha"), floats("beta"), int(data["step"]))  # type: ignore[call-overload]


class ThresholdBandit:
    def __init__(
        self,
        config: BanditConfig | None = None,
        alpha: Sequence[float] | None = None,
        beta: Sequence[float] | None = None,
        steps: int = 0,
    ) -> None:
        self.config = config or BanditConfig()
        self.steps = steps  # learning steps so far: the clock of the discount
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

    def nearest_arm(self, threshold: float) -> int:
        """The index of the arm with this threshold, or of the nearest one (a decision made
        before an arms migration still finds the arm that inherited its evidence)."""
        return min(range(len(self.arms)), key=lambda i: (abs(self.arms[i] - threshold), i))

    def arm_for(self, threshold: float) -> ArmChoice:
        """A deterministic choice of a given arm (fixed-threshold operation)."""
        i = self.arms.index(threshold)
        return ArmChoice(i, threshold, float(self.alpha[i]), float(self.beta[i]), float("nan"))

    def update(
        self, chosen: int, score: float, kind: FeedbackKind, surfaced: bool = True
    ) -> ArmDelta:
        """Learn from one judged decision made with arm ``chosen`` at ``score``: one step.

        ``surfaced`` says whether the operator was actually shown this candidate as the
        recommendation. A candidate that was blocked by the SPE or listed in an abstention
        was surfaced by no arm, so no arm is credited; like a skip, it is no step of the
        discount's clock either (only evidence ages evidence). Returns what was added, so
        ``take_back`` can remove exactly this evidence later.
        """
        zero = (0.0,) * len(self.arms)
        sig = signal(kind)
        if sig.label is None or not surfaced:
            return ArmDelta(self.arms, zero, zero, self.steps)
        self._discount()
        self.steps += 1
        accepted, rejected = sig.weight * sig.label, sig.weight * (1.0 - sig.label)
        arms = np.asarray(self.arms)
        if not self.config.counterfactual:
            credited = np.zeros(len(arms), dtype=bool)
            credited[chosen] = score >= self.arms[chosen]
        else:
            # Arms between the chosen one and the score would have surfaced this
            # recommendation too, and every recommendation they would surface is one the
            # chosen arm surfaces: for them the verdict is an unbiased sample. Lower arms
            # would also have surfaced items nobody judged, so crediting them would bias
            # them upwards; arms above s would have abstained.
            credited = (arms >= arms[chosen]) & (arms <= score)
        d_alpha = np.where(credited, accepted, 0.0)
        d_beta = np.where(credited, rejected, 0.0)
        self.alpha += d_alpha
        self.beta += d_beta
        return ArmDelta(
            self.arms,
            tuple(float(x) for x in d_alpha),
            tuple(float(x) for x in d_beta),
            self.steps,
        )

    def take_back(self, delta: ArmDelta) -> None:
        """Remove exactly what ``delta`` added (a withdrawn or replaced vote).

        With discount γ the evidence added at step t weighs γ^(now − t) today: that is what
        is subtracted, so add-then-take-back leaves the posterior as if the vote had never
        counted (the step it used still discounted the others, as time passing does). Arms
        that no longer exist are skipped (after an explicit arms migration).
        """
        factor = self.config.discount ** max(0, self.steps - delta.step)
        index = {a: i for i, a in enumerate(self.arms)}
        for arm, d_alpha, d_beta in zip(delta.arms, delta.alpha, delta.beta, strict=True):
            i = index.get(arm)
            if i is None:
                continue
            self.alpha[i] = max(1.0, self.alpha[i] - factor * d_alpha)
            self.beta[i] = max(1.0, self.beta[i] - factor * d_beta)

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
            "steps": self.steps,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> ThresholdBandit:
        config = BanditConfig(
            arms=tuple(float(a) for a in data["arms"]),  # type: ignore[attr-defined]
            discount=float(data["discount"]),  # type: ignore[arg-type]
            counterfactual=bool(data["counterfactual"]),
        )
        steps = int(data.get("steps", 0))  # type: ignore[call-overload]
        return cls(config, data["alpha"], data["beta"], steps)  # type: ignore[arg-type]
