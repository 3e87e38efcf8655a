"""The override modal's submission: a reason is required."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.service import FeedbackInput
from bot.slack import flows
from bot.slack.blocks import OVERRIDE_MODAL
from bot.slack.flows import SlackContext
from bot.slack.listeners import log, tolerant
from bot.slack.translate import PayloadError, override_submission
from core.feedback import FeedbackKind


def ack_reason_form(ack: Ack, body: dict[str, Any], form: str) -> None:
    """Acknowledge a submitted reason form (override or reject): a missing reason keeps the
    modal open with an error; a form Slack would not send is closed and nothing stored."""
    try:
        submission = override_submission(body)
    except PayloadError as exc:
        log.warning("ignored a malformed %s submission: %s", form, exc)
        ack()
        return
    if not submission.reason:
        ack(response_action="errors", errors={"reason": "Please say why."})
    else:
        ack()


def register(app: App, ctx: SlackContext) -> None:
    def validate(ack: Ack, body: dict[str, Any]) -> None:
        ack_reason_form(ack, body, "override")

    def on_submit(body: dict[str, Any], client: WebClient) -> None:
        sub = override_submission(body)
        if not sub.reason:
            return
        if not ctx.access.may_override(sub.user_id):
            log.warning(
                "refused: user may not override recommendations",
                extra={
                    "event_id": sub.event_id,
                    "recommendation_id": sub.recommendation_id,
                    "user": sub.user_id,
                },
            )
            return
        fb = FeedbackInput(
            sub.recommendation_id,
            sub.user_id,
            FeedbackKind.OVERRIDE,
            sub.event_id,
            source="modal",
            reason=sub.reason,
        )
        flows.apply_feedback(ctx, client, fb, sub.channel, sub.message_ts)

    app.view(OVERRIDE_MODAL)(ack=validate, lazy=[tolerant(on_submit)])
