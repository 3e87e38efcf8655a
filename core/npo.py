"""The NPO loop in memory: score → threshold → SPE → decision → feedback → monitor → retrain.

The simulator drives this class; the bot keeps the same state in its database and calls the
same pure pieces inside its transactions: the one learning step (``core.learning``), the
scenario posterior (``core.scoring``), ``ThresholdBandit``, ``MetaMonitor`` and ``fit``.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from core.bandit import ArmChoice, BanditConfig, ThresholdBandit
from core.decision import Candidate, Decision, decide
from core.feedback import DEFAULT_SKIP_LOSS, FeedbackKind, signal
from core.learning import LearningConfig, VoteEffect, learn, learn_unanswered, unlearn
from core.model import (
    Example,
    FeatureHasher,
    FitConfig,
    LogisticModel,
    Prior,
    SimilarityPrior,
    fit,
)
from core.monitor import (
    LoggedVote,
    MetaMonitor,
    MonitorAction,
    MonitorConfig,
    MonitorDecision,
    MonitorSignals,
)
from core.policy import Action, SafetyPolicyEngine
from core.scenario import Scenario
from core.scoring import ScoreTable, ScoringConfig
from core.utility import UtilityConfig


class ThresholdMode(enum.StrEnum):
    THOMPSON = "thompson"
    FIXED = "fixed"
    RANDOM = "random"
    ABSTAIN = "abstain"  # the baseline that never recommends


def _bandit_from_utility() -> BanditConfig:
    return BanditConfig(start=UtilityConfig().best_threshold)


@dataclass(frozen=True, slots=True)
class Match:
    """A retrieved playbook before scoring: what retrieval hands to the core."""

    playbook_id: str
    title: str
    action: Action
    similarity: float


@dataclass(frozen=True, slots=True)
class RetrainConfig:
    """Controlled retraining: a candidate must beat the live model on the newest feedback,
    by δ in a proper scoring rule (``holdout_loss``)."""

    holdout_fraction: float = 0.5  # of the feedback newer than the live model
    min_holdout: int = 5
    min_gain: float = 0.002  # δ, in the weighted Brier score of the hold-out

    def __post_init__(self) -> None:
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ValueError(f"holdout_fraction: {self.holdout_fraction} must be within (0, 1)")
        if self.min_holdout < 1:
            raise ValueError(f"min_holdout: {self.min_holdout} must be >= 1")
        if self.min_gain < 0:
            raise ValueError(f"min_gain: {self.min_gain} must be >= 0")


@dataclass(frozen=True, slots=True)
class NPOConfig:
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    bandit: BanditConfig = field(default_factory=_bandit_from_utility)
    utility: UtilityConfig = field(default_factory=UtilityConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    fit: FitConfig = field(default_factory=FitConfig)
    threshold_mode: ThresholdMode = ThresholdMode.THOMPSON
    fixed_threshold: float = 0.7
    skip_loss: float = DEFAULT_SKIP_LOSS
    learn: bool = True  # False: the static baseline (scores, bandit and model never change)

    def __post_init__(self) -> None:
        if self.fixed_threshold not in self.bandit.arms:
            raise ValueError(
                f"fixed_threshold: {self.fixed_threshold} is not one of the arms {self.bandit.arms}"
            )
        if self.skip_loss < 0:
            raise ValueError(f"skip_loss: {self.skip_loss} must be >= 0")

    @property
    def learning(self) -> LearningConfig:
        return LearningConfig(self.scoring, self.utility, self.skip_loss)

    @property
    def bandit_learns(self) -> bool:
        """Only a Thompson bandit learns its arms (fixed, random and abstain do not)."""
        return self.learn and self.threshold_mode is ThresholdMode.THOMPSON


@dataclass(frozen=True, slots=True)
class RetrainResult:
    """Outcome of fitting a candidate with a time-ordered hold-out."""

    accepted: bool
    live_loss: float
    candidate_loss: float
    holdout: int
    reason: str

    @property
    def gain(self) -> float:
        return self.live_loss - self.candidate_loss


@dataclass(frozen=True, slots=True)
class TickReport:
    """M's decision, the shadow evaluation behind M* and, if M retrained, the outcome."""

    decision: MonitorDecision
    shadow: RetrainResult
    candidate: LogisticModel | None = None
    retrain: RetrainResult | None = None
    signals: MonitorSignals | None = None
    rule: MonitorDecision | None = None  # what each M would have answered at this tick
    learned: MonitorDecision | None = None  # None: too few judged ticks to fit it yet


def holdout_loss(prior: Prior, examples: Sequence[Example]) -> float:
    """Weighted Brier score of the prior on these judgments: Σ w·(p − y)² / Σ w.

    A proper scoring rule: its expectation is lowest for the true P(like), so the gate
    cannot be won by an over-confident model (|p − y| can: it is minimised by rounding p
    to 0 or 1). Brier rather than log loss: bounded, so one confident miss among a few
    dozen hold-out judgments cannot decide a retrain alone. Skips carry no label.
    """
    total = weight = 0.0
    for ex in examples:
        sig = signal(ex.kind)
        if sig.label is None:
            continue
        p = prior.predict(ex.playbook_id, ex.context, ex.similarity)
        total += sig.weight * (p - sig.label) ** 2
        weight += sig.weight
    return total / weight if weight else 0.0


def evaluate_candidate(
    log: Sequence[Example],
    trained_upto: int,
    live: Prior,
    config: NPOConfig,
    hasher: FeatureHasher | None = None,
) -> tuple[RetrainResult, LogisticModel | None]:
    """Fit a candidate and compare it with the live prior on feedback neither has seen.

    ``log`` is the live labelled feedback ordered by ``seq``; the live prior was fitted on
    the votes up to step ``trained_upto`` (a watermark, so withdrawals elsewhere in the log
    cannot shift it). The hold-out is the newest ``holdout_fraction`` of the feedback newer
    than the watermark (never shuffled); the candidate trains on everything before it.
    Holding out older feedback would score the live model on its own training data and
    bias the test towards keeping it.
    """
    fresh = sum(1 for ex in log if ex.seq > trained_upto)
    n_hold, too_few = holdout_size(fresh, config.retrain)
    if too_few is not None:
        return too_few, None
    train, hold = log[:-n_hold], log[-n_hold:]
    candidate = fit(train, config.fit, hasher)
    verdict = retrain_verdict(
        holdout_loss(live, hold), holdout_loss(candidate, hold), len(hold), config.retrain
    )
    return verdict, candidate


def holdout_size(fresh: int, rc: RetrainConfig) -> tuple[int, RetrainResult | None]:
    """How many of the newest votes to hold out, and the refusal when ``fresh`` votes
    (newer than the live model) are too few to train and hold out (the one rule for the
    object and the columnar retrain)."""
    n_hold = max(rc.min_holdout, int(fresh * rc.holdout_fraction))
    if fresh < n_hold + rc.min_holdout:
        reason = (
            f"{fresh} labelled decisions since the live model was trained; "
            f"need {2 * rc.min_holdout} to train and hold out"
        )
        return n_hold, RetrainResult(False, 0.0, 0.0, 0, reason)
    return n_hold, None


def retrain_verdict(
    live_loss: float, cand_loss: float, held_out: int, rc: RetrainConfig
) -> RetrainResult:
    """Accept the candidate when it lowers the hold-out Brier score by at least δ."""
    accepted = live_loss - cand_loss >= rc.min_gain
    verb = "lowers" if accepted else "does not lower"
    reason = (
        f"candidate {verb} hold-out Brier score by δ={rc.min_gain}: "
        f"{live_loss:.4f} → {cand_loss:.4f} on {held_out} decisions"
    )
    return RetrainResult(accepted, live_loss, cand_loss, held_out, reason)


class NPO:
    def __init__(
        self,
        spe: SafetyPolicyEngine,
        config: NPOConfig | None = None,
        rng: np.random.Generator | None = None,
    ) -> None:
        self.config = config or NPOConfig()
        self.spe = spe
        self.rng = rng or np.random.default_rng(0)
        self.scores = ScoreTable(self.config.scoring)
        self.bandit = ThresholdBandit(self.config.bandit)
        self.monitor = MetaMonitor(self.config.monitor)
        self.prior: Prior = SimilarityPrior()
        self.log: list[Example] = []  # labelled votes, for retrains
        self.votes: list[LoggedVote] = []  # every vote, for the monitor
        self.step = 0  # learning clock: one step per vote
        self.hasher = FeatureHasher(self.config.fit.dim)
        self.trained_upto = 0  # learning step of the newest vote the live prior was fitted on
        self.losses: list[float] = []
        # Each live vote's effect, by (decision, voter); the decision is kept alive with it.
        self._effects: dict[tuple[int, str], tuple[Decision, VoteEffect]] = {}
        self.retrains_accepted = 0
        self.retrains_rejected = 0
        # One context mapping per scenario key, shared by its votes and never mutated: a
        # fit sorts each distinct mapping once (``core.model``), not once per vote.
        self._contexts: dict[str, dict[str, str]] = {}

    def _context(self, scenario: Scenario) -> dict[str, str]:
        context = self._contexts.get(scenario.context_key)
        if context is None:
            context = self._contexts[scenario.context_key] = scenario.context()
        return context

    # -- deciding -------------------------------------------------------------------------
    def candidate(self, scenario: Scenario, match: Match) -> Candidate:
        context = self._context(scenario)
        prior = self.prior.predict(match.playbook_id, context, match.similarity)
        sid = (match.playbook_id, scenario.context_key)
        local = self.scores.get(sid)
        return Candidate(
            playbook_id=match.playbook_id,
            title=match.title,
            action=match.action,
            similarity=match.similarity,
            score=self.scores.score(sid, prior),
            model_prior=prior,
            observations=local.observations if local else 0,
            local_score=local.local if local else None,
        )

    def choose_arm(self) -> ArmChoice:
        mode = self.config.threshold_mode
        if mode is ThresholdMode.FIXED:
            return self.bandit.arm_for(self.config.fixed_threshold)
        if mode is ThresholdMode.RANDOM:
            return self.bandit.arm_for(
                self.bandit.arms[int(self.rng.integers(len(self.bandit.arms)))]
            )
        if mode is ThresholdMode.ABSTAIN:
            # No score clears an infinite threshold; the bandit never learns from it.
            top = len(self.bandit.arms) - 1
            return ArmChoice(top, math.inf, 1.0, 1.0, float("nan"))
        return self.bandit.choose(self.rng)

    def decide(self, scenario: Scenario, matches: Sequence[Match]) -> Decision:
        paused = self.monitor.state.paused
        candidates = [self.candidate(scenario, m) for m in matches if m.playbook_id not in paused]
        return decide(scenario, candidates, self.choose_arm(), self.spe, self.losses[-20:])

    # -- learning -------------------------------------------------------------------------
    def feedback(
        self,
        decision: Decision,
        playbook_id: str | None,
        kind: FeedbackKind,
        voter: str = "",
    ) -> float:
        """Record one operator's judgment of a candidate (or a skip); returns its loss.

        A second vote by the same ``voter`` on the same decision replaces the first: what
        the first taught is taken back before the second is learned, as in the bot.
        """
        self.withdraw(decision, voter)
        self.step += 1
        bandit = self.bandit if self.config.bandit_learns else None
        effect = learn(decision, playbook_id, kind, self.step, self.config.learning, bandit)
        self._effects[(id(decision), voter)] = (decision, effect)
        self.losses.append(effect.loss)
        self.votes.append(effect.logged())
        if effect.playbook_id is None or signal(kind).label is None:
            return effect.loss
        context = self._context(decision.scenario)
        target = next(c for c in decision.candidates if c.playbook_id == effect.playbook_id)
        self.log.append(Example(target.playbook_id, context, target.similarity, kind, self.step))
        if self.config.learn:
            sid = (target.playbook_id, effect.context_key)
            self.scores.add(sid, effect.evidence, kind, target.model_prior)
        return effect.loss

    def unanswered(self, decision: Decision) -> None:
        """An abstention nobody answered: the bot's silence, not anyone's skip (no vote,
        no loss); the arms learn its expected worth (``core.learning.learn_unanswered``)."""
        learn_unanswered(
            decision, self.config.learning, self.bandit if self.config.bandit_learns else None
        )

    def withdraw(self, decision: Decision, voter: str = "") -> VoteEffect | None:
        """Take back everything one voter's vote on this decision taught (exactly)."""
        stored = self._effects.pop((id(decision), voter), None)
        if stored is None:
            return None
        effect = stored[1]
        unlearn(effect, self.bandit if self.config.bandit_learns else None)
        self.votes = [v for v in self.votes if v.seq != effect.step]
        self.log = [ex for ex in self.log if ex.seq != effect.step]
        if self.config.learn and effect.playbook_id is not None:
            self.scores.remove((effect.playbook_id, effect.context_key), effect.evidence)
        return effect

    def evaluate_retrain(self) -> tuple[RetrainResult, LogisticModel | None]:
        return evaluate_candidate(self.log, self.trained_upto, self.prior, self.config, self.hasher)

    def retrain(self, evaluated: RetrainResult | None = None, force: bool = False) -> RetrainResult:
        """Controlled retrain; ``force`` accepts the candidate regardless (no meta-monitor)."""
        result = evaluated if evaluated is not None else self.evaluate_retrain()[0]
        if result.accepted or force:
            self.prior = fit(
                self.log, self.config.fit, self.hasher
            )  # the accepted model sees everything
            self.trained_upto = self.step
            self.retrains_accepted += 1
        else:
            self.retrains_rejected += 1
        self.monitor.retrained(self.step)
        return result

    def tick(self) -> TickReport:
        """One meta-monitoring tick: shadow evaluation (M*), M's decision carried out, then
        the tick joins the history the learned M is fitted on (after deciding, so M never
        sees the verdict of the tick it decides)."""
        if not self.config.learn:
            hold = MonitorDecision(MonitorAction.HOLD, "learning disabled")
            return TickReport(hold, RetrainResult(False, 0.0, 0.0, 0, "learning disabled"))
        shadow, candidate = self.evaluate_retrain()
        monitor = self.monitor
        signals = monitor.signals(self.votes)
        decision = monitor.decide(signals)
        rule = monitor.pause_decision(signals) or monitor.rule_decision(signals)
        learned = monitor.pause_decision(signals) or monitor.learned_decision(signals)
        if shadow.holdout:
            monitor.observe(signals, shadow.accepted)
        report = TickReport(decision, shadow, candidate, None, signals, rule, learned)
        if decision.action is MonitorAction.PAUSE_PLAYBOOK and decision.playbook_id:
            monitor.pause(decision.playbook_id)
        elif decision.action is MonitorAction.RETRAIN:
            return replace(report, retrain=self.retrain(shadow))
        return report
