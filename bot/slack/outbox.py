"""Finishing what a dead process acknowledged: incidents in the inbox that nobody decided,
and stored recommendations that never reached Slack. Any replica runs this; the leases
in the database make each item handled once."""

from __future__ import annotations

import datetime as dt
import logging
import time

from slack_sdk import WebClient

from bot.slack import flows
from bot.slack.flows import SlackContext

log = logging.getLogger(__name__)
STALE_AFTER = dt.timedelta(seconds=60)  # a live worker decides and posts well within this


def deliver_pending(ctx: SlackContext, client: WebClient) -> dict[str, int]:
    """Decide the waiting incidents and post the unposted recommendations; counts. One
    item that fails (an archived channel, Slack down) is logged and left for the next
    pass; it never stops the others."""
    counts = {"decided": 0, "posted": 0, "failed": 0}
    for incident in ctx.service.waiting_incidents(STALE_AFTER):
        ids = {"event_id": incident.source_event_id, "channel": incident.channel}
        log.warning("incident acknowledged but never decided: deciding it now", extra=ids)
        try:
            counts["decided"] += flows.post_recommendation(ctx, client, incident)
        except Exception as exc:
            counts["failed"] += 1
            log.warning("could not finish the incident", extra={**ids, "error": str(exc)})
    for stored in ctx.service.unposted():
        ids = {"recommendation_id": stored.recommendation_id, "channel": stored.channel}
        log.warning("recommendation stored but never posted: posting it now", extra=ids)
        try:
            flows.post_decision(
                ctx,
                client,
                stored.recommendation_id,
                stored.decision,
                stored.channel,
                stored.thread_ts,
                stored.reporter,
                ids,
                time.perf_counter(),
            )
        except Exception:
            counts["failed"] += 1  # logged by post_decision; the lease was given back
        else:
            counts["posted"] += 1
    return counts
