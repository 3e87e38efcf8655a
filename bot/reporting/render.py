"""Plain-text rendering of decisions: the console adapter's view of an explanation."""

from __future__ import annotations

from collections.abc import Sequence

from core.decision import Decision, Outcome

_BLOCKS = "▁▂▃▄▅▆▇█"


def gauge(score: float, threshold: float, width: int = 20) -> str:
    """A bar filled to ``score`` with a ``|`` where the threshold sits."""
    filled = round(max(0.0, min(1.0, score)) * width)
    mark = min(width - 1, round(max(0.0, min(1.0, threshold)) * width))
    cells = ["█" if i < filled else "░" for i in range(width)]
    cells[mark] = "|"
    return "[" + "".join(cells) + "]"


def sparkline(values: Sequence[float], lo: float = 0.0, hi: float = 1.0) -> str:
    if not values:
        return "(no feedback yet)"
    span = hi - lo or 1.0
    top = len(_BLOCKS) - 1
    return "".join(_BLOCKS[max(0, min(top, round((v - lo) / span * top)))] for v in values)


_HEADLINE = {
    Outcome.RECOMMEND: "RECOMMEND",
    Outcome.ABSTAIN: "NO RECOMMENDATION (not confident enough)",
    Outcome.BLOCKED: "NO RECOMMENDATION (blocked by the safety policies)",
    Outcome.NEEDS_APPROVAL: "AWAITING A SECOND ENGINEER (the safety policies ask for approval)",
    Outcome.DEFERRED: "DEFERRED (the safety policies say to wait)",
}


_SHOWN = ("severity", "redundancy", "utilisation", "maintenance_window")


def follow_up_text(decision: Decision) -> str | None:
    """What happens next to an awaiting candidate, or who approved the recommendation."""
    if decision.outcome is Outcome.RECOMMEND and decision.approved_by:
        return f"approved by {decision.approved_by} (second engineer)"
    if decision.outcome is Outcome.NEEDS_APPROVAL:
        return "a second engineer (not the requester) types approve, or reject <reason>"
    if decision.outcome is Outcome.DEFERRED and decision.deferral is not None:
        d = decision.deferral
        return f"can proceed: {d.text} (judged again then, attempt {d.attempt} of {d.max_attempts})"
    if decision.outcome is Outcome.DEFERRED:
        return "gave up: still deferred after every re-evaluation; decide by hand"
    return None


def render_decision(decision: Decision, brief: bool = False) -> str:
    exp = decision.explanation
    s = decision.scenario
    lines = [
        f"── incident: {s.component or 'unknown'}/{s.fault_type or 'unknown'} "
        f"on {s.device or '?'} ({'; '.join(f.text for f in s.facts() if f.name in _SHOWN)})",
        f"   {_HEADLINE[decision.outcome]}",
    ]
    c = decision.chosen or decision.pending
    if c is not None:
        lines.append(f"   playbook  {c.playbook_id} — {c.title} ({c.action.name})")
    follow = follow_up_text(decision)
    if follow:
        lines.append(f"   next      {follow}")
    lines += [
        f"   gauge     {gauge(exp.visual.score, exp.visual.threshold)} "
        f"score {exp.visual.score:.2f} vs τ {exp.visual.threshold:.1f}",
        f"   loss      {sparkline(exp.visual.recent_losses)}",
        f"   threshold {exp.threshold.text}",
        f"   policy    {exp.compliance.summary}",
    ]
    if brief:
        return "\n".join(lines)
    if decision.outcome is not Outcome.RECOMMEND and decision.candidates:
        lines.append("   candidates:")
        for cand, verdict in zip(decision.candidates, decision.verdicts, strict=True):
            lines.append(
                f"     - {cand.playbook_id}: score {cand.score:.2f}, SPE {verdict.verdict}"
            )
    lines.append("   trace:")
    lines += [f"     · {step}" for step in exp.trace]
    lines.append("   facts:")
    lines += [f"     · {f.label}: {f.value}" for f in exp.facts]
    return "\n".join(lines)
