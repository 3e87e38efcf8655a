"""What the listeners delegate to: post a recommendation, apply feedback and refresh the
message. Everything here talks to the service and the Web client, never to payloads."""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slack_sdk import WebClient

from bot.extraction.llm import template_summary
from bot.governance.submissions import Governance
from bot.service import (
    DuplicateInFlightError,
    FeedbackInput,
    FeedbackResult,
    FeedbackStatus,
    IncidentInput,
    NPOService,
)
from bot.slack.access import Access
from bot.slack.blocks import candidate_shown, fallback_text, recommendation_blocks
from bot.slack.escape import escape
from core.decision import Decision
from core.feedback import FeedbackKind

log = logging.getLogger(__name__)

# Feedback outcomes that mean the vote was not taken: logged as warnings.
_REJECTED = frozenset({FeedbackStatus.UNKNOWN_RECOMMENDATION, FeedbackStatus.NOT_A_CANDIDATE})


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


@dataclass
class SlackContext:
    service: NPOService
    access: Access
    steps: Callable[[str], Sequence[str]]
    playbook_text: Callable[[str], str | None]
    default_verbosity: str = "full"
    incident_channels: frozenset[str] = frozenset()
    reactions: dict[str, FeedbackKind] | None = None
    summarise: Callable[[Decision], str] = template_summary
    governance: Governance | None = None
    review_channel: str = ""
    approver_users: frozenset[str] = frozenset()  # empty: everyone allowed to override


def post_recommendation(ctx: SlackContext, client: WebClient, incident: IncidentInput) -> bool:
    """Recommend and post; False when this delivery was already handled."""
    started = time.perf_counter()
    ids = {"event_id": incident.source_event_id, "channel": incident.channel}
    try:
        recorded = ctx.service.recommend(incident)
    except DuplicateInFlightError:
        log.info("duplicate delivery ignored (being handled)", extra=ids)
        return False
    except Exception:
        log.error("recommending failed", extra=ids, exc_info=True)
        raise
    ids["recommendation_id"] = recorded.recommendation_id
    if recorded.duplicate:
        log.info("duplicate delivery ignored", extra=ids)
        return False
    post_decision(
        ctx,
        client,
        recorded.recommendation_id,
        recorded.decision,
        incident.channel,
        incident.thread_ts,
        incident.reporter,
        ids,
        started,
        verbosity=recorded.verbosity or ctx.default_verbosity,
    )
    return True


def post_decision(
    ctx: SlackContext,
    client: WebClient,
    recommendation_id: str,
    decision: Decision,
    channel: str,
    thread_ts: str,
    reporter: str,
    ids: dict[str, Any],
    started: float,
    verbosity: str | None = None,
) -> None:
    """Render a stored decision, post it and record the message; the caller holds the
    post (its lease). A failed post gives the lease back, so a retry or the outbox job
    can post it at once. ``verbosity`` is the reporter's when the caller read it already
    (with the decision); otherwise it is read here."""
    if verbosity is None:
        verbosity = ctx.service.verbosity(reporter, ctx.default_verbosity)
    shown = candidate_shown(decision)  # the recommendation, or the one awaiting
    steps = ctx.steps(shown.playbook_id) if shown else ()
    kwargs: dict[str, Any] = {"thread_ts": thread_ts} if thread_ts else {}
    try:
        response = client.chat_postMessage(
            channel=channel,
            text=fallback_text(decision),
            blocks=recommendation_blocks(
                recommendation_id,
                decision,
                steps,
                verbosity,
                summary=ctx.summarise(decision),
            ),
            **kwargs,
        )
    except Exception as exc:
        log.warning("posting the recommendation failed", extra={**ids, "error": str(exc)})
        ctx.service.release_post(recommendation_id)
        raise
    ctx.service.attach_message(recommendation_id, channel, str(response["ts"]))
    log.info(
        "recommendation posted",
        extra={
            **ids,
            "recommendation_id": recommendation_id,
            "outcome": decision.outcome.value,
            "playbook": decision.chosen.playbook_id if decision.chosen else None,
            "latency_ms": _ms(started),
        },
    )


def refresh_message(
    ctx: SlackContext,
    client: WebClient,
    recommendation_id: str,
    channel: str,
    ts: str,
    *,
    event_id: str | None = None,
) -> None:
    """Replace the buttons with who judged it and why (or restore them if nobody has)."""
    decision = ctx.service.decision(recommendation_id)
    if decision is None:
        return
    votes = ctx.service.votes(recommendation_id)
    shown = [(v.operator_id, v.kind, v.reason) for v in votes] if votes else None
    candidate = candidate_shown(decision)
    steps = ctx.steps(candidate.playbook_id) if candidate else ()
    try:
        client.chat_update(
            channel=channel,
            ts=ts,
            text=fallback_text(decision),
            blocks=recommendation_blocks(
                recommendation_id, decision, steps, ctx.default_verbosity, shown
            ),
        )
    except Exception as exc:
        log.warning(
            "updating the recommendation message failed",
            extra={
                "event_id": event_id,
                "recommendation_id": recommendation_id,
                "channel": channel,
                "message_ts": ts,
                "error": str(exc),
            },
        )
        raise


def apply_feedback(
    ctx: SlackContext, client: WebClient, fb: FeedbackInput, channel: str, ts: str
) -> FeedbackResult:
    started = time.perf_counter()
    try:
        result = ctx.service.record_feedback(fb)
    except Exception:
        log.error(
            "recording feedback failed",
            extra={"event_id": fb.source_event_id, "recommendation_id": fb.recommendation_id},
            exc_info=True,
        )
        raise
    if result.changed:
        refresh_message(ctx, client, fb.recommendation_id, channel, ts, event_id=fb.source_event_id)
    log.log(
        logging.WARNING if result.status in _REJECTED else logging.INFO,
        "feedback %s",
        result.status.value.replace("_", " "),
        extra={
            "event_id": fb.source_event_id,
            "recommendation_id": fb.recommendation_id,
            "kind": fb.kind.value,
            "status": result.status.value,
            "user": fb.operator_id,
            "latency_ms": _ms(started),
        },
    )
    return result


def refuse(
    client: WebClient, channel: str, user: str, what: str, *, event_id: str | None = None
) -> None:
    log.warning(
        "refused: user may not %s",
        what,
        extra={"event_id": event_id, "user": user, "channel": channel},
    )
    client.chat_postEphemeral(
        channel=channel, user=user, text=f"Sorry, you are not allowed to {escape(what)} here."
    )


def upload_chart(ctx: SlackContext, client: WebClient, channel: str, thread_ts: str | None) -> None:
    """Render the alignment chart and upload it (into the thread when there is one)."""
    from bot.reporting.charts import write_chart

    with tempfile.TemporaryDirectory(prefix="npo-chart-") as tmp:
        path = Path(tmp) / "alignment.png"
        write_chart(ctx.service.engine, path)
        kwargs: dict[str, Any] = {"thread_ts": thread_ts} if thread_ts else {}
        client.files_upload_v2(
            channel=channel,
            file=str(path),
            title="NPO alignment",
            filename="alignment.png",
            **kwargs,
        )
