"""Turn scored candidates, a threshold and SPE verdicts into a decision with its explanation.

The result is data only: ``bot/`` renders it (Block Kit, console). A candidate is
recommended only when its score clears the threshold *and* the SPE allows it; a candidate
that clears the threshold but is denied, deferred or needs approval is reported as such,
never as a recommendation.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

from core.bandit import ArmChoice
from core.policy import Action, PolicyVerdict, SafetyPolicyEngine, Verdict
from core.scenario import Scenario


class Outcome(enum.StrEnum):
    RECOMMEND = "recommend"
    ABSTAIN = "abstain"  # nothing cleared the threshold
    BLOCKED = "blocked"  # something cleared it, but the SPE did not allow any of it


@dataclass(frozen=True, slots=True)
class Candidate:
    """A retrieved playbook with the numbers the core computed for it."""

    playbook_id: str
    title: str
    action: Action
    similarity: float
    score: float
    model_prior: float
    observations: int = 0
    local_score: float | None = None


@dataclass(frozen=True, slots=True)
class Fact:
    label: str
    value: str


@dataclass(frozen=True, slots=True)
class VisualClue:
    """Data for a gauge (score against threshold) and a sparkline of recent losses."""

    score: float
    threshold: float
    recent_losses: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class ThresholdJustification:
    arm: int
    threshold: float
    alpha: float
    beta: float
    posterior_mean: float
    sample: float
    score: float

    @property
    def margin(self) -> float:
        return self.score - self.threshold

    @property
    def text(self) -> str:
        verb = "clears" if self.margin >= 0 else "is below"
        sampled = "" if self.sample != self.sample else f", sampled θ={self.sample:.2f}"
        return (
            f"score {self.score:.2f} {verb} τ={self.threshold:.1f} by {abs(self.margin):.2f}; "
            f"arm {self.arm} posterior Beta({self.alpha:.1f}, {self.beta:.1f}), "
            f"mean {self.posterior_mean:.2f}{sampled}"
        )


@dataclass(frozen=True, slots=True)
class Explanation:
    trace: tuple[str, ...]
    facts: tuple[Fact, ...]
    visual: VisualClue
    threshold: ThresholdJustification
    compliance: PolicyVerdict


@dataclass(frozen=True, slots=True)
class Decision:
    """A recommendation (``chosen`` set, outcome RECOMMEND) or an abstention/blocked verdict
    listing every candidate with its score and verdict."""

    outcome: Outcome
    scenario: Scenario
    candidates: tuple[Candidate, ...]
    verdicts: tuple[PolicyVerdict, ...]
    explanation: Explanation
    chosen: Candidate | None = None
    arm: ArmChoice | None = field(default=None)

    @property
    def recommended(self) -> bool:
        return self.outcome is Outcome.RECOMMEND


def decide(
    scenario: Scenario,
    candidates: Sequence[Candidate],
    arm: ArmChoice,
    spe: SafetyPolicyEngine,
    recent_losses: Sequence[float] = (),
    notes: Sequence[str] = (),
) -> Decision:
    """Rank by score; recommend the best candidate that clears τ and that the SPE allows.
    ``notes`` (what the caller did to the input, e.g. truncation) end the trace."""
    ranked = tuple(sorted(candidates, key=lambda c: (-c.score, c.playbook_id)))
    verdicts = tuple(spe.evaluate(scenario, c.action) for c in ranked)
    trace = [
        f"scenario {scenario.component or 'unknown'}/{scenario.fault_type or 'unknown'}, "
        f"severity {scenario.severity or 'unknown'}, context {scenario.context_key}"
        + (f"; unknown: {', '.join(scenario.unknown())}" if scenario.unknown() else ""),
        f"{len(ranked)} candidate(s) retrieved; "
        f"threshold τ={arm.threshold:.1f} from arm {arm.index}",
    ]
    chosen_i: int | None = None
    blocked = False
    for i, (cand, verdict) in enumerate(zip(ranked, verdicts, strict=True)):
        clears = cand.score >= arm.threshold
        trace.append(
            f"{cand.playbook_id}: score {cand.score:.2f} "
            f"({'≥' if clears else '<'} τ), SPE {verdict.verdict}"
        )
        if clears and verdict.allowed and chosen_i is None:
            chosen_i = i
        blocked = blocked or (clears and not verdict.allowed)

    if not ranked:
        return _empty(scenario, arm, tuple(trace), recent_losses, notes)
    if chosen_i is not None:
        outcome, focus = Outcome.RECOMMEND, chosen_i
        trace.append(f"recommend {ranked[focus].playbook_id}")
    elif blocked:
        outcome = Outcome.BLOCKED
        focus = next(
            i for i, c in enumerate(ranked) if c.score >= arm.threshold and not verdicts[i].allowed
        )
        trace.append(f"no recommendation: {ranked[focus].playbook_id} is {verdicts[focus].verdict}")
    else:
        outcome, focus = Outcome.ABSTAIN, 0
        trace.append("abstain: no candidate clears the threshold; showing candidates")

    top = ranked[focus]
    facts = (
        Fact("playbook", f"{top.playbook_id} — {top.title}"),
        Fact("action", f"{top.action.name} on {top.action.target or scenario.device or '—'}"),
        Fact("retrieval similarity", f"{top.similarity:.2f}"),
        Fact("model prior", f"{top.model_prior:.2f}"),
        Fact(
            "scenario evidence",
            f"{top.observations} past judgment(s)"
            + ("" if top.local_score is None else f", local score {top.local_score:.2f}"),
        ),
        *_context_facts(scenario),
    )
    justification = ThresholdJustification(
        arm.index,
        arm.threshold,
        arm.alpha,
        arm.beta,
        arm.posterior_mean,
        arm.sample,
        top.score,
    )
    explanation = Explanation(
        trace=(*trace, *notes),
        facts=facts,
        visual=VisualClue(top.score, arm.threshold, tuple(recent_losses)),
        threshold=justification,
        compliance=verdicts[focus],
    )
    return Decision(
        outcome,
        scenario,
        ranked,
        verdicts,
        explanation,
        chosen=ranked[focus] if outcome is Outcome.RECOMMEND else None,
        arm=arm,
    )


_CONTEXT_FACTS = ("severity", "redundancy", "utilisation", "maintenance_window")


def _context_facts(scenario: Scenario) -> tuple[Fact, ...]:
    """The context the policies read, each with its source and age or as unknown: an
    explanation never states a guess as a fact (``redundancy 2 — prometheus, 40 s ago``)."""
    return tuple(
        Fact(f.name.replace("_", " "), f.text.removeprefix(f.name.replace("_", " ")).lstrip(": "))
        for f in scenario.facts()
        if f.name in _CONTEXT_FACTS
    )


def _empty(
    scenario: Scenario,
    arm: ArmChoice,
    trace: tuple[str, ...],
    recent: Sequence[float],
    notes: Sequence[str],
) -> Decision:
    justification = ThresholdJustification(
        arm.index, arm.threshold, arm.alpha, arm.beta, arm.posterior_mean, arm.sample, 0.0
    )
    explanation = Explanation(
        trace=(*trace, "no playbook matched this incident", *notes),
        facts=(),
        visual=VisualClue(0.0, arm.threshold, tuple(recent)),
        threshold=justification,
        compliance=PolicyVerdict(Verdict.ALLOW),
    )
    return Decision(Outcome.ABSTAIN, scenario, (), (), explanation, arm=arm)
