"""Meta-monitoring: the policy M that decides when the retrain model must be retrained.

M reads the alignment-loss stream (EWMA, a Page–Hinkley drift test, overrides and labels
since the last retrain, per-playbook override rates) and answers retrain / hold /
pause-playbook with a reason. Fidelity compares M's answers with a reference policy M*.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

from core.feedback import FeedbackKind


class MonitorAction(enum.StrEnum):
    RETRAIN = "retrain"
    HOLD = "hold"
    PAUSE_PLAYBOOK = "pause_playbook"


@dataclass(frozen=True, slots=True)
class MonitorConfig:
    ewma_alpha: float = 0.1
    ewma_bound: float = 0.35
    min_labels: int = 10
    min_growth: float = 0.25  # new labels as a share of those the model was fitted on
    ph_delta: float = 0.02
    ph_threshold: float = 1.5
    pause_override_rate: float = 0.6
    pause_min_decisions: int = 8

    def __post_init__(self) -> None:
        if not 0.0 < self.ewma_alpha <= 1.0:
            raise ValueError(f"ewma_alpha: {self.ewma_alpha} must be within (0, 1]")
        if self.ewma_bound <= 0:
            raise ValueError(f"ewma_bound: {self.ewma_bound} must be > 0")
        if self.min_growth < 0:
            raise ValueError(f"min_growth: {self.min_growth} must be >= 0")
        if self.min_labels < 1:
            raise ValueError(f"min_labels: {self.min_labels} must be >= 1")
        if self.ph_delta < 0 or self.ph_threshold <= 0:
            raise ValueError("ph_delta must be >= 0 and ph_threshold > 0")
        if not 0.0 < self.pause_override_rate <= 1.0:
            raise ValueError(
                f"pause_override_rate: {self.pause_override_rate} must be within (0, 1]"
            )
        if self.pause_min_decisions < 1:
            raise ValueError(f"pause_min_decisions: {self.pause_min_decisions} must be >= 1")


@dataclass(slots=True)
class PageHinkley:
    """Page–Hinkley test for an upward shift in the mean of a stream."""

    delta: float
    threshold: float
    count: int = 0
    mean: float = 0.0
    cumulative: float = 0.0
    minimum: float = 0.0

    def add(self, x: float) -> bool:
        """Add one value; True when an upward change is detected (and the test restarts)."""
        self.count += 1
        self.mean += (x - self.mean) / self.count
        self.cumulative += x - self.mean - self.delta
        self.minimum = min(self.minimum, self.cumulative)
        if self.cumulative - self.minimum > self.threshold:
            self.reset()
            return True
        return False

    def reset(self) -> None:
        self.count, self.mean, self.cumulative, self.minimum = 0, 0.0, 0.0, 0.0


@dataclass(slots=True)
class PlaybookTally:
    decisions: int = 0
    overrides: int = 0

    @property
    def override_rate(self) -> float:
        return self.overrides / self.decisions if self.decisions else 0.0


@dataclass(slots=True)
class MonitorState:
    """Everything M reads; survives restarts through ``to_dict``/``from_dict``."""

    ewma: float | None = None
    labels_since_retrain: int = 0
    labels_at_retrain: int = 0
    overrides_since_retrain: int = 0
    retrain_requested: bool = False
    drift_detected: bool = False
    ph: PageHinkley = field(default_factory=lambda: PageHinkley(0.02, 1.5))
    playbooks: dict[str, PlaybookTally] = field(default_factory=dict)
    paused: set[str] = field(default_factory=set)

    def to_dict(self) -> dict[str, object]:
        return {
            "ewma": self.ewma,
            "labels_since_retrain": self.labels_since_retrain,
            "labels_at_retrain": self.labels_at_retrain,
            "overrides_since_retrain": self.overrides_since_retrain,
            "retrain_requested": self.retrain_requested,
            "drift_detected": self.drift_detected,
            "ph": asdict(self.ph),
            "playbooks": {k: asdict(v) for k, v in self.playbooks.items()},
            "paused": sorted(self.paused),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> MonitorState:
        ph = data["ph"]
        playbooks = data["playbooks"]
        paused = data["paused"]
        assert isinstance(ph, Mapping)
        assert isinstance(playbooks, Mapping)
        assert isinstance(paused, Sequence)
        ewma = data["ewma"]
        return cls(
            ewma=None if ewma is None else float(ewma),  # type: ignore[arg-type]
            labels_since_retrain=int(data["labels_since_retrain"]),  # type: ignore[call-overload]
            labels_at_retrain=int(data["labels_at_retrain"]),  # type: ignore[call-overload]
            overrides_since_retrain=int(data["overrides_since_retrain"]),  # type: ignore[call-overload]
            retrain_requested=bool(data["retrain_requested"]),
            drift_detected=bool(data["drift_detected"]),
            ph=PageHinkley(**ph),
            playbooks={str(k): PlaybookTally(**v) for k, v in playbooks.items()},
            paused={str(p) for p in paused},
        )


@dataclass(frozen=True, slots=True)
class MonitorDecision:
    action: MonitorAction
    reason: str
    playbook_id: str | None = None


class MetaMonitor:
    """Policy M. ``observe`` folds in one decision's loss; ``decide`` runs one tick."""

    def __init__(self, config: MonitorConfig | None = None, state: MonitorState | None = None):
        self.config = config or MonitorConfig()
        self.state = state or MonitorState(
            ph=PageHinkley(self.config.ph_delta, self.config.ph_threshold)
        )

    def observe(self, kind: FeedbackKind, loss: float, playbook_id: str | None = None) -> None:
        s, c = self.state, self.config
        s.ewma = loss if s.ewma is None else s.ewma + c.ewma_alpha * (loss - s.ewma)
        if s.ph.add(loss):
            s.drift_detected = True
        if kind is not FeedbackKind.SKIPPED:
            s.labels_since_retrain += 1
        if kind is FeedbackKind.OVERRIDE:
            s.overrides_since_retrain += 1
            s.retrain_requested = True  # every override asks for a controlled retrain
        if playbook_id is not None:
            tally = s.playbooks.setdefault(playbook_id, PlaybookTally())
            tally.decisions += 1
            tally.overrides += kind is FeedbackKind.OVERRIDE

    def decide(self) -> MonitorDecision:
        s, c = self.state, self.config
        for pb, tally in sorted(s.playbooks.items()):
            if (
                pb not in s.paused
                and tally.decisions >= c.pause_min_decisions
                and tally.override_rate >= c.pause_override_rate
            ):
                return MonitorDecision(
                    MonitorAction.PAUSE_PLAYBOOK,
                    f"{pb}: {tally.overrides} overrides in {tally.decisions} decisions "
                    f"({tally.override_rate:.0%} ≥ {c.pause_override_rate:.0%})",
                    pb,
                )
        if s.labels_since_retrain == 0:
            return MonitorDecision(MonitorAction.HOLD, "no new labels since the last retrain")
        if s.drift_detected:
            return MonitorDecision(
                MonitorAction.RETRAIN, "Page–Hinkley detected an upward shift in alignment loss"
            )
        if s.labels_since_retrain < c.min_labels:
            pending = " (a retrain request is pending)" if s.retrain_requested else ""
            return MonitorDecision(
                MonitorAction.HOLD,
                f"{s.labels_since_retrain} new labels since the last retrain, "
                f"fewer than the {c.min_labels} a fair hold-out test needs{pending}",
            )
        ewma = s.ewma or 0.0
        if ewma > c.ewma_bound:
            return MonitorDecision(
                MonitorAction.RETRAIN,
                f"loss EWMA {ewma:.3f} > {c.ewma_bound:.3f} "
                f"with {s.labels_since_retrain} new labels",
            )
        growth = s.labels_since_retrain / max(1, s.labels_at_retrain)
        if s.retrain_requested and growth >= c.min_growth:
            return MonitorDecision(
                MonitorAction.RETRAIN,
                f"{s.overrides_since_retrain} override(s) requested a retrain and "
                f"{s.labels_since_retrain} new labels add {growth:.0%} to the "
                f"{s.labels_at_retrain} the model was fitted on",
            )
        if s.retrain_requested:
            return MonitorDecision(
                MonitorAction.HOLD,
                f"retrain requested, but {s.labels_since_retrain} new labels add only "
                f"{growth:.0%} to the {s.labels_at_retrain} the model was fitted on "
                f"(< {c.min_growth:.0%}); loss EWMA {ewma:.3f} ≤ {c.ewma_bound:.3f}",
            )
        return MonitorDecision(
            MonitorAction.HOLD,
            f"no override since the last retrain and loss EWMA {ewma:.3f} ≤ {c.ewma_bound:.3f}",
        )

    def retrained(self) -> None:
        """Reset the since-last-retrain counters (accepted or rejected alike)."""
        s = self.state
        s.labels_at_retrain += s.labels_since_retrain
        s.labels_since_retrain = 0
        s.overrides_since_retrain = 0
        s.retrain_requested = False
        s.drift_detected = False

    def pause(self, playbook_id: str) -> None:
        self.state.paused.add(playbook_id)

    def resume(self, playbook_id: str) -> None:
        self.state.paused.discard(playbook_id)
        self.state.playbooks.pop(playbook_id, None)


def fidelity(decisions: Sequence[MonitorAction], ideal: Sequence[MonitorAction]) -> float:
    """``F = mean 1[M(ℓ) = M*(ℓ)]`` over paired ticks (pauses count as holds of the model)."""
    if len(decisions) != len(ideal):
        raise ValueError(f"need paired decisions, got {len(decisions)} and {len(ideal)}")
    if not decisions:
        return 0.0

    def retrain(a: MonitorAction) -> bool:
        return a is MonitorAction.RETRAIN

    return sum(retrain(a) == retrain(b) for a, b in zip(decisions, ideal, strict=True)) / len(
        decisions
    )
