"""``npo chat --json``: the console adapter for scripts and measurements.

The same lines as ``npo chat`` (an incident, or ``like`` / ``override <reason>`` /
``neutral`` / ``skip`` / ``like <playbook>`` on the last incident; ``as <name>`` to speak as
another operator, ``approve`` / ``reject <reason>`` for a decision awaiting a second
engineer), answered with one JSON object per line, flushed as soon as it is known:

* an incident: ``{"type": "decision", "recommendation_id", "outcome", "playbook", "score",
  "threshold", "verdict", "scenario": {feature: value, null where unknown}, "candidates":
  [{"playbook", "score", "verdict"}], "trace"}``;
* a vote: ``{"type": "ack", "recommendation_id", "status", "kind", "playbook", "loss",
  "score"}`` (``score``: the judged scenario's score after the vote);
* an approval: ``{"type": "approval", "recommendation_id", "status", "playbook",
  "decision"}`` (``decision``: the decision object after an approval, else null);
* ``as``: ``{"type": "operator", "operator"}``;
* anything else: ``{"type": "error", "error": ...}`` (the run goes on).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from collections.abc import Callable, Collection, Iterable
from typing import Any

from bot.console.chat import KINDS
from bot.service import FeedbackInput, IncidentInput, NPOService
from bot.service.approvals import Approvers, approve, reject
from core.decision import Decision
from core.scenario import Scenario

log = logging.getLogger(__name__)


def scenario_fields(scenario: Scenario) -> dict[str, Any]:
    """The scenario's features as plain JSON, null where nobody knows."""
    return dict(scenario.features())


def _number(value: float) -> float | None:
    return None if math.isinf(value) or math.isnan(value) else round(value, 4)


def decision_json(recommendation_id: str, decision: Decision) -> dict[str, Any]:
    chosen = decision.chosen
    return {
        "type": "decision",
        "recommendation_id": recommendation_id,
        "outcome": decision.outcome.value,
        "playbook": chosen.playbook_id if chosen else None,
        "score": _number(decision.explanation.visual.score),
        "threshold": _number(decision.explanation.threshold.threshold),
        "verdict": decision.explanation.compliance.verdict.value,
        "scenario": scenario_fields(decision.scenario),
        "candidates": [
            {"playbook": c.playbook_id, "score": _number(c.score), "verdict": v.verdict.value}
            for c, v in zip(decision.candidates, decision.verdicts, strict=True)
        ],
        "trace": list(decision.explanation.trace),
    }


def run_console_json(
    service: NPOService,
    lines: Iterable[str],
    write: Callable[[str], None],
    operator: str = "console",
    approvers: Collection[str] = (),
) -> int:
    """Answer every line with one JSON object; ``write`` must flush."""
    may_approve = Approvers(approvers, lambda _user: True).may_approve
    last: str | None = None
    counter = itertools.count(1)

    def emit(obj: dict[str, Any]) -> None:
        write(json.dumps(obj, ensure_ascii=False))

    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        word, _, rest = line.partition(" ")
        word = word.lower()
        if word in {"quit", "exit"}:
            break
        try:
            if word == "as":
                operator = rest.strip()[:64] or operator
                emit({"type": "operator", "operator": operator})
            elif word in {"approve", "reject"}:
                if last is None:
                    emit({"type": "error", "error": "no incident yet: describe one first"})
                    continue
                allowed = may_approve(operator)
                if word == "approve":
                    done = approve(service, last, operator, allowed)
                else:
                    done = reject(service, last, operator, allowed, rest.strip())
                emit(
                    {
                        "type": "approval",
                        "recommendation_id": last,
                        "status": done.status.value,
                        "playbook": done.playbook_id,
                        "decision": decision_json(last, done.decision)
                        if word == "approve" and done.decision is not None and done.changed
                        else None,
                    }
                )
            elif word in KINDS:
                if last is None:
                    emit({"type": "error", "error": "no incident yet: describe one first"})
                    continue
                kind = KINDS[word]
                target = rest.strip() if kind.value == "like" and rest.strip() else None
                reason = rest.strip() if kind.value == "override" else ""
                result = service.record_feedback(
                    FeedbackInput(
                        last,
                        operator,
                        kind,
                        f"console:{last}:{next(counter)}",
                        source="console",
                        reason=reason,
                        playbook_id=target,
                    )
                )
                emit(
                    {
                        "type": "ack",
                        "recommendation_id": last,
                        "status": result.status.value,
                        "kind": kind.value,
                        "playbook": result.playbook_id,
                        "loss": None if result.loss is None else round(result.loss, 4),
                        "score": None
                        if result.local_score is None
                        else round(result.local_score, 4),
                    }
                )
            else:
                recorded = service.recommend(IncidentInput(line, "console", reporter=operator))
                last = recorded.recommendation_id
                emit(decision_json(last, recorded.decision))
        except Exception as exc:  # one bad line must not end a scripted run
            log.exception("console line failed", extra={"line": line[:200]})
            emit({"type": "error", "error": f"{type(exc).__name__}: {exc}"})
    return 0
