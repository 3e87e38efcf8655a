"""Off-policy evaluation of threshold policies from the decision log (beyond the paper).

Every decision logs the arm it used and that arm's propensity under the policy that chose
it (for Thompson sampling, a Monte Carlo estimate of P(arm wins the draw)). From such logs
we estimate what another policy would have earned, with three standard estimators:
inverse propensity scoring (IPS), self-normalised IPS (SNIPS) and doubly robust (DR, with
per-arm mean rewards as the reward model). Importance weights are clipped to bound the
variance; confidence intervals are normal approximations from the per-decision terms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class LoggedDecision:
    arm: int
    propensity: float
    reward: float


@dataclass(frozen=True, slots=True)
class Estimate:
    value: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return {
            "value": round(self.value, 6),
            "low": round(self.low, 6),
            "high": round(self.high, 6),
        }


def thompson_propensities(
    alpha: Sequence[float] | npt.NDArray[np.float64],
    beta: Sequence[float] | npt.NDArray[np.float64],
    rng: np.random.Generator,
    draws: int = 2000,
) -> npt.NDArray[np.float64]:
    """P(each arm has the largest Beta sample), by Monte Carlo."""
    samples = rng.beta(
        np.asarray(alpha)[None, :], np.asarray(beta)[None, :], size=(draws, len(alpha))
    )
    wins = np.bincount(np.argmax(samples, axis=1), minlength=len(alpha))
    return wins.astype(np.float64) / draws


def _interval(terms: npt.NDArray[np.float64], z: float = 1.96) -> Estimate:
    mean = float(terms.mean())
    half = z * float(terms.std(ddof=1)) / np.sqrt(len(terms)) if len(terms) > 1 else float("inf")
    return Estimate(mean, mean - half, mean + half)


def evaluate_policy(
    logs: Sequence[LoggedDecision], target: Sequence[float], clip: float = 50.0
) -> dict[str, Estimate]:
    """Estimate the mean reward of ``target`` (a distribution over arms) from ``logs``."""
    if not logs:
        raise ValueError("no logged decisions to evaluate")
    pi = np.asarray(target, dtype=np.float64)
    if pi.min() < 0 or abs(pi.sum() - 1.0) > 1e-6:
        raise ValueError("target must be a probability distribution over the arms")
    arms = np.array([d.arm for d in logs])
    p = np.array([max(d.propensity, 1e-12) for d in logs])
    r = np.array([d.reward for d in logs])
    w = np.minimum(pi[arms] / p, clip)
    ips = _interval(w * r)
    weight_sum = w.sum()
    snips_value = float((w * r).sum() / weight_sum) if weight_sum > 0 else 0.0
    centred = (
        w * (r - snips_value) / (weight_sum / len(logs)) if weight_sum > 0 else np.zeros_like(r)
    )
    snips_half = _interval(centred)
    snips = Estimate(snips_value, snips_value + snips_half.low, snips_value + snips_half.high)
    q = np.array([r[arms == a].mean() if (arms == a).any() else 0.0 for a in range(len(pi))])
    dr = _interval(float(pi @ q) + w * (r - q[arms]))
    return {"ips": ips, "snips": snips, "dr": dr}
