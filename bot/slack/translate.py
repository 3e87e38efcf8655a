"""Slack payloads → our own small types. Payload dicts never travel further than this."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.governance.submissions import Draft
from bot.service import FeedbackInput, IncidentInput
from bot.text_input import MAX_STORED_CHARS, clean_text
from core.feedback import FeedbackKind

# ``<@U123>`` or ``<@U123|name>``; Slack escapes ``<`` and ``>`` in the label, so the label
# stops at either: a run without ``>`` is then scanned once, not once per ``<@`` in it.
_MENTION = re.compile(r"<@[A-Z0-9]++(?:\|[^<>]*+)?>")

# The override modal's reason input allows 1,000 characters (bot/slack/blocks.py).
MAX_REASON_CHARS = 1_000


class PayloadError(ValueError):
    """A payload lacks a field we need; the message names it."""


def _get(d: Mapping[str, Any], *path: str) -> Any:
    cur: Any = d
    for key in path:
        if not isinstance(cur, Mapping) or key not in cur:
            raise PayloadError(f"missing {'.'.join(path)}")
        cur = cur[key]
    return cur


def _text(d: Mapping[str, Any], *path: str) -> str:
    value = _get(d, *path)
    if not isinstance(value, str):
        raise PayloadError(f"{'.'.join(path)} must be a string")
    return value


def incident_text(raw: str) -> str:
    """The incident as stored: controls dropped, at most Slack's 40,000 characters (cut
    before the mention pattern runs), without ``<@bot>`` mentions."""
    return _MENTION.sub("", clean_text(raw, MAX_STORED_CHARS)).strip()


def incident_from_event(body: Mapping[str, Any]) -> IncidentInput:
    event = _get(body, "event")
    ts = _text(body, "event", "ts")
    thread = event.get("thread_ts") if isinstance(event.get("thread_ts"), str) else None
    return IncidentInput(
        text=incident_text(_text(body, "event", "text")),
        source="slack",
        channel=_text(body, "event", "channel"),
        thread_ts=thread or ts,
        reporter=str(event.get("user", "")),
        source_event_id=f"event:{_text(body, 'event_id')}",
    )


def incident_from_command(body: Mapping[str, Any], text: str) -> IncidentInput:
    """``text``: the command's argument; IncidentInput cleans and bounds it."""
    return IncidentInput(
        text=text.strip(),
        source="slack",
        channel=_text(body, "channel_id"),
        reporter=_text(body, "user_id"),
        source_event_id=f"command:{_text(body, 'trigger_id')}",
    )


@dataclass(frozen=True, slots=True)
class ActionRef:
    recommendation_id: str
    playbook_id: str | None
    user_id: str
    channel: str
    message_ts: str
    event_id: str


@dataclass(frozen=True, slots=True)
class CommandRef:
    user_id: str
    channel_id: str
    trigger_id: str
    text: str


def command_ref(body: Mapping[str, Any]) -> CommandRef:
    """The fields of a slash command every subcommand relies on."""
    text = body.get("text", "")
    return CommandRef(
        user_id=_text(body, "user_id"),
        channel_id=_text(body, "channel_id"),
        trigger_id=_text(body, "trigger_id"),
        text=text if isinstance(text, str) else "",
    )


def action_ref(body: Mapping[str, Any]) -> ActionRef:
    actions = _get(body, "actions")
    if not isinstance(actions, list) or not actions or not isinstance(actions[0], Mapping):
        raise PayloadError("missing actions[0]")
    action = actions[0]
    value = _text(action, "value")
    rec_id, _, playbook = value.partition("|")
    if not rec_id:
        raise PayloadError("actions[0].value is empty")
    user = _text(body, "user", "id")
    return ActionRef(
        recommendation_id=rec_id,
        playbook_id=playbook or None,
        user_id=user,
        channel=_text(body, "container", "channel_id"),
        message_ts=_text(body, "container", "message_ts"),
        event_id=f"action:{rec_id}:{user}:{_text(action, 'action_ts')}",
    )


def feedback_from_action(ref: ActionRef, kind: FeedbackKind) -> FeedbackInput:
    return FeedbackInput(
        recommendation_id=ref.recommendation_id,
        operator_id=ref.user_id,
        kind=kind,
        source_event_id=ref.event_id,
        source="button",
        playbook_id=ref.playbook_id,
    )


@dataclass(frozen=True, slots=True)
class OverrideSubmission:
    recommendation_id: str
    channel: str
    message_ts: str
    user_id: str
    reason: str
    event_id: str


def override_submission(body: Mapping[str, Any]) -> OverrideSubmission:
    meta = _text(body, "view", "private_metadata").split("|")
    if len(meta) != 3 or not meta[0]:
        raise PayloadError("view.private_metadata must be 'recommendation|channel|ts'")
    reason = _get(body, "view", "state", "values", "reason", "reason")
    text = reason.get("value") if isinstance(reason, Mapping) else None
    return OverrideSubmission(
        recommendation_id=meta[0],
        channel=meta[1],
        message_ts=meta[2],
        user_id=_text(body, "user", "id"),
        reason=clean_text(text or "", MAX_REASON_CHARS).strip(),
        event_id=f"view:{_text(body, 'view', 'id')}",
    )


@dataclass(frozen=True, slots=True)
class ReactionRef:
    user_id: str
    reaction: str
    channel: str
    message_ts: str
    event_id: str


def reaction_ref(body: Mapping[str, Any]) -> ReactionRef:
    item = _get(body, "event", "item")
    if not isinstance(item, Mapping) or item.get("type") != "message":
        raise PayloadError("event.item is not a message")
    return ReactionRef(
        user_id=_text(body, "event", "user"),
        reaction=_text(body, "event", "reaction").split("::")[0],
        channel=_text(item, "channel"),
        message_ts=_text(item, "ts"),
        event_id=f"event:{_text(body, 'event_id')}",
    )


def draft_from_submission(body: Mapping[str, Any]) -> Draft:
    """The submit modal's values as a ``Draft``; blank optional lists become empty."""
    values = _get(body, "view", "state", "values")
    if not isinstance(values, Mapping):
        raise PayloadError("view.state.values must be an object")

    def field(name: str) -> str:
        block = values.get(name, {})
        element = block.get(name, {}) if isinstance(block, Mapping) else {}
        value = element.get("value") if isinstance(element, Mapping) else None
        return value.strip() if isinstance(value, str) else ""

    blast = field("blast_radius")
    if not blast.isdigit():
        raise PayloadError("blast_radius must be a whole number")

    def listed(name: str) -> list[str]:
        return [x.strip() for x in field(name).split(",") if x.strip()]

    return Draft(
        id=field("id"),
        title=field("title"),
        action=field("action"),
        risk=field("risk").lower(),
        blast_radius=int(blast),
        symptoms=field("symptoms"),
        diagnosis=field("diagnosis"),
        steps=field("steps"),
        rollback=field("rollback"),
        components=listed("components"),
        fault_types=listed("fault_types"),
    )
