"""Mentions, incident-channel messages and emoji reactions."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.service import FeedbackInput, IncidentInput
from bot.slack import flows
from bot.slack.flows import SlackContext
from bot.slack.listeners import tolerant
from bot.slack.translate import PayloadError, incident_from_event, reaction_ref

log = logging.getLogger(__name__)


def _channel_incident(body: dict[str, Any], ctx: SlackContext) -> IncidentInput | None:
    """A plain message in an incident channel is an incident; edits, bot posts, thread
    replies and mentions (handled by app_mention) are not."""
    event = body.get("event")
    if not isinstance(event, dict):
        return None
    if event.get("subtype") or event.get("bot_id") or event.get("thread_ts"):
        return None
    incident = incident_from_event(body)  # checks every field used below
    if incident.channel not in ctx.incident_channels or "<@" in str(event["text"]):
        return None
    return incident


def register(app: App, ctx: SlackContext) -> None:
    def ack_event(ack: Ack) -> None:
        ack()

    def accept_incidents(body: dict[str, Any], next: Callable[[], Any]) -> Any:
        """Bolt answers Events API requests before any listener runs, so the inbox write
        happens here, in a middleware, before the response: a process killed after Slack
        heard "received" loses nothing. If it cannot be stored the request fails (500)
        and Slack retries it."""
        incident = _incident_of(body)
        if incident is not None:
            ctx.service.accept(incident)
        return next()

    def _incident_of(body: dict[str, Any]) -> IncidentInput | None:
        event = body.get("event") if body.get("type") == "event_callback" else None
        if not isinstance(event, dict):
            return None
        try:
            if event.get("type") == "app_mention":
                return incident_from_event(body)
            if event.get("type") == "message":
                return _channel_incident(body, ctx)
        except PayloadError:
            return None  # the listener logs it
        return None

    app.middleware(accept_incidents)

    def on_mention(body: dict[str, Any], client: WebClient) -> None:
        flows.post_recommendation(ctx, client, incident_from_event(body))

    def on_message(body: dict[str, Any], client: WebClient) -> None:
        incident = _channel_incident(body, ctx)
        if incident is not None:
            flows.post_recommendation(ctx, client, incident)

    def on_reaction_added(body: dict[str, Any], client: WebClient) -> None:
        ref = reaction_ref(body)
        kind = (ctx.reactions or {}).get(ref.reaction)
        rec_id = ctx.service.recommendation_for_message(ref.channel, ref.message_ts)
        if kind is None or rec_id is None:
            return
        allowed = (
            ctx.access.may_override if kind.value == "override" else ctx.access.may_give_feedback
        )
        if not allowed(ref.user_id):
            flows.refuse(client, ref.channel, ref.user_id, "give feedback", event_id=ref.event_id)
            return
        fb = FeedbackInput(rec_id, ref.user_id, kind, ref.event_id, source="reaction")
        flows.apply_feedback(ctx, client, fb, ref.channel, ref.message_ts)

    def on_reaction_removed(body: dict[str, Any], client: WebClient) -> None:
        ref = reaction_ref(body)
        rec_id = ctx.service.recommendation_for_message(ref.channel, ref.message_ts)
        if rec_id is None or ref.reaction not in (ctx.reactions or {}):
            return
        started = time.perf_counter()
        result = ctx.service.withdraw_feedback(rec_id, ref.user_id, ref.event_id)
        if result.changed:
            flows.refresh_message(
                ctx, client, rec_id, ref.channel, ref.message_ts, event_id=ref.event_id
            )
        log.info(
            "feedback withdrawal: %s",
            result.status.value.replace("_", " "),
            extra={
                "event_id": ref.event_id,
                "recommendation_id": rec_id,
                "status": result.status.value,
                "user": ref.user_id,
                "latency_ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )

    app.event("app_mention")(ack=ack_event, lazy=[tolerant(on_mention)])
    app.event("message")(ack=ack_event, lazy=[tolerant(on_message)])
    app.event("reaction_added")(ack=ack_event, lazy=[tolerant(on_reaction_added)])
    app.event("reaction_removed")(ack=ack_event, lazy=[tolerant(on_reaction_removed)])
