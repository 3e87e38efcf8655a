"""Approve / Reject on a recommendation awaiting a second engineer, and the reject-reason
modal. Approve is stored after the ack; Reject opens its modal inside the ack's 3 s (a
trigger_id lives that long) once the clicker is known to be allowed."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.service.approvals import refusal
from bot.slack import follow_ups
from bot.slack.blocks import ACTION_APPROVE_RUN, ACTION_REJECT_RUN, REJECT_MODAL, reject_modal
from bot.slack.flows import SlackContext
from bot.slack.listeners import tolerant
from bot.slack.listeners.views import ack_reason_form
from bot.slack.translate import action_ref, override_submission


def register(app: App, ctx: SlackContext) -> None:
    def ack_action(ack: Ack) -> None:
        ack()

    def on_approve(body: dict[str, Any], client: WebClient) -> None:
        ref = action_ref(body)
        follow_ups.approve_in_slack(
            ctx,
            client,
            ref.recommendation_id,
            ref.user_id,
            ref.channel,
            ref.message_ts,
            ref.event_id,
        )

    def open_reject(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        ref = action_ref(body)
        allowed = follow_ups.approvers(ctx).may_approve(ref.user_id)
        why = refusal(ctx.service, ref.recommendation_id, ref.user_id, allowed, "reject")
        if why is not None:
            ids = {"event_id": ref.event_id, "recommendation_id": ref.recommendation_id}
            follow_ups.refuse(client, ref.channel, ref.user_id, why, ids)
            return
        client.views_open(
            trigger_id=str(body["trigger_id"]),
            view=reject_modal(ref.recommendation_id, ref.channel, ref.message_ts),
        )

    def validate(ack: Ack, body: dict[str, Any]) -> None:
        ack_reason_form(ack, body, "reject")

    def on_reject(body: dict[str, Any], client: WebClient) -> None:
        sub = override_submission(body)
        if not sub.reason:
            return
        follow_ups.reject_in_slack(
            ctx,
            client,
            sub.recommendation_id,
            sub.user_id,
            sub.channel,
            sub.message_ts,
            sub.event_id,
            sub.reason,
        )

    app.action(ACTION_APPROVE_RUN)(ack=ack_action, lazy=[tolerant(on_approve)])
    app.action(ACTION_REJECT_RUN)(tolerant(open_reject))  # acks first, then reads
    app.view(REJECT_MODAL)(ack=validate, lazy=[tolerant(on_reject)])
