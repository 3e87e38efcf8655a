"""``npo eval incidents``: what an operator sees, on incident messages written by people.

A fresh install (a temporary data folder unless ``--data-dir`` is given) receives every
incident of a labelled file (``eval/incidents/incidents.jsonl``: text, the right playbook or
null, other acceptable ids), pass after pass. After each pass an operator who knows the
answer gives feedback on every decision of the pass as a person would: a like on a right
recommendation, an override on a wrong one (and, when the right playbook is listed, a
colleague's like on it), a like on the right candidate of an abstention when it is listed,
nothing otherwise. Each pass
reports right and wrong recommendations as shares of all incidents: pass 1 is the cold
start, pass 3 is after two rounds of feedback.

*right*: an acceptable recommendation, or no recommendation for an incident that no
playbook covers (silence is right there); *wrong*: a recommendation that is not acceptable;
*waiting*: the right candidate cleared the threshold but waits for a second engineer or a
window (the policies' doing, not the decision's); the rest is *held*.

``--context allow`` (default) gives every incident the context under which the bundled
policies allow the playbooks' actions (redundancy 3, inside a maintenance window, midday),
so the figures measure the decision, not the policies; ``--context text`` uses only what
the messages say.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.service import FeedbackInput, IncidentInput, NPOService
from bot.settings import Settings
from core.decision import Decision
from core.feedback import FeedbackKind

ALLOWING_CONTEXT: Mapping[str, object] = {
    "redundancy": 3,
    "maintenance_window": True,
    "hour_of_day": 12,
}


class IncidentFileError(ValueError):
    """A line of the incident file is not usable; the message names the line and field."""


@dataclass(frozen=True, slots=True)
class LabelledIncident:
    id: str
    text: str
    right: frozenset[str]  # the playbook and every other acceptable id
    playbook: str | None
    split: str


def load_incidents(path: Path, split: str) -> list[LabelledIncident]:
    if not path.is_file():
        raise IncidentFileError(f"{path}: no such file (pass --file)")
    found = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            item = LabelledIncident(
                id=str(row["id"]),
                text=str(row["text"]),
                right=frozenset(
                    [row["playbook"]] * bool(row["playbook"]) + list(row.get("also_ok", []))
                ),
                playbook=row["playbook"],
                split=str(row.get("split", "")),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise IncidentFileError(f"{path}:{n}: {type(exc).__name__}: {exc}") from exc
        if split == "all" or item.split == split:
            found.append(item)
    if not found:
        raise IncidentFileError(f"{path}: no incident in split {split!r}")
    return found


@dataclass(slots=True)
class PassReport:
    incidents: int = 0
    right: int = 0  # recommended and acceptable, or silent when no playbook covers it
    silent_right: int = 0  # of which: silent on an incident no playbook covers
    wrong: int = 0  # recommended, and not acceptable
    waiting: int = 0  # the right candidate cleared τ but the SPE asks for approval or a window
    held: int = 0  # no recommendation otherwise
    top_right: int = 0  # the first candidate is acceptable (retrieval alone)
    outcomes: dict[str, int] = field(default_factory=dict)
    misses: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        n = max(self.incidents, 1)
        return {
            "incidents": self.incidents,
            "right_rate": round(self.right / n, 4),
            "silent_right_rate": round(self.silent_right / n, 4),
            "wrong_rate": round(self.wrong / n, 4),
            "waiting_rate": round(self.waiting / n, 4),
            "held_rate": round(self.held / n, 4),
            "top_right_rate": round(self.top_right / n, 4),
            "outcomes": dict(sorted(self.outcomes.items())),
        }


def _operators(
    item: LabelledIncident, decision: Decision
) -> list[tuple[str, FeedbackKind, str | None]]:
    """What people who know the answer do with this message: (who, vote, candidate)."""
    listed = [c.playbook_id for c in decision.candidates if c.playbook_id in item.right]
    confirm = (
        [("operator-2", FeedbackKind.LIKE, item.playbook if item.playbook in listed else listed[0])]
        if listed
        else []
    )
    if decision.chosen is not None:
        if decision.chosen.playbook_id in item.right:
            return [("operator", FeedbackKind.LIKE, None)]
        return [("operator", FeedbackKind.OVERRIDE, None), *confirm]
    return [("operator", kind, pb) for _, kind, pb in confirm]


def run_passes(
    service: NPOService,
    incidents: Sequence[LabelledIncident],
    passes: int,
    context: Mapping[str, object],
    between: Callable[[], None] = lambda: None,
    progress: Callable[[str], None] = lambda _: None,
) -> list[PassReport]:
    reports = []
    for p in range(1, passes + 1):
        report = PassReport()
        decided: list[tuple[LabelledIncident, str, Decision]] = []
        for item in incidents:
            recorded = service.recommend(
                IncidentInput(item.text, "eval", reporter="reporter", hints=context)
            )
            d = recorded.decision
            report.incidents += 1
            report.outcomes[d.outcome.value] = report.outcomes.get(d.outcome.value, 0) + 1
            top = d.candidates[0].playbook_id if d.candidates else None
            report.top_right += top in item.right or (top is None and item.playbook is None)
            cleared = [
                c.playbook_id for c in d.candidates if c.score >= d.explanation.threshold.threshold
            ]
            if d.chosen is not None:
                good = d.chosen.playbook_id in item.right
                report.right += good
                report.wrong += not good
            elif item.playbook is None:
                report.right += 1
                report.silent_right += 1
            elif cleared and cleared[0] in item.right and d.outcome.value != "abstain":
                report.waiting += 1
            else:
                report.held += 1
            if item.playbook is not None and (
                d.chosen is None or d.chosen.playbook_id not in item.right
            ):
                report.misses.append(
                    {
                        "id": item.id,
                        "want": item.playbook,
                        "outcome": d.outcome.value,
                        "chosen": d.chosen.playbook_id if d.chosen else None,
                        "top": top,
                        "score": round(d.candidates[0].score, 3) if d.candidates else None,
                        "threshold": d.explanation.threshold.threshold,
                    }
                )
            decided.append((item, recorded.recommendation_id, d))
        # A round of feedback on this pass's decisions, after all of them were made: the
        # pass measured the state the previous rounds left.
        for item, rec_id, d in decided if p < passes else []:
            for who, kind, playbook in _operators(item, d):
                service.record_feedback(
                    FeedbackInput(
                        rec_id,
                        who,
                        kind,
                        f"eval:{p}:{item.id}:{who}",
                        source="console",
                        reason="not this playbook" if kind is FeedbackKind.OVERRIDE else "",
                        playbook_id=playbook,
                    )
                )
        reports.append(report)
        r = report.as_dict()
        progress(
            f"pass {p}: right {r['right_rate']:.0%}, wrong {r['wrong_rate']:.0%}, "
            f"waiting {r['waiting_rate']:.0%}, held {r['held_rate']:.0%} of {report.incidents}"
        )
        if p < passes:
            between()
    return reports


def cmd_eval_incidents(args: argparse.Namespace, settings: Settings) -> int:
    from bot.wiring import build

    try:
        incidents = load_incidents(args.file, args.split)
    except IncidentFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="npo-eval-") as tmp:
        data_dir = args.data_dir or Path(tmp)
        run_settings = settings.model_copy(
            update={"data_dir": data_dir, "database_url": None, "chroma_path": None}
        )
        components = build(run_settings)
        context = ALLOWING_CONTEXT if args.context == "allow" else {}

        def tick() -> None:
            if args.tick:
                components.ticker.tick(force=True)

        reports = run_passes(
            components.service,
            incidents,
            args.passes,
            context,
            between=tick,
            progress=lambda line: print(line, file=sys.stderr),
        )
    doc = {
        "file": str(args.file),
        "split": args.split,
        "context": args.context,
        "passes": [r.as_dict() for r in reports],
    }
    if args.misses:
        doc["misses"] = [r.misses for r in reports]
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(f"{len(incidents)} incidents ({args.split}), context: {args.context}")
    head = ("pass", "right", "silent", "wrong", "wait", "held", "top-1")
    print(" ".join(f"{h:>6s}" for h in head) + "  outcomes")
    for i, r in enumerate(reports, 1):
        d = r.as_dict()
        outcomes = ", ".join(f"{k} {v}" for k, v in d["outcomes"].items())
        rates = (
            d["right_rate"],
            d["silent_right_rate"],
            d["wrong_rate"],
            d["waiting_rate"],
            d["held_rate"],
            d["top_right_rate"],
        )
        print(f"{i:6d} " + " ".join(f"{x:6.0%}" for x in rates) + f"  {outcomes}")
    if args.misses:
        for i, r in enumerate(reports, 1):
            for m in r.misses:
                print(f"  pass {i} {m}")
    return 0
