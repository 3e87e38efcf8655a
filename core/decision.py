"""Turn scored candidates, a threshold and SPE verdicts into a decision with its explanation.

The result is data only: ``bot/`` renders it (Block Kit, console). A candidate is
recommended only when its score clears the threshold *and* the SPE allows it. Denied
candidates are passed over; the best candidate that clears τ and is not denied decides the
outcome: allowed → recommend, needs approval → awaiting a second engineer, defer → deferred
(``pending`` names it). Only when every candidate that clears τ is denied is it blocked.
A pending candidate is never shown as a recommendation until ``approved`` or
``reevaluated`` turns it into one.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from core.bandit import ArmChoice
from core.policy import Action, PolicyVerdict, SafetyPolicyEngine, Verdict
from core.scenario import Scenario


class Outcome(enum.StrEnum):
    RECOMMEND = "recommend"
    ABSTAIN = "abstain"  # nothing cleared the threshold
    BLOCKED = "blocked"  # something cleared it, but the SPE denied all of it
    NEEDS_APPROVAL = "needs_approval"  # the best one not denied waits for a second engineer
    DEFERRED = "deferred"  # the best one not denied waits for a later time (a window)


# What the SPE's verdict on the deciding candidate makes of the decision.
_OUTCOME_OF = {
    Verdict.ALLOW: Outcome.RECOMMEND,
    Verdict.NEEDS_APPROVAL: Outcome.NEEDS_APPROVAL,
    Verdict.DEFER: Outcome.DEFERRED,
    Verdict.DENY: Outcome.BLOCKED,
}


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
class Deferral:
    """When a deferred candidate is judged again: when the next maintenance window opens,
    or (no window known) after a retry delay; ``attempt`` of at most ``max_attempts``."""

    at: dt.datetime
    window: bool
    attempt: int = 1
    max_attempts: int = 1

    @property
    def text(self) -> str:
        """``next window opens Tue 02:00 UTC`` (or, no window known, when it is checked)."""
        at = self.at.astimezone(dt.UTC)
        when = f"{at:%a %H:%M} UTC"
        if self.window:
            return f"next window opens {when}"
        return f"no maintenance window known: checked again {when}"


@dataclass(frozen=True, slots=True)
class Decision:
    """A recommendation (``chosen`` set, outcome RECOMMEND) or an abstention/blocked verdict
    listing every candidate with its score and verdict.

    ``pending`` is the candidate awaiting approval or a later time (NEEDS_APPROVAL,
    DEFERRED); it stays set once approved or re-evaluated, with ``approved_by`` naming the
    second engineer. ``deferral`` says when a deferred candidate is judged again."""

    outcome: Outcome
    scenario: Scenario
    candidates: tuple[Candidate, ...]
    verdicts: tuple[PolicyVerdict, ...]
    explanation: Explanation
    chosen: Candidate | None = None
    arm: ArmChoice | None = field(default=None)
    pending: Candidate | None = None
    deferral: Deferral | None = None
    approved_by: str = ""

    @property
    def recommended(self) -> bool:
        return self.outcome is Outcome.RECOMMEND

    @property
    def awaiting(self) -> bool:
        """A candidate waits for an approval or a later time: not yet a recommendation."""
        return self.outcome in (Outcome.NEEDS_APPROVAL, Outcome.DEFERRED)


def approved(decision: Decision, approver: str, at: dt.datetime) -> Decision:
    """The decision once a second engineer approved its pending candidate: a recommendation
    of it (surfaced from now on), with the approval at the end of the trace."""
    if decision.outcome is not Outcome.NEEDS_APPROVAL or decision.pending is None:
        raise ValueError(f"approve: the decision is {decision.outcome.value}, not needs_approval")
    name = decision.pending.playbook_id
    note = f"approved by {approver} at {at:%Y-%m-%d %H:%M} UTC: recommend {name}"
    explanation = replace(decision.explanation, trace=(*decision.explanation.trace, note))
    return replace(
        decision,
        outcome=Outcome.RECOMMEND,
        chosen=decision.pending,
        explanation=explanation,
        approved_by=approver,
    )


def reevaluated(
    decision: Decision,
    verdict: PolicyVerdict,
    at: dt.datetime,
    deferral: Deferral | None = None,
    fresh: Scenario | None = None,
) -> Decision:
    """The decision after the SPE judged its deferred candidate again (fresh context):
    allowed → a recommendation of it; needs approval → awaiting a second engineer; defer →
    still deferred (``deferral``: until when; None when nobody checks again); deny →
    blocked. ``fresh``: the scenario the SPE judged this time, named in the trace (the
    facts above it are those of the first decision)."""
    if decision.pending is None:
        raise ValueError("reevaluate: the decision has no pending candidate")
    outcome = _OUTCOME_OF[verdict.verdict]
    pending = decision.pending
    seen = ""
    if fresh is not None:
        seen = (
            " with fresh context ("
            + ", ".join(f"{k} {v}" for k, v in fresh.context().items())
            + ")"
        )
    note = (
        f"re-evaluated at {at:%Y-%m-%d %H:%M} UTC{seen}: {pending.playbook_id} is {verdict.verdict}"
    )
    explanation = replace(
        decision.explanation, trace=(*decision.explanation.trace, note), compliance=verdict
    )
    verdicts = tuple(
        verdict if c.playbook_id == pending.playbook_id else v
        for c, v in zip(decision.candidates, decision.verdicts, strict=True)
    )
    return replace(
        decision,
        outcome=outcome,
        chosen=pending if outcome is Outcome.RECOMMEND else None,
        verdicts=verdicts,
        explanation=explanation,
        deferral=deferral if outcome is Outcome.DEFERRED else None,
    )


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
    unknown = scenario.unknown()
    trace = [
        f"scenario {scenario.component or 'unknown'}/{scenario.fault_type or 'unknown'}, "
        f"severity {scenario.severity or 'unknown'}, context {scenario.context_key}"
        + (f"; unknown: {', '.join(unknown)}" if unknown else ""),
        f"{len(ranked)} candidate(s) retrieved; "
        f"threshold τ={arm.threshold:.1f} from arm {arm.index}",
    ]
    deciding: int | None = None  # the best candidate that clears τ and is not denied
    denied: int | None = None  # the best one that clears τ, if all of those are denied
    for i, (cand, verdict) in enumerate(zip(ranked, verdicts, strict=True)):
        clears = cand.score >= arm.threshold
        trace.append(
            f"{cand.playbook_id}: score {cand.score:.2f} "
            f"({'≥' if clears else '<'} τ), SPE {verdict.verdict}"
        )
        if clears and deciding is None:
            if verdict.verdict is not Verdict.DENY:
                deciding = i
            elif denied is None:
                denied = i

    if not ranked:
        return _empty(scenario, arm, tuple(trace), recent_losses, notes)
    if deciding is not None:
        focus = deciding
        outcome = _OUTCOME_OF[verdicts[focus].verdict]
        name = ranked[focus].playbook_id
        trace.append(
            {
                Outcome.RECOMMEND: f"recommend {name}",
                Outcome.NEEDS_APPROVAL: f"{name} awaits a second engineer's approval",
                Outcome.DEFERRED: f"{name} is deferred: the policies say to wait",
            }[outcome]
        )
    elif denied is not None:
        outcome, focus = Outcome.BLOCKED, denied
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
        pending=ranked[focus] if outcome in (Outcome.NEEDS_APPROVAL, Outcome.DEFERRED) else None,
    )


_CONTEXT_FACTS = frozenset({"severity", "redundancy", "utilisation", "maintenance_window"})


def _context_facts(scenario: Scenario) -> tuple[Fact, ...]:
    """The context the policies read, each with its source and age or as unknown: an
    explanation never states a guess as a fact (``redundancy 2 — prometheus, 40 s ago``)."""
    return tuple(
        Fact(f.name.replace("_", " "), f.text.removeprefix(f.name.replace("_", " ")).lstrip(": "))
        for f in scenario.facts(_CONTEXT_FACTS)
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
