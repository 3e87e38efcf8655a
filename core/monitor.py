"""Meta-monitoring: the policy M that decides when the retrain model must be retrained.

M reads the alignment-loss stream (EWMA, a Page–Hinkley drift test, overrides and labels
since the last retrain, per-playbook override rates) and answers retrain / hold /
pause-playbook with a reason. Fidelity compares M's answers with a reference policy M*.

Every signal is computed at the tick from the *live* votes (withdrawn ones are gone,
replaced ones appear once, in their new form); M keeps only the watermarks that say which
votes came after the last retrain or resume, the paused set, and the tick history the
learned policy is fitted on.

Two policies answer retrain / hold: the hand-written ``rule`` and a ``learned`` one — a
logistic regression on the tick's signals fitted on the shadow-retrain verdicts M* of past
ticks (the paper's meta-alignment: the monitor is aligned with the same supervised loop as
the model). Until it has seen enough of both verdicts, the learned policy defers to the rule.
Pausing a playbook is the same hand-written check under both.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from core.feedback import FeedbackKind


class MonitorAction(enum.StrEnum):
    RETRAIN = "retrain"
    HOLD = "hold"
    PAUSE_PLAYBOOK = "pause_playbook"


class MonitorPolicy(enum.StrEnum):
    """Which M answers retrain / hold."""

    RULE = "rule"
    LEARNED = "learned"


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
    # The rule: over 30 seeds of the simulator its κ against the ideal M* is higher than
    # the learned M's (README, meta-monitoring); the learned M stays one setting away.
    policy: MonitorPolicy = MonitorPolicy.RULE
    learned_min_ticks: int = 8  # judged ticks before the learned M replaces the rule
    learned_min_each: int = 2  # of each verdict (retrain and hold) among them
    learned_l2: float = 1.0
    learned_history: int = 500  # judged ticks kept (the newest)

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
        if self.learned_min_each < 1 or self.learned_min_ticks < 2 * self.learned_min_each:
            raise ValueError(
                "learned_min_each must be >= 1 and learned_min_ticks >= 2 × learned_min_each"
            )
        if self.learned_l2 <= 0:
            raise ValueError(f"learned_l2: {self.learned_l2} must be > 0")
        if self.learned_history < self.learned_min_ticks:
            raise ValueError(
                f"learned_history: {self.learned_history} must be >= learned_min_ticks"
            )


@dataclass(frozen=True, slots=True)
class LoggedVote:
    """One live vote as the monitor reads it. ``seq`` is the learning step at which the vote
    (in its current form) was applied: it orders the stream and marks what a retrain saw."""

    seq: int
    kind: FeedbackKind
    loss: float
    playbook_id: str | None = None


def page_hinkley(losses: npt.NDArray[np.float64], delta: float, threshold: float) -> float:
    """The Page–Hinkley statistic for an upward shift in the mean of ``losses``: the largest
    rise of the cumulative deviation above its running minimum. Drift when > threshold."""
    if losses.size == 0:
        return 0.0
    n = np.arange(1, losses.size + 1, dtype=np.float64)
    running_mean = np.cumsum(losses) / n
    cumulative = np.cumsum(losses - running_mean - delta)
    minimum = np.minimum.accumulate(np.minimum(cumulative, 0.0))
    return float((cumulative - minimum).max())


def ewma(losses: npt.NDArray[np.float64], alpha: float) -> float | None:
    """Exponentially weighted mean, the first value as its start (None for no values).

    Only the newest values matter ((1 − α)^k of the weight is left after k of them), so
    the last 1,000 are enough and the cost does not grow with the log."""
    if losses.size == 0:
        return None
    tail = losses[-1000:]
    value = float(tail[0])
    for x in tail[1:]:
        value += alpha * (float(x) - value)
    return value


@dataclass(slots=True)
class PlaybookTally:
    decisions: int = 0
    overrides: int = 0

    @property
    def override_rate(self) -> float:
        return self.overrides / self.decisions if self.decisions else 0.0


@dataclass(frozen=True, slots=True)
class MonitorSignals:
    """What M reads at a tick, derived from the live votes and the kept state.

    Derived, never accumulated: a withdrawn or replaced vote is simply absent (or present in
    its new form), so it can never keep steering the monitor."""

    ewma: float | None
    drift: float  # Page–Hinkley statistic over the losses since the last retrain
    drift_detected: bool
    labels_since_retrain: int
    labels_at_retrain: int
    overrides_since_retrain: int
    playbooks: Mapping[str, PlaybookTally]

    @property
    def retrain_requested(self) -> bool:
        """Every live override since the last retrain asks for a controlled retrain."""
        return self.overrides_since_retrain > 0

    def features(self) -> tuple[float, ...]:
        """What the learned M reads, in this order (``FEATURES``): counts on a log scale,
        so a tick with 10 new labels and one with 10,000 are not 1,000 units apart."""
        since, at = self.labels_since_retrain, self.labels_at_retrain
        return (
            self.ewma or 0.0,
            float(np.log1p(self.drift)),
            float(np.log1p(self.overrides_since_retrain)),
            float(np.log1p(since)),
            float(np.log1p(at)),
            float(np.log1p(since / max(1, at))),
            self.overrides_since_retrain / max(1, since),
        )


FEATURES: tuple[str, ...] = (
    "loss_ewma",
    "log1p_drift",
    "log1p_overrides_since_retrain",
    "log1p_labels_since_retrain",
    "log1p_labels_at_retrain",
    "log1p_growth",
    "override_share_since_retrain",
)


@dataclass(frozen=True, slots=True)
class JudgedTick:
    """One past tick as the learned M learns from it: its signals and the shadow verdict."""

    features: tuple[float, ...]
    retrain: bool  # M*: the shadow retrain lowered hold-out loss by δ


@dataclass(slots=True)
class MonitorState:
    """What M keeps between ticks (survives restarts through ``to_dict``/``from_dict``;
    the learned M's ``history`` through ``history_to_list``/``history_from_list``, stored
    apart); every tally is recomputed from the live votes (``MetaMonitor.signals``)."""

    retrained_at: int = 0  # learning step of the newest vote the last retrain decision saw
    paused: set[str] = field(default_factory=set)
    resumed_at: dict[str, int] = field(default_factory=dict)  # playbook → step of its resume
    history: list[JudgedTick] = field(default_factory=list)  # judged ticks, oldest first

    def to_dict(self) -> dict[str, object]:
        return {
            "retrained_at": self.retrained_at,
            "paused": sorted(self.paused),
            "resumed_at": dict(sorted(self.resumed_at.items())),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> MonitorState:
        paused = data.get("paused", [])
        resumed = data.get("resumed_at", {})
        assert isinstance(paused, Sequence)
        assert isinstance(resumed, Mapping)
        return cls(
            retrained_at=int(data.get("retrained_at", 0)),  # type: ignore[call-overload]
            paused={str(p) for p in paused},
            resumed_at={str(k): int(v) for k, v in resumed.items()},
        )


def history_to_list(history: Sequence[JudgedTick]) -> list[list[float]]:
    """The learned M's tick history as JSON rows. Stored apart from the monitor document,
    which every recommendation reads: only the tick reads this."""
    return [[*(round(x, 6) for x in t.features), float(t.retrain)] for t in history]


def history_from_list(rows: Sequence[object]) -> list[JudgedTick]:
    """Rows of another width (written by an M with other features) are dropped."""
    width = len(FEATURES)
    return [
        JudgedTick(tuple(float(x) for x in row[:width]), bool(row[width]))
        for row in rows
        if isinstance(row, Sequence) and len(row) == width + 1
    ]


@dataclass(frozen=True, slots=True)
class MonitorDecision:
    action: MonitorAction
    reason: str
    playbook_id: str | None = None


class MetaMonitor:
    """Policy M. ``signals`` reads the live votes; ``decide`` runs one tick on them."""

    def __init__(self, config: MonitorConfig | None = None, state: MonitorState | None = None):
        self.config = config or MonitorConfig()
        self.state = state or MonitorState()
        # The learned M fitted on the history as it was (its length and newest tick).
        self._learned: tuple[tuple[int, int], LearnedMonitor | None] | None = None

    def signals(self, votes: Sequence[LoggedVote]) -> MonitorSignals:
        """The tick's view of ``votes`` (the live votes, any order)."""
        s, c = self.state, self.config
        ordered = sorted(votes, key=lambda v: v.seq)
        losses = np.fromiter((v.loss for v in ordered), dtype=np.float64, count=len(ordered))
        since = np.fromiter(
            (v.seq > s.retrained_at for v in ordered), dtype=bool, count=len(ordered)
        )
        labelled = np.fromiter(
            (v.kind is not FeedbackKind.SKIPPED for v in ordered), dtype=bool, count=len(ordered)
        )
        overrides = sum(
            1
            for v, new in zip(ordered, since, strict=True)
            if new and v.kind is FeedbackKind.OVERRIDE
        )
        tallies: dict[str, PlaybookTally] = {}
        for v in ordered:
            if v.playbook_id is None or v.seq <= s.resumed_at.get(v.playbook_id, 0):
                continue
            tally = tallies.setdefault(v.playbook_id, PlaybookTally())
            tally.decisions += 1
            tally.overrides += v.kind is FeedbackKind.OVERRIDE
        drift = page_hinkley(losses[since], c.ph_delta, c.ph_threshold)
        return MonitorSignals(
            ewma=ewma(losses, c.ewma_alpha),
            drift=drift,
            drift_detected=drift > c.ph_threshold,
            labels_since_retrain=int((labelled & since).sum()),
            labels_at_retrain=int((labelled & ~since).sum()),
            overrides_since_retrain=overrides,
            playbooks=tallies,
        )

    def decide(self, sig: MonitorSignals) -> MonitorDecision:
        """One tick's decision: a pause if a playbook earned it, else the configured M's
        retrain / hold (the learned M answers once it has enough judged ticks)."""
        paused = self.pause_decision(sig)
        if paused is not None:
            return paused
        if self.config.policy is MonitorPolicy.LEARNED:
            learned = self.learned_decision(sig)
            if learned is not None:
                return learned
        return self.rule_decision(sig)

    def pause_decision(self, sig: MonitorSignals) -> MonitorDecision | None:
        s, c = self.state, self.config
        for pb, tally in sorted(sig.playbooks.items()):
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
        return None

    def learned_model(self) -> LearnedMonitor | None:
        """The learned M fitted on the judged ticks so far; None until there are enough
        of both verdicts to fit one."""
        c, history = self.config, self.state.history
        positives = sum(t.retrain for t in history)
        if len(history) < c.learned_min_ticks or min(positives, len(history) - positives) < (
            c.learned_min_each
        ):
            return None
        return LearnedMonitor.fit(history, c.learned_l2)

    def learned_decision(self, sig: MonitorSignals) -> MonitorDecision | None:
        """Retrain iff the learned M gives P(M* = retrain) ≥ ½; None without a model."""
        if sig.labels_since_retrain == 0:
            return MonitorDecision(MonitorAction.HOLD, "no new labels since the last retrain")
        model = self.learned_model()
        if model is None:
            return None
        p = model.probability(sig.features())
        n = len(self.state.history)
        if p >= 0.5:
            return MonitorDecision(
                MonitorAction.RETRAIN,
                f"learned monitor: P(a retrain helps) {p:.2f} ≥ 0.50 "
                f"(fitted on {n} past shadow retrains; {sig.labels_since_retrain} new labels)",
            )
        return MonitorDecision(
            MonitorAction.HOLD,
            f"learned monitor: P(a retrain helps) {p:.2f} < 0.50 "
            f"(fitted on {n} past shadow retrains; {sig.labels_since_retrain} new labels)",
        )

    def observe(self, sig: MonitorSignals, shadow_accepted: bool) -> None:
        """Keep this tick's signals with its shadow verdict M* for the learned M (call after
        deciding, so a tick is never judged by a model that saw its own verdict)."""
        self.state.history.append(JudgedTick(sig.features(), shadow_accepted))
        del self.state.history[: -self.config.learned_history]

    def rule_decision(self, sig: MonitorSignals) -> MonitorDecision:
        """The hand-written M: drift, then enough labels, then loss level or overrides."""
        c = self.config
        if sig.labels_since_retrain == 0:
            return MonitorDecision(MonitorAction.HOLD, "no new labels since the last retrain")
        if sig.drift_detected:
            return MonitorDecision(
                MonitorAction.RETRAIN,
                f"Page–Hinkley detected an upward shift in alignment loss "
                f"(statistic {sig.drift:.2f} > {c.ph_threshold:.2f})",
            )
        if sig.labels_since_retrain < c.min_labels:
            pending = " (a retrain request is pending)" if sig.retrain_requested else ""
            return MonitorDecision(
                MonitorAction.HOLD,
                f"{sig.labels_since_retrain} new labels since the last retrain, "
                f"fewer than the {c.min_labels} a fair hold-out test needs{pending}",
            )
        ewma_now = sig.ewma or 0.0
        if ewma_now > c.ewma_bound:
            return MonitorDecision(
                MonitorAction.RETRAIN,
                f"loss EWMA {ewma_now:.3f} > {c.ewma_bound:.3f} "
                f"with {sig.labels_since_retrain} new labels",
            )
        growth = sig.labels_since_retrain / max(1, sig.labels_at_retrain)
        if sig.retrain_requested and growth >= c.min_growth:
            return MonitorDecision(
                MonitorAction.RETRAIN,
                f"{sig.overrides_since_retrain} override(s) requested a retrain and "
                f"{sig.labels_since_retrain} new labels add {growth:.0%} to the "
                f"{sig.labels_at_retrain} the model was fitted on",
            )
        if sig.retrain_requested:
            return MonitorDecision(
                MonitorAction.HOLD,
                f"retrain requested, but {sig.labels_since_retrain} new labels add only "
                f"{growth:.0%} to the {sig.labels_at_retrain} the model was fitted on "
                f"(< {c.min_growth:.0%}); loss EWMA {ewma_now:.3f} ≤ {c.ewma_bound:.3f}",
            )
        return MonitorDecision(
            MonitorAction.HOLD,
            f"no override since the last retrain and loss EWMA {ewma_now:.3f} ≤ {c.ewma_bound:.3f}",
        )

    def retrained(self, upto: int) -> None:
        """A retrain decision (accepted or rejected alike) saw every vote up to step
        ``upto``: the since-last-retrain tallies start after it."""
        self.state.retrained_at = max(self.state.retrained_at, upto)

    def pause(self, playbook_id: str) -> None:
        self.state.paused.add(playbook_id)

    def resume(self, playbook_id: str, now: int) -> None:
        """Back into recommendations, with a clean tally: only votes after step ``now``
        count towards pausing it again."""
        self.state.paused.discard(playbook_id)
        self.state.resumed_at[playbook_id] = now


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


@dataclass(frozen=True, slots=True)
class LearnedMonitor:
    """P(M* = retrain | tick signals): L2-regularised logistic regression on standardised
    features, fitted by Newton's method (a few hundred ticks, seven features: exact and
    deterministic, no learning rate to choose)."""

    mean: npt.NDArray[np.float64]
    scale: npt.NDArray[np.float64]
    weights: npt.NDArray[np.float64]  # [bias, features...]

    @classmethod
    def fit(cls, ticks: Sequence[JudgedTick], l2: float = 1.0) -> LearnedMonitor:
        if not ticks:
            raise ValueError("no judged ticks to fit on")
        x = np.array([t.features for t in ticks], dtype=np.float64)
        y = np.array([t.retrain for t in ticks], dtype=np.float64)
        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        scale[scale < 1e-9] = 1.0
        design = np.hstack([np.ones((len(x), 1)), (x - mean) / scale])
        penalty = np.full(design.shape[1], l2)
        penalty[0] = 1e-6  # the bias is (almost) not shrunk: it carries the base rate
        w = np.zeros(design.shape[1])
        for _ in range(50):
            p = 1.0 / (1.0 + np.exp(-(design @ w)))
            grad = design.T @ (p - y) + penalty * w
            hessian = (design.T * (p * (1.0 - p))) @ design + np.diag(penalty)
            step = np.linalg.solve(hessian, grad)
            w -= step
            if float(np.abs(step).max()) < 1e-8:
                break
        return cls(mean, scale, w)

    def probability(self, features: Sequence[float]) -> float:
        z = np.asarray(features, dtype=np.float64)
        logit = float(self.weights[0] + ((z - self.mean) / self.scale) @ self.weights[1:])
        return float(1.0 / (1.0 + np.exp(-logit)))


@dataclass(frozen=True, slots=True)
class MetaAgreement:
    """How well M's retrain / hold answers agree with the reference M*: fidelity with the
    base rate it must be read against, and Cohen's κ (0: no better than chance given both
    policies' rates; an M that always holds scores fidelity = 1 − base rate and κ = 0)."""

    ticks: int
    fidelity: float
    base_rate: float  # share of ticks where M* says retrain
    kappa: float


def meta_agreement(decisions: Sequence[bool], ideal: Sequence[bool]) -> MetaAgreement:
    """``decisions[i]``: M retrained at tick i; ``ideal[i]``: M* says it should have."""
    if len(decisions) != len(ideal):
        raise ValueError(f"need paired decisions, got {len(decisions)} and {len(ideal)}")
    n = len(decisions)
    if n == 0:
        return MetaAgreement(0, 0.0, 0.0, 0.0)
    m = np.asarray(decisions, dtype=bool)
    r = np.asarray(ideal, dtype=bool)
    observed = float((m == r).mean())
    p_m, p_r = float(m.mean()), float(r.mean())
    chance = p_m * p_r + (1.0 - p_m) * (1.0 - p_r)
    # Both constant (chance agreement 1): κ is undefined; report 0, no evidence of skill.
    kappa = 0.0 if chance >= 1.0 - 1e-12 else (observed - chance) / (1.0 - chance)
    return MetaAgreement(n, observed, p_r, kappa)
