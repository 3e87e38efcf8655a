"""What the approval listeners and the deferral job delegate to in Slack: approve or
reject a recommendation awaiting a second engineer and update its message in place, and
post what became of a deferred candidate in its incident's thread."""

from __future__ import annotations

import logging
import time
from typing import Any

from slack_sdk import WebClient

from bot.service.approvals import (
    REFUSED,
    ApprovalResult,
    ApprovalStatus,
    Approvers,
    approve,
    reject,
)
from bot.service.deferrals import FollowUp, Poster
from bot.slack.blocks import candidate_shown, fallback_text, recommendation_blocks
from bot.slack.escape import escape, mention
from bot.slack.flows import SlackContext

log = logging.getLogger(__name__)

_REFUSAL_TEXT = {
    ApprovalStatus.NOT_AN_APPROVER: "Sorry, you are not one of the approvers of this workspace.",
    ApprovalStatus.OWN_REQUEST: "Sorry, a second engineer must approve: not the requester.",
    ApprovalStatus.NO_REASON: "Please say why you reject it.",
}


def approvers(ctx: SlackContext) -> Approvers:
    return Approvers(ctx.approver_users, ctx.access.may_override)


def refuse(
    client: WebClient, channel: str, user: str, status: ApprovalStatus, ids: dict[str, Any]
) -> None:
    """Tell only the refused engineer why (an ephemeral message); the refusal is audited
    by the use case."""
    log.warning("approval refused: %s", status.value.replace("_", " "), extra={**ids, "user": user})
    client.chat_postEphemeral(channel=channel, user=user, text=_REFUSAL_TEXT[status])


def _render(ctx: SlackContext, client: WebClient, rec_id: str, channel: str, ts: str) -> None:
    decision = ctx.service.decision(rec_id)
    if decision is None:
        return
    votes = ctx.service.votes(rec_id)
    shown = [(v.operator_id, v.kind, v.reason) for v in votes] if votes else None
    candidate = candidate_shown(decision)
    client.chat_update(
        channel=channel,
        ts=ts,
        text=fallback_text(decision),
        blocks=recommendation_blocks(
            rec_id,
            decision,
            ctx.steps(candidate.playbook_id) if candidate else (),
            ctx.default_verbosity,
            shown,
        ),
    )


def _answer(
    ctx: SlackContext,
    client: WebClient,
    result: ApprovalResult,
    user: str,
    channel: str,
    ts: str,
    ids: dict[str, Any],
    started: float,
) -> None:
    if result.status in REFUSED:
        refuse(client, channel, user, result.status, ids)
        return
    if result.changed:
        _render(ctx, client, ids["recommendation_id"], channel, ts)  # buttons become feedback
    elif result.status is ApprovalStatus.ALREADY_DECIDED and result.decided_by != user:
        client.chat_postEphemeral(
            channel=channel,
            user=user,
            text=f"Already decided by {mention(result.decided_by or '')}.",
        )
    log.log(
        logging.INFO if result.changed else logging.WARNING,
        "approval %s",
        result.status.value.replace("_", " "),
        extra={
            **ids,
            "user": user,
            "status": result.status.value,
            "latency_ms": round((time.perf_counter() - started) * 1000, 1),
        },
    )


def approve_in_slack(
    ctx: SlackContext,
    client: WebClient,
    rec_id: str,
    user: str,
    channel: str,
    ts: str,
    event_id: str,
) -> ApprovalResult:
    started = time.perf_counter()
    allowed = approvers(ctx).may_approve(user)
    result = approve(ctx.service, rec_id, user, allowed)
    ids = {"event_id": event_id, "recommendation_id": rec_id}
    _answer(ctx, client, result, user, channel, ts, ids, started)
    return result


def reject_in_slack(
    ctx: SlackContext,
    client: WebClient,
    rec_id: str,
    user: str,
    channel: str,
    ts: str,
    event_id: str,
    reason: str,
) -> ApprovalResult:
    started = time.perf_counter()
    allowed = approvers(ctx).may_approve(user)
    result = reject(ctx.service, rec_id, user, allowed, reason)
    ids = {"event_id": event_id, "recommendation_id": rec_id}
    _answer(ctx, client, result, user, channel, ts, ids, started)
    return result


def deferral_poster(ctx: SlackContext, client: WebClient) -> Poster:
    """Posts a deferral's outcome in its incident's thread (under the bot's own message
    when the incident had no thread); raises when Slack refuses, so the job is retried."""

    def post(follow: FollowUp) -> None:
        decision = follow.decision
        thread = follow.thread_ts
        candidate = candidate_shown(decision)
        kwargs: dict[str, Any] = {"thread_ts": thread} if thread else {}
        head = (
            ":repeat: Judged again with fresh context"
            if not follow.gave_up
            else ":repeat: Judged again for the last time"
        )
        client.chat_postMessage(
            channel=follow.channel,
            text=f"{head}: {fallback_text(decision)}",
            blocks=[
                {"type": "context", "elements": [{"type": "mrkdwn", "text": escape(head)}]},
                *recommendation_blocks(
                    follow.recommendation_id,
                    decision,
                    ctx.steps(candidate.playbook_id) if candidate else (),
                    ctx.default_verbosity,
                    summary=ctx.summarise(decision),
                ),
            ][:50],
            **kwargs,
        )

    return post
