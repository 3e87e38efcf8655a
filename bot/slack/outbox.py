"""Finishing what a dead process acknowledged: incidents in the inbox that nobody decided,
and stored recommendations that never reached Slack. Any replica runs this; the leases
in the database make each item handled once."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from slack_sdk import WebClient

from bot.slack import flows
from bot.slack.blocks import fallback_text, recommendation_blocks
from bot.slack.flows import SlackContext

log = logging.getLogger(__name__)
STALE_AFTER = dt.timedelta(seconds=60)  # a live worker decides and posts well within this


def deliver_pending(ctx: SlackContext, client: WebClient) -> dict[str, int]:
    """Decide the waiting incidents and post the unposted recommendations; counts."""
    decided = 0
    for incident in ctx.service.waiting_incidents(STALE_AFTER):
        log.warning(
            "incident %s was acknowledged but not decided: deciding it now",
            incident.source_event_id,
        )
        decided += flows.post_recommendation(ctx, client, incident)
    posted = 0
    for stored in ctx.service.unposted():
        log.warning(
            "recommendation %s was stored but not posted: posting it now",
            stored.recommendation_id,
        )
        decision = stored.decision
        verbosity = ctx.service.verbosity(stored.reporter, ctx.default_verbosity)
        steps = ctx.steps(decision.chosen.playbook_id) if decision.chosen else ()
        kwargs: dict[str, Any] = {"thread_ts": stored.thread_ts} if stored.thread_ts else {}
        response = client.chat_postMessage(
            channel=stored.channel,
            text=fallback_text(decision),
            blocks=recommendation_blocks(
                stored.recommendation_id,
                decision,
                steps,
                verbosity,
                summary=ctx.summarise(decision),
            ),
            **kwargs,
        )
        ctx.service.attach_message(stored.recommendation_id, stored.channel, str(response["ts"]))
        posted += 1
    return {"decided": decided, "posted": posted}
