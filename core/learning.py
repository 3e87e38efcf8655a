"""The one learning step: a vote on a decision becomes score evidence, arm evidence, a loss
and a utility — and can be taken back exactly.

The simulator (``core.npo.NPO``) and the bot's service (``bot.service``) both call
``learn`` for every vote and ``unlearn`` for a withdrawn or replaced one, so the loop the
simulator measures is the loop the bot runs. Nothing here does I/O: the caller keeps the
scenario evidence (the bot derives it from its live votes) and the bandit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from core.bandit import ArmDelta, BanditRule, ThresholdBandit
from core.decision import Candidate, Decision
from core.feedback import DEFAULT_SKIP_LOSS, FeedbackKind, alignment_loss
from core.monitor import LoggedVote
from core.scoring import Evidence, ScoringConfig, evidence
from core.utility import UtilityConfig, utility


@dataclass(frozen=True, slots=True)
class LearningConfig:
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    utility: UtilityConfig = field(default_factory=UtilityConfig)
    skip_loss: float = DEFAULT_SKIP_LOSS


@dataclass(frozen=True, slots=True)
class VoteEffect:
    """What one vote taught, kept with the vote so that taking it back is exact."""

    playbook_id: str | None  # the judged candidate (None: the decision had none)
    context_key: str
    kind: FeedbackKind
    score: float  # the judged candidate's score when the decision was made
    surfaced: bool  # it was the recommendation the operator was shown
    loss: float  # the paper's alignment loss of this decision
    utility: float  # what the decision was worth, given this vote
    evidence: Evidence  # added to the scenario (playbook_id, context_key)
    arms: ArmDelta | None  # added to the threshold arms (None: no arm learned)
    step: int  # the learning step of this vote

    def logged(self) -> LoggedVote:
        """The vote as the meta-monitor reads it."""
        return LoggedVote(self.step, self.kind, self.loss, self.playbook_id)


def judged(decision: Decision, playbook_id: str | None) -> Candidate | None:
    """The candidate a vote is about: the one it names, else the recommendation, else the
    top candidate of an abstention (a vote without a name judges what the bot showed)."""
    wanted = playbook_id or (decision.chosen.playbook_id if decision.chosen else None)
    if wanted is None and decision.candidates:
        wanted = decision.candidates[0].playbook_id
    return next((c for c in decision.candidates if c.playbook_id == wanted), None)


def shown_at(decision: Decision, tau: float) -> Candidate | None:
    """What a decision at threshold ``tau`` would have surfaced: the best-ranked candidate
    that clears it and that the SPE allows (None: it would have abstained)."""
    return next(
        (
            c
            for c, v in zip(decision.candidates, decision.verdicts, strict=True)
            if c.score >= tau and v.allowed
        ),
        None,
    )


def arm_rewards(
    decision: Decision,
    target: Candidate,
    kind: FeedbackKind,
    arms: Sequence[float],
    config: UtilityConfig,
) -> list[float | None]:
    """What each arm would have earned on this decision, on [0, 1] (None: unknown).

    An arm surfaces the best-ranked candidate that clears it and that the SPE allows. If
    that is the judged candidate, the vote is its verdict; if the arm would have abstained,
    a like means it missed a good recommendation and anything else that it was right to
    wait; if the arm would have surfaced another candidate, this vote does not say how that
    would have gone. A candidate the SPE did not allow is no threshold's doing: no arm learns.
    """
    if kind is FeedbackKind.SKIPPED:
        return [None] * len(arms)
    verdicts = dict(
        zip((c.playbook_id for c in decision.candidates), decision.verdicts, strict=True)
    )
    verdict = verdicts.get(target.playbook_id)
    if verdict is None or not verdict.allowed:
        return [None] * len(arms)
    rewards: list[float | None] = []
    for tau in arms:
        shown = shown_at(decision, tau)
        if shown is None:
            rewards.append(config.reward(utility(False, kind, config)))
        elif shown.playbook_id == target.playbook_id:
            rewards.append(config.reward(utility(True, kind, config)))
        else:
            rewards.append(None)
    return rewards


def learn(
    decision: Decision,
    playbook_id: str | None,
    kind: FeedbackKind,
    step: int,
    config: LearningConfig,
    bandit: ThresholdBandit | None = None,
) -> VoteEffect:
    """Apply one vote: ``bandit`` (if given) is updated in place; the returned effect says
    what the caller adds to the scenario's evidence and keeps for ``unlearn``."""
    target = judged(decision, playbook_id)
    score = target.score if target else 0.0
    surfaced = (
        target is not None
        and decision.chosen is not None
        and decision.chosen.playbook_id == target.playbook_id
    )
    arms: ArmDelta | None = None
    if bandit is not None and target is not None and decision.arm is not None:
        if bandit.config.rule is BanditRule.UTILITY:
            rewards = arm_rewards(decision, target, kind, bandit.arms, config.utility)
            arms = bandit.credit(rewards)
        else:
            arms = bandit.update(bandit.nearest_arm(decision.arm.threshold), score, kind, surfaced)
    return VoteEffect(
        playbook_id=target.playbook_id if target else None,
        context_key=decision.scenario.context_key,
        kind=kind,
        score=score,
        surfaced=surfaced,
        loss=alignment_loss(kind, score, config.skip_loss),
        utility=utility(surfaced, kind, config.utility) if target else 0.0,
        evidence=evidence(kind, config.scoring) if target else Evidence(),
        arms=arms,
        step=step,
    )


def unanswered_rewards(
    decision: Decision, arms: Sequence[float], config: UtilityConfig
) -> list[float | None]:
    """What each arm is expected to have earned on an abstention nobody answered.

    Operators answer an abstention mostly when a listed candidate is right, so learning
    only from answered ones would teach the arms that waiting is always a missed chance.
    An arm that would also have abstained earned nothing (0); an arm that would have shown
    a candidate is credited what its calibrated score says that was worth,
    ``s − (1 − s)·C``, the model's estimate where no judgment came.
    """
    rewards: list[float | None] = []
    for tau in arms:
        shown = shown_at(decision, tau)
        worth = 0.0 if shown is None else shown.score - (1 - shown.score) * config.override_cost
        rewards.append(config.reward(worth))
    return rewards


def learn_unanswered(
    decision: Decision, config: LearningConfig, bandit: ThresholdBandit | None
) -> ArmDelta | None:
    """An abstention nobody answered: no vote, no loss, no scenario evidence; the arms learn
    its expected worth (``unanswered_rewards``). Nothing when the bot recommended."""
    if bandit is None or decision.chosen is not None or not decision.candidates:
        return None
    if bandit.config.rule is not BanditRule.UTILITY or decision.arm is None:
        return None
    return bandit.credit(unanswered_rewards(decision, bandit.arms, config.utility))


def unlearn(effect: VoteEffect, bandit: ThresholdBandit | None) -> None:
    """Take back what ``effect`` added to the arms; the caller removes ``effect.evidence``."""
    if bandit is not None and effect.arms is not None:
        bandit.take_back(effect.arms)
