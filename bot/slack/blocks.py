"""Block Kit for recommendations, within Slack's limits.

Limits kept here (Slack's documented ones): 50 blocks per message, 3,000 characters per
text object, 2,000 per button value, 255 per action_id, 75 per button label. Button
values carry only the opaque recommendation id (and, for an abstention, a candidate id).

Every function here takes data as it is stored (titles, ids, steps, reasons, the
explanation, an LLM's summary) and escapes each value once, as it puts it into a fixed
template (``bot.slack.escape``); callers never pass pre-formatted mrkdwn.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.reporting.render import gauge, sparkline
from bot.slack.escape import clip, escape, mention
from core.decision import Candidate, Decision, Outcome
from core.feedback import FeedbackKind

MAX_BLOCKS = 50
MAX_TEXT = 3000
MAX_VALUE = 2000
MAX_ACTION_ID = 255

ACTION_LIKE = "npo_like"
ACTION_OVERRIDE = "npo_override"
ACTION_NEUTRAL = "npo_neutral"
ACTION_SKIP = "npo_skip"
ACTION_DETAILS = "npo_details"
ACTION_LIKE_CANDIDATE = "npo_like_candidate"
OVERRIDE_MODAL = "npo_override_modal"
ACTION_APPROVE_RUN = "npo_approve_run"  # a second engineer approves a needs-approval one
ACTION_REJECT_RUN = "npo_reject_run"  # … or rejects it (opens the reason modal)
REJECT_MODAL = "npo_reject_modal"

_KIND_OF_ACTION = {
    ACTION_LIKE: FeedbackKind.LIKE,
    ACTION_OVERRIDE: FeedbackKind.OVERRIDE,
    ACTION_NEUTRAL: FeedbackKind.NEUTRAL,
    ACTION_SKIP: FeedbackKind.SKIPPED,
}
_PAST = {
    FeedbackKind.LIKE: "Liked",
    FeedbackKind.OVERRIDE: "Overridden",
    FeedbackKind.NEUTRAL: "Marked neutral",
    FeedbackKind.SKIPPED: "Skipped",
}


def kind_of_action(action_id: str) -> FeedbackKind | None:
    return _KIND_OF_ACTION.get(action_id)


Vote = tuple[str, FeedbackKind, str]  # (user id, kind, reason) of one current vote


def _clip(text: str, limit: int = MAX_TEXT) -> str:
    return clip(text, limit)


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _clip(text)}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": _clip(text)}]}


def _button(text: str, action_id: str, value: str, style: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "text": {"type": "plain_text", "text": text[:75], "emoji": True},
        "action_id": action_id[:MAX_ACTION_ID],
        "value": value[:MAX_VALUE],
    }
    if style:
        button["style"] = style
    return button


_HEADLINE = {
    Outcome.RECOMMEND: ":white_check_mark: *Recommended playbook*",
    Outcome.ABSTAIN: ":thinking_face: *No recommendation: not confident enough*",
    Outcome.BLOCKED: ":no_entry: *No recommendation: the safety policies do not allow it*",
    Outcome.NEEDS_APPROVAL: ":raising_hand: *Awaiting a second engineer: the safety policies "
    "ask for an approval*",
    Outcome.DEFERRED: ":hourglass_flowing_sand: *Deferred: the safety policies say to wait*",
}


def candidate_shown(decision: Decision) -> Candidate | None:
    """The candidate the message is about: the recommendation, or the one awaiting."""
    return decision.chosen if decision.chosen is not None else decision.pending


def follow_up_line(decision: Decision) -> str | None:
    """What happens next to an awaiting candidate (or who approved a recommendation)."""
    if decision.outcome is Outcome.RECOMMEND and decision.approved_by:
        return f":white_check_mark: Approved by {mention(decision.approved_by)} (second engineer)"
    if decision.outcome is Outcome.NEEDS_APPROVAL:
        return ":busts_in_silhouette: A second engineer (not the requester) approves or rejects it."
    if decision.outcome is Outcome.DEFERRED and decision.deferral is not None:
        d = decision.deferral
        return (
            f":calendar: Can proceed: {escape(d.text)}. It is judged again then (attempt "
            f"{d.attempt} of {d.max_attempts}) and the outcome is posted in this thread."
        )
    if decision.outcome is Outcome.DEFERRED:
        return ":warning: Gave up: still deferred after every re-evaluation. Decide by hand."
    return None


def visual_clue(decision: Decision) -> str:
    v = decision.explanation.visual
    return (
        f"`{gauge(v.score, v.threshold)}` score *{v.score:.2f}* vs τ *{v.threshold:.1f}*"
        f"   recent loss `{sparkline(v.recent_losses)}`"
    )


def explanation_blocks(decision: Decision) -> list[dict[str, Any]]:
    exp = decision.explanation
    trace = "\n".join(f"• {escape(step)}" for step in exp.trace)
    facts = "\n".join(f"• *{escape(f.label)}*: {escape(f.value)}" for f in exp.facts)
    return [
        _section(f"*Explanation trace*\n{trace}"),
        _section(f"*Supporting facts*\n{facts or '—'}"),
    ]


def recommendation_blocks(
    recommendation_id: str,
    decision: Decision,
    steps: Sequence[str] = (),
    verbosity: str = "full",
    votes: Sequence[Vote] | None = None,
    summary: str | None = None,
) -> list[dict[str, Any]]:
    """The message for one decision; ``votes`` (the current ones) replace the buttons once
    judged. ``summary`` is plain text (it may come from an LLM)."""
    exp = decision.explanation
    blocks: list[dict[str, Any]] = [_section(_HEADLINE[decision.outcome])]
    if summary:
        blocks.append(_context(escape(summary)))
    c = candidate_shown(decision)
    if c is not None:
        head = f"*{escape(c.title)}* (`{escape(c.playbook_id)}`)\naction `{escape(c.action.name)}`"
        if c.action.target:
            head += f" on `{escape(c.action.target)}`"
        blocks.append(_section(head))
        if steps:
            shown = "\n".join(f"{i}. {escape(s)}" for i, s in enumerate(steps[:5], 1))
            blocks.append(_section(f"*Key steps*\n{shown}"))
    blocks.append(_section(visual_clue(decision)))
    blocks.append(_context(f":scales: *Threshold*: {escape(exp.threshold.text)}"))
    blocks.append(_context(f":shield: *Policy*: {escape(exp.compliance.summary)}"))
    follow = follow_up_line(decision)
    if follow:
        blocks.append(_section(follow))
    if decision.outcome is not Outcome.RECOMMEND and decision.candidates:
        for cand, verdict in list(zip(decision.candidates, decision.verdicts, strict=True))[:5]:
            line = (
                f"`{escape(cand.playbook_id)}` — {escape(cand.title)}: score {cand.score:.2f}, "
                f"SPE {escape(verdict.verdict.value.replace('_', ' '))}"
            )
            section = _section(line)
            if votes is None and decision.outcome is Outcome.ABSTAIN:
                section["accessory"] = _button(
                    "👍 This one", ACTION_LIKE_CANDIDATE, f"{recommendation_id}|{cand.playbook_id}"
                )
            blocks.append(section)
    if verbosity == "full":
        blocks.extend(explanation_blocks(decision))
    if votes is not None:
        blocks.append(_context(votes_line(votes, decision.outcome)))
    else:
        buttons = []
        if decision.outcome is Outcome.RECOMMEND:
            buttons = [
                _button("👍 Like", ACTION_LIKE, recommendation_id, "primary"),
                _button("🔴 Override", ACTION_OVERRIDE, recommendation_id, "danger"),
                _button("Neutral", ACTION_NEUTRAL, recommendation_id),
                _button("Skip", ACTION_SKIP, recommendation_id),
            ]
        elif decision.outcome is Outcome.NEEDS_APPROVAL:
            buttons = [
                _button("Approve", ACTION_APPROVE_RUN, recommendation_id, "primary"),
                _button("Reject", ACTION_REJECT_RUN, recommendation_id, "danger"),
            ]
        if verbosity != "full":
            buttons.append(_button("Details", ACTION_DETAILS, recommendation_id))
        if buttons:
            blocks.append({"type": "actions", "block_id": "npo_feedback", "elements": buttons})
    return blocks[:MAX_BLOCKS]


def fallback_text(decision: Decision) -> str:
    """The message's top-level ``text`` (notifications, screen readers): mrkdwn too."""
    if decision.chosen is not None:
        c = decision.chosen
        return _clip(f"Recommended: {escape(c.title)} ({escape(c.playbook_id)})")
    if decision.pending is not None and decision.awaiting:
        p = decision.pending
        label = "Awaiting approval" if decision.outcome is Outcome.NEEDS_APPROVAL else "Deferred"
        return _clip(f"{label}: {escape(p.title)} ({escape(p.playbook_id)})")
    return _clip(_HEADLINE[decision.outcome].replace("*", ""))


def votes_line(votes: Sequence[Vote], outcome: Outcome = Outcome.RECOMMEND) -> str:
    """``Overridden by @x: reason`` for each current vote (``Rejected by`` while the
    recommendation was awaiting approval: a rejection is an override of it)."""
    parts = []
    for user, kind, reason in votes:
        past = _PAST[kind]
        if outcome is Outcome.NEEDS_APPROVAL and kind is FeedbackKind.OVERRIDE:
            past = ":x: Rejected"
        text = f"{past} by {mention(user)}"
        parts.append(f"{text}: {escape(reason)}" if reason else text)
    return _clip(" · ".join(parts))


def override_modal(recommendation_id: str, channel: str, message_ts: str) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": OVERRIDE_MODAL,
        "private_metadata": f"{recommendation_id}|{channel}|{message_ts}",
        "title": {"type": "plain_text", "text": "Override"},
        "submit": {"type": "plain_text", "text": "Override"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {
                "type": "input",
                "block_id": "reason",
                "label": {"type": "plain_text", "text": "Why is this recommendation wrong?"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": "reason",
                    "multiline": True,
                    "max_length": 1000,
                },
            }
        ],
    }


def reject_modal(recommendation_id: str, channel: str, message_ts: str) -> dict[str, Any]:
    """Why the second engineer rejects a recommendation awaiting approval (required)."""
    return {
        "type": "modal",
        "callback_id": REJECT_MODAL,
        "private_metadata": f"{recommendation_id}|{channel}|{message_ts}",
        "title": {"type": "plain_text", "text": "Reject"},
        "submit": {"type": "plain_text", "text": "Reject"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {
                "type": "input",
                "block_id": "reason",
                "label": {"type": "plain_text", "text": "Why should this not run?"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": "reason",
                    "multiline": True,
                    "max_length": 1000,
                },
            }
        ],
    }


SUBMIT_MODAL = "npo_submit_playbook"
ACTION_APPROVE = "npo_approve"
ACTION_REQUEST_CHANGES = "npo_request_changes"
SUBMIT_FIELDS: tuple[tuple[str, str, bool], ...] = (
    ("id", "Playbook id (lowercase, e.g. pdu-breaker-trip)", False),
    ("title", "Title", False),
    ("action", "Action verb the safety policies check (e.g. drain_link)", False),
    ("risk", "Risk: low, medium or high", False),
    ("blast_radius", "Blast radius (devices touched)", False),
    ("components", "Components (comma separated)", False),
    ("fault_types", "Fault types (comma separated)", False),
    ("symptoms", "Symptoms", True),
    ("diagnosis", "Diagnosis", True),
    ("steps", "Steps (one per line, numbered)", True),
    ("rollback", "Rollback", True),
)


def submit_modal() -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": SUBMIT_MODAL,
        "title": {"type": "plain_text", "text": "Submit a playbook"},
        "submit": {"type": "plain_text", "text": "Submit for review"},
        "blocks": [
            {
                "type": "input",
                "block_id": name,
                "label": {"type": "plain_text", "text": label},
                "element": {"type": "plain_text_input", "action_id": name, "multiline": multiline},
            }
            for name, label, multiline in SUBMIT_FIELDS
        ],
    }


def review_text(playbook_id: str, decided: str | None = None) -> str:
    """The top-level ``text`` of a review message, before and after the review."""
    if decided is None:
        return _clip(f"Playbook {escape(playbook_id)} submitted for review")
    return _clip(f"Playbook {escape(playbook_id)}: {escape(decided)}")


def review_blocks(
    submission_id: str,
    playbook_id: str,
    author: str,
    text: str,
    reviewer: str | None = None,
    approved: bool = False,
) -> list[dict[str, Any]]:
    """The submitted playbook for review; once ``reviewer`` decided, who did and how
    instead of the buttons."""
    blocks = [
        _section(f":memo: {mention(author)} submitted playbook `{escape(playbook_id)}` for review"),
        _section("```" + _clip(escape(text), MAX_TEXT - 6) + "```"),
    ]
    if reviewer is not None:
        blocks.append(
            _context(
                f":white_check_mark: Approved by {mention(reviewer)}: now vetted and retrievable."
                if approved
                else f":leftwards_arrow_with_hook: Changes requested by {mention(reviewer)}."
            )
        )
    else:
        blocks.append(
            {
                "type": "actions",
                "block_id": "npo_review",
                "elements": [
                    _button("Approve", ACTION_APPROVE, submission_id, "primary"),
                    _button("Request changes", ACTION_REQUEST_CHANGES, submission_id),
                ],
            }
        )
    return blocks
