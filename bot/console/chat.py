"""The console adapter (``npo chat``): the same service as Slack, in a terminal or a pipe.

Type an incident to get a recommendation; then ``like``, ``override <reason>``,
``neutral``, ``skip`` or ``like <playbook>`` (for a candidate of an abstention) apply to
the last recommendation; ``stats``, ``verbosity brief|full``, ``help`` and ``quit``.
When it awaits a second engineer, ``as <name>`` switches who is typing (``as`` alone says
who), and ``approve`` or ``reject <reason>`` decides it.
"""

from __future__ import annotations

import itertools
import logging
import sys
import time
from collections.abc import Callable, Collection, Iterable

from bot.reporting.render import render_decision
from bot.reporting.stats import PlaybookStats
from bot.service import FeedbackInput, FeedbackStatus, IncidentInput, NPOService
from bot.service.approvals import REFUSED, ApprovalStatus, Approvers, approve, reject
from core.decision import Outcome
from core.feedback import FeedbackKind

HELP = __doc__ or ""
log = logging.getLogger(__name__)
KINDS = {
    "like": FeedbackKind.LIKE,
    "override": FeedbackKind.OVERRIDE,
    "neutral": FeedbackKind.NEUTRAL,
    "skip": FeedbackKind.SKIPPED,
}


def format_stats(service: NPOService) -> str:
    return format_rows(service.stats())


def format_rows(rows: list[PlaybookStats]) -> str:
    if not rows:
        return "no feedback yet"
    lines = [
        f"{'playbook':36s} {'n':>4s} {'like':>5s} {'ovr':>4s} {'neu':>4s} {'skip':>5s} {'loss':>6s}"
    ]
    for r in rows:
        lines.append(
            f"{r.playbook_id:36s} {r.decisions:4d} {r.likes:5d} {r.overrides:4d} "
            f"{r.neutral:4d} {r.skipped:5d} {r.mean_loss:6.3f}"
        )
    return "\n".join(lines)


def run_console(
    service: NPOService,
    lines: Iterable[str],
    echo: Callable[[str], None] = print,
    operator: str = "console",
    approvers: Collection[str] = (),
) -> int:
    """``approvers``: who may approve (empty: anyone who types, but never the requester)."""
    may_approve = Approvers(approvers, lambda _user: True).may_approve
    last: str | None = None
    counter = itertools.count(1)
    verbosity = service.verbosity(operator, "full")
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        word, _, rest = line.partition(" ")
        word = word.lower()
        if word in {"quit", "exit"}:
            break
        if word == "help":
            echo(HELP)
        elif word == "stats":
            echo(format_stats(service))
        elif word == "verbosity":
            try:
                service.set_verbosity(operator, rest.strip())
                verbosity = rest.strip()
                echo(f"verbosity: {verbosity}")
            except ValueError as exc:
                echo(f"error: {exc}")
        elif word == "as":
            name = rest.strip()
            if name:
                operator = name[:64]
                verbosity = service.verbosity(operator, "full")
            echo(f"operator: {operator}")
        elif word in {"approve", "reject"}:
            if last is None:
                echo("no recommendation yet: describe an incident first")
                continue
            echo(_approval(service, last, operator, may_approve(operator), word, rest))
        elif word in KINDS:
            if last is None:
                echo("no recommendation yet: describe an incident first")
                continue
            kind = KINDS[word]
            target = rest.strip() if kind is FeedbackKind.LIKE and rest.strip() else None
            reason = rest.strip() if kind is FeedbackKind.OVERRIDE else ""
            event_id = f"console:{last}:{next(counter)}"
            started = time.perf_counter()
            result = service.record_feedback(
                FeedbackInput(
                    last,
                    operator,
                    kind,
                    event_id,
                    source="console",
                    reason=reason,
                    playbook_id=target,
                )
            )
            log.log(
                logging.INFO if result.changed else logging.WARNING,
                "feedback %s",
                result.status.value.replace("_", " "),
                extra={
                    "event_id": event_id,
                    "recommendation_id": last,
                    "kind": kind.value,
                    "status": result.status.value,
                    "latency_ms": round((time.perf_counter() - started) * 1000, 1),
                },
            )
            if result.status in {FeedbackStatus.STORED, FeedbackStatus.REPLACED}:
                score = (
                    "" if result.local_score is None else f", score now {result.local_score:.2f}"
                )
                echo(
                    f"{result.status.value}: {kind.value} on {result.playbook_id or '—'} "
                    f"(loss {result.loss:.2f}{score})"
                )
            else:
                echo(f"not recorded: {result.status.value.replace('_', ' ')}")
        else:
            started = time.perf_counter()
            recorded = service.recommend(IncidentInput(line, "console", reporter=operator))
            last = recorded.recommendation_id
            chosen = recorded.decision.chosen
            log.info(
                "recommendation made",
                extra={
                    "recommendation_id": last,
                    "outcome": recorded.decision.outcome.value,
                    "playbook": chosen.playbook_id if chosen else None,
                    "latency_ms": round((time.perf_counter() - started) * 1000, 1),
                },
            )
            echo(render_decision(recorded.decision, brief=verbosity == "brief"))
            if recorded.decision.outcome is Outcome.NEEDS_APPROVAL:
                echo("   → as <name> · approve · reject <reason>")
            else:
                echo("   → like · override <reason> · neutral · skip · like <playbook>")
    return 0


def _approval(
    service: NPOService, rec_id: str, operator: str, allowed: bool, word: str, reason: str
) -> str:
    started = time.perf_counter()
    if word == "approve":
        result = approve(service, rec_id, operator, allowed)
    else:
        result = reject(service, rec_id, operator, allowed, reason)
    log.log(
        logging.INFO if result.changed else logging.WARNING,
        "approval %s",
        result.status.value.replace("_", " "),
        extra={
            "recommendation_id": rec_id,
            "user": operator,
            "status": result.status.value,
            "latency_ms": round((time.perf_counter() - started) * 1000, 1),
        },
    )
    if result.status is ApprovalStatus.APPROVED and result.decision is not None:
        return render_decision(result.decision) + "\n   → like · override <reason> · neutral · skip"
    if result.status is ApprovalStatus.REJECTED:
        return f"rejected by {operator}: {result.reason} (stored as an override)"
    if result.status is ApprovalStatus.ALREADY_DECIDED:
        return f"not recorded: already decided by {result.decided_by}"
    if result.status is ApprovalStatus.UNKNOWN:
        return "not recorded: the last recommendation is not awaiting approval"
    assert result.status in REFUSED
    return {
        ApprovalStatus.OWN_REQUEST: (
            f"refused: {operator} asked for it; a second engineer approves (as <name>)"
        ),
        ApprovalStatus.NOT_AN_APPROVER: f"refused: {operator} is not an approver",
        ApprovalStatus.NO_REASON: "refused: say why (reject <reason>)",
    }[result.status]


def console_lines() -> Iterable[str]:
    """Lines from a terminal with a prompt, or from a pipe as they come."""
    if sys.stdin.isatty():
        while True:
            try:
                yield input("npo> ")
            except EOFError:
                return
    else:
        if hasattr(sys.stdin, "reconfigure"):  # a stray byte must not end a scripted run
            sys.stdin.reconfigure(errors="replace")
        yield from sys.stdin
