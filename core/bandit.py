"""Thompson sampling over ordered decision thresholds.

``BanditRule.UTILITY`` (default): each arm τ has a Beta(α, β) posterior over the *utility*
of deciding at τ (``core.utility``: +1 a liked recommendation, −C an overridden one, −M a
missed one, 0 an abstention nobody needed), mapped onto [0, 1] and added as fractional
evidence (α += r, β += 1 − r). One judged candidate tells every arm what it would have done
— surfaced it (τ ≤ s and the SPE allowed it), abstained, or surfaced another candidate
(then this judgment says nothing about that arm) — whether the bot recommended it or listed
it in an abstention, so every arm learns from every judgment. The prior starts from the
threshold the objective implies for a calibrated score (τ* = C/(1 + C + M)), which the
evidence then corrects.

``BanditRule.PAPER``: the paper's rule. The posterior is over "a surfaced recommendation is
accepted", and only the arm used is credited, only when it surfaced the candidate; with
``counterfactual`` every arm between the one used and the score gets the same update.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from core.feedback import FeedbackKind, signal

DEFAULT_ARMS: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9)
DEFAULT_START_STRENGTH = 6.0


class BanditRule(enum.StrEnum):
    UTILITY = "utility"
    PAPER = "paper"


@dataclass(frozen=True, slots=True)
class BanditConfig:
    """``discount`` γ < 1 forgets old evidence (drifting preferences); 1.0 keeps it all."""

    arms: tuple[float, ...] = DEFAULT_ARMS
    discount: float = 1.0
    counterfactual: bool = False  # the paper rule's ordered-arm variant
    rule: BanditRule = BanditRule.UTILITY
    start: float | None = None  # τ* the prior favours (None: a flat Beta(1, 1) prior)
    start_strength: float = DEFAULT_START_STRENGTH  # pseudo-observations behind that prior

    def __post_init__(self) -> None:
        if not self.arms:
            raise ValueError("arms: at least one threshold is required")
        if any(not 0.0 <= a <= 1.0 for a in self.arms):
            raise ValueError(f"arms: every threshold must be within [0, 1], got {self.arms}")
        if list(self.arms) != sorted(set(self.arms)):
            raise ValueError(f"arms: thresholds must be strictly increasing, got {self.arms}")
        if not 0.0 < self.discount <= 1.0:
            raise ValueError(f"discount: {self.discount} must be within (0, 1]")
        if self.start is not None and not 0.0 <= self.start <= 1.0:
            raise ValueError(f"start: {self.start} must be within [0, 1]")
        if self.start_strength < 0.0:
            raise ValueError(f"start_strength: {self.start_strength} must be >= 0")

    def prior(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(α₀, β₀) per arm. With a start threshold, the arm nearest it gets the strongest
        belief and each arm further away a quarter less: Beta(1 + n·q, 1 + n·(1 − q))."""
        n = len(self.arms)
        if self.start is None or self.start_strength == 0.0:
            return (1.0,) * n, (1.0,) * n
        start = self.start
        best = min(range(n), key=lambda i: (abs(self.arms[i] - start), i))
        q = [max(0.0, 1.0 - 0.25 * abs(i - best)) for i in range(n)]
        m = self.start_strength
        return tuple(1.0 + m * x for x in q), tuple(1.0 + m * (1.0 - x) for x in q)


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
        prior_alpha, prior_beta = self.config.prior()
        self.prior_alpha = np.asarray(prior_alpha, dtype=np.float64)
        self.prior_beta = np.asarray(prior_beta, dtype=np.float64)
        self.alpha = self.prior_alpha.copy() if alpha is None else np.asarray(alpha, np.float64)
        self.beta = self.prior_beta.copy() if beta is None else np.asarray(beta, np.float64)
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

    def credit(self, rewards: Sequence[float | None]) -> ArmDelta:
        """The utility rule: add each arm's reward in [0, 1] (None: this judgment says
        nothing about that arm) as fractional evidence; one step of the discount's clock
        when any arm learned. Returns what was added, for ``take_back``."""
        if len(rewards) != len(self.arms):
            raise ValueError(f"rewards: need {len(self.arms)} values, one per arm")
        if all(r is None for r in rewards):
            zero = (0.0,) * len(self.arms)
            return ArmDelta(self.arms, zero, zero, self.steps)
        if any(r is not None and not 0.0 <= r <= 1.0 for r in rewards):
            raise ValueError(f"rewards: each must be within [0, 1], got {list(rewards)}")
        self._discount()
        self.steps += 1
        d_alpha = np.array([0.0 if r is None else r for r in rewards])
        d_beta = np.array([0.0 if r is None else 1.0 - r for r in rewards])
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
            self.alpha[i] = max(self.prior_alpha[i], self.alpha[i] - factor * d_alpha)
            self.beta[i] = max(self.prior_beta[i], self.beta[i] - factor * d_beta)

    def _discount(self) -> None:
        """Evidence ages towards the prior (not towards nothing)."""
        g = self.config.discount
        if g < 1.0:
            self.alpha = self.prior_alpha + g * (self.alpha - self.prior_alpha)
            self.beta = self.prior_beta + g * (self.beta - self.prior_beta)

    def posterior_means(self) -> list[float]:
        return [float(x) for x in self.alpha / (self.alpha + self.beta)]

    def to_dict(self) -> dict[str, object]:
        return {
            "arms": list(self.arms),
            "discount": self.config.discount,
            "counterfactual": self.config.counterfactual,
            "rule": self.config.rule.value,
            "start": self.config.start,
            "start_strength": self.config.start_strength,
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
            rule=BanditRule(str(data.get("rule", BanditRule.PAPER.value))),
            start=None if data.get("start") is None else float(data["start"]),  # type: ignore[arg-type]
            start_strength=float(data.get("start_strength", DEFAULT_START_STRENGTH)),  # type: ignore[arg-type]
        )
        steps = int(data.get("steps", 0))  # type: ignore[call-overload]
        return cls(config, data["alpha"], data["beta"], steps)  # type: ignore[arg-type]
