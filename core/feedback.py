"""Operator feedback, its label and weight, and the alignment loss (DESIGN.md §2)."""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

DEFAULT_SKIP_LOSS = 0.1


class FeedbackKind(enum.StrEnum):
    LIKE = "like"
    OVERRIDE = "override"
    NEUTRAL = "neutral"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class Signal:
    """What one feedback teaches: a target label (None: no judgment) and its weight."""

    label: float | None
    weight: float


_SIGNALS: dict[FeedbackKind, Signal] = {
    FeedbackKind.LIKE: Signal(1.0, 1.0),
    FeedbackKind.OVERRIDE: Signal(0.0, 1.0),
    FeedbackKind.NEUTRAL: Signal(0.5, 0.25),
    FeedbackKind.SKIPPED: Signal(None, 0.0),
}


def signal(kind: FeedbackKind) -> Signal:
    return _SIGNALS[kind]


def alignment_loss(kind: FeedbackKind, score: float, skip_loss: float = DEFAULT_SKIP_LOSS) -> float:
    """Loss of one decision made with ``score`` that received ``kind`` feedback.

    Like and override use the full distance to their label; neutral is down-weighted by its
    weight; a skipped decision costs a flat ``skip_loss`` (nobody found it worth judging).
    """
    if not 0.0 <= score <= 1.0 or math.isnan(score):
        raise ValueError(f"score: {score} must be within [0, 1]")
    sig = _SIGNALS[kind]
    if sig.label is None:
        return skip_loss
    distance = abs(score - sig.label)
    return distance if kind is not FeedbackKind.NEUTRAL else sig.weight * distance


@dataclass(frozen=True, slots=True)
class LossSummary:
    count: int
    mean: float
    ewma: float
    overrides: int
    likes: int


class RollingLoss:
    """Rolling aggregates over the most recent decisions: window mean and EWMA."""

    def __init__(self, window: int = 100, ewma_alpha: float = 0.1) -> None:
        if window < 1:
            raise ValueError(f"window: {window} must be >= 1")
        if not 0.0 < ewma_alpha <= 1.0:
            raise ValueError(f"ewma_alpha: {ewma_alpha} must be within (0, 1]")
        self._alpha = ewma_alpha
        self._losses: deque[float] = deque(maxlen=window)
        self._kinds: deque[FeedbackKind] = deque(maxlen=window)
        self._ewma: float | None = None
        self._sum = 0.0

    def add(self, kind: FeedbackKind, loss: float) -> None:
        if len(self._losses) == self._losses.maxlen:
            self._sum -= self._losses[0]
        self._losses.append(loss)
        self._kinds.append(kind)
        self._sum += loss
        self._ewma = loss if self._ewma is None else self._ewma + self._alpha * (loss - self._ewma)

    def extend(self, items: Iterable[tuple[FeedbackKind, float]]) -> None:
        for kind, loss in items:
            self.add(kind, loss)

    def summary(self) -> LossSummary:
        n = len(self._losses)
        return LossSummary(
            count=n,
            mean=self._sum / n if n else 0.0,
            ewma=self._ewma if self._ewma is not None else 0.0,
            overrides=sum(1 for k in self._kinds if k is FeedbackKind.OVERRIDE),
            likes=sum(1 for k in self._kinds if k is FeedbackKind.LIKE),
        )
