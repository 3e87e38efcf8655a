"""Playbook submissions and reviews: the modal, and the Approve / Request changes buttons."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.governance.submissions import Decision, render_draft
from bot.slack.blocks import (
    ACTION_APPROVE,
    ACTION_REQUEST_CHANGES,
    SUBMIT_MODAL,
    review_blocks,
    review_text,
)
from bot.slack.flows import SlackContext
from bot.slack.listeners import tolerant
from bot.slack.translate import PayloadError, draft_from_submission
from retrieval.playbook import PlaybookError, parse_playbook

_REFUSAL = {
    Decision.REFUSED_AUTHOR: "An author cannot approve their own playbook.",
    Decision.REFUSED_NOT_REVIEWER: "Only the configured reviewers can review playbooks.",
    Decision.ALREADY_DECIDED: "This submission has already been reviewed.",
    Decision.UNKNOWN: "This submission no longer exists.",
}


def register(app: App, ctx: SlackContext) -> None:
    governance = ctx.governance
    if governance is None:
        return

    def validate(ack: Ack, body: dict[str, Any]) -> None:
        try:
            parse_playbook(render_draft(draft_from_submission(body), "check"), "submission")
        except PayloadError as exc:
            ack(response_action="errors", errors={"id": str(exc)})
            return
        except PlaybookError as exc:
            block = (
                exc.field.split(".")[0]
                if exc.field.split(".")[0] in body["view"]["state"]["values"]
                else "id"
            )
            ack(response_action="errors", errors={block: f"{exc.field}: {exc.message}"})
            return
        ack()

    def on_submit(body: dict[str, Any], client: WebClient) -> None:
        author = str(body["user"]["id"])
        try:
            submission = governance.submit(draft_from_submission(body), author)
        except (PlaybookError, PayloadError):
            return  # the modal already showed the author what to fix
        response = client.chat_postMessage(
            channel=ctx.review_channel,
            text=review_text(submission.playbook_id),
            blocks=review_blocks(submission.id, submission.playbook_id, author, submission.text),
        )
        governance.attach(submission.id, ctx.review_channel, str(response["ts"]))

    def ack_action(ack: Ack) -> None:
        ack()

    def on_review(body: dict[str, Any], client: WebClient) -> None:
        action = body["actions"][0]
        user = str(body["user"]["id"])
        submission_id = str(action["value"])
        decision = governance.decide(
            submission_id, user, approve=action["action_id"] == ACTION_APPROVE
        )
        channel = str(body["container"]["channel_id"])
        if decision in _REFUSAL:
            client.chat_postEphemeral(channel=channel, user=user, text=_REFUSAL[decision])
            return
        sub = governance.get(submission_id)
        assert sub is not None
        client.chat_update(
            channel=channel,
            ts=str(body["container"]["message_ts"]),
            text=review_text(sub.playbook_id, decision.value),
            blocks=review_blocks(
                sub.id,
                sub.playbook_id,
                sub.author,
                sub.text,
                reviewer=user,
                approved=decision is Decision.APPROVED,
            ),
        )

    app.view(SUBMIT_MODAL)(ack=validate, lazy=[tolerant(on_submit)])
    for action_id in (ACTION_APPROVE, ACTION_REQUEST_CHANGES):
        app.action(action_id)(ack=ack_action, lazy=[tolerant(on_review)])
