"""Per-scenario scores: Robbins–Monro refinement and the blend with the model prior."""

from __future__ import annotations

from dataclasses import dataclass

from core.feedback import FeedbackKind, signal

DEFAULT_ETA = 0.2
DEFAULT_BLEND_K = 3.0


@dataclass(frozen=True, slots=True)
class ScoringConfig:
    """η is the refinement step; k is how many observations the model prior is worth."""

    eta: float = DEFAULT_ETA
    blend_k: float = DEFAULT_BLEND_K

    def __post_init__(self) -> None:
        if not 0.0 < self.eta <= 1.0:
            raise ValueError(f"eta: {self.eta} must be within (0, 1]")
        if self.blend_k < 0.0:
            raise ValueError(f"blend_k: {self.blend_k} must be >= 0")


@dataclass(frozen=True, slots=True)
class ScenarioScore:
    """The locally refined score of one (playbook, context) scenario and its evidence."""

    value: float
    observations: int = 0

    def refined(self, kind: FeedbackKind, eta: float) -> ScenarioScore:
        """``s ← s + η·w·(y − s)``; a skipped decision carries no label and changes nothing."""
        sig = signal(kind)
        if sig.label is None:
            return self
        value = self.value + eta * sig.weight * (sig.label - self.value)
        return ScenarioScore(min(1.0, max(0.0, value)), self.observations + 1)


def blend(local: ScenarioScore | None, model_prior: float, k: float) -> float:
    """``s = (n·s_local + k·s_model)/(n + k)``; with no local evidence, the prior alone."""
    if local is None or local.observations == 0:
        return model_prior
    n = float(local.observations)
    if n + k == 0.0:
        return local.value
    return (n * local.value + k * model_prior) / (n + k)


ScenarioId = tuple[str, str]
"""(playbook id, context key)."""


class ScoreTable:
    """In-memory per-scenario scores, for the simulator and the console adapter.

    The bot keeps the same values in its database and calls ``ScenarioScore.refined``.
    """

    def __init__(self, config: ScoringConfig | None = None) -> None:
        self.config = config or ScoringConfig()
        self._scores: dict[ScenarioId, ScenarioScore] = {}

    def get(self, scenario: ScenarioId) -> ScenarioScore | None:
        return self._scores.get(scenario)

    def score(self, scenario: ScenarioId, model_prior: float) -> float:
        return blend(self._scores.get(scenario), model_prior, self.config.blend_k)

    def update(self, scenario: ScenarioId, kind: FeedbackKind, model_prior: float) -> float:
        """Refine one scenario; a first observation starts from the model prior."""
        current = self._scores.get(scenario) or ScenarioScore(model_prior)
        updated = current.refined(kind, self.config.eta)
        self._scores[scenario] = updated
        return updated.value

    def __len__(self) -> int:
        return len(self._scores)

    def to_dict(self) -> dict[str, list[float | int | str]]:
        return {
            f"{pb}\x1f{key}": [pb, key, s.value, s.observations]
            for (pb, key), s in self._scores.items()
        }

    @classmethod
    def from_dict(
        cls, data: dict[str, list[float | int | str]], config: ScoringConfig | None = None
    ) -> ScoreTable:
        table = cls(config)
        for pb, key, value, n in data.values():
            table._scores[(str(pb), str(key))] = ScenarioScore(float(value), int(n))
        return table
