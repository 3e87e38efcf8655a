"""Feedback buttons. The override button opens its modal inside the ack (a trigger_id
lives 3 seconds); everything else is stored after the ack."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.slack import flows
from bot.slack.blocks import (
    ACTION_DETAILS,
    ACTION_LIKE,
    ACTION_LIKE_CANDIDATE,
    ACTION_NEUTRAL,
    ACTION_OVERRIDE,
    ACTION_SKIP,
    explanation_blocks,
    kind_of_action,
    override_modal,
)
from bot.slack.flows import SlackContext
from bot.slack.listeners import tolerant
from bot.slack.translate import action_ref, feedback_from_action
from core.feedback import FeedbackKind


def register(app: App, ctx: SlackContext) -> None:
    def ack_action(ack: Ack) -> None:
        ack()

    def on_feedback(body: dict[str, Any], client: WebClient) -> None:
        ref = action_ref(body)
        kind = kind_of_action(str(body["actions"][0]["action_id"])) or FeedbackKind.LIKE
        if not ctx.access.may_give_feedback(ref.user_id):
            flows.refuse(client, ref.channel, ref.user_id, "give feedback", event_id=ref.event_id)
            return
        flows.apply_feedback(
            ctx, client, feedback_from_action(ref, kind), ref.channel, ref.message_ts
        )

    def open_override(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        ref = action_ref(body)
        if not ctx.access.may_override(ref.user_id):
            flows.refuse(
                client, ref.channel, ref.user_id, "override recommendations", event_id=ref.event_id
            )
            return
        client.views_open(
            trigger_id=str(body["trigger_id"]),
            view=override_modal(ref.recommendation_id, ref.channel, ref.message_ts),
        )

    def show_details(body: dict[str, Any], client: WebClient) -> None:
        ref = action_ref(body)
        decision = ctx.service.decision(ref.recommendation_id)
        if decision is not None:
            client.chat_postEphemeral(
                channel=ref.channel,
                user=ref.user_id,
                text="Explanation",
                blocks=explanation_blocks(decision),
            )

    for action_id in (ACTION_LIKE, ACTION_NEUTRAL, ACTION_SKIP, ACTION_LIKE_CANDIDATE):
        app.action(action_id)(ack=ack_action, lazy=[tolerant(on_feedback)])
    app.action(ACTION_OVERRIDE)(tolerant(open_override))  # acks first, then reads
    app.action(ACTION_DETAILS)(ack=ack_action, lazy=[tolerant(show_details)])
