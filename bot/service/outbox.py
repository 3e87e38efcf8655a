"""The inbox and the outbox: an incident is noted durably before Slack is told it arrived,
and a decision's post is held by one worker at a time (a lease), so a process that dies
between deciding and posting loses nothing: another replica, or the next start, finishes.
"""

from __future__ import annotations

import datetime as dt
import json

from sqlmodel import select

from bot.db.models import Incident, Recommendation
from bot.db.outbox_rows import accept, claim_post, claim_unposted, claim_waiting, release_post
from bot.db.recommendation_rows import store_message_ts
from bot.service.types import (
    ACCEPT_WAIT,
    POST_LEASE,
    IncidentInput,
    UnpostedRecommendation,
    incident_from_json,
    incident_to_json,
)
from bot.service.unit_of_work import UnitOfWork
from core.codec import decision_from_dict
from core.decision import Decision


class Outbox:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    def accept(self, incident: IncidentInput) -> bool:
        """Durably note an incident before Slack is told it arrived (the ack): if this
        process dies before deciding it, another replica or the next start does. False
        when the same delivery was accepted already."""
        if not incident.source_event_id:
            raise ValueError("accept: an incident needs its delivery's event id")
        with self.uow.write_within(ACCEPT_WAIT) as conn:
            return accept(
                conn, incident.source_event_id, incident_to_json(incident), self.uow.clock()
            )

    def waiting_incidents(
        self, older_than: dt.timedelta, lease: dt.timedelta = POST_LEASE, limit: int = 50
    ) -> list[IncidentInput]:
        """Accepted incidents nobody decided within ``older_than``, claimed for this caller."""
        now = self.uow.clock()
        with self.uow.write() as conn:
            rows = claim_waiting(conn, now, now - older_than, lease, limit)
        return [incident_from_json(text) for _, text in rows]

    def unposted(
        self, lease: dt.timedelta = POST_LEASE, limit: int = 50
    ) -> list[UnpostedRecommendation]:
        """Stored recommendations whose post nobody holds any more, claimed for this caller."""
        now = self.uow.clock()
        with self.uow.write() as conn:
            ids = claim_unposted(conn, now, lease, limit)
        out = []
        with self.uow.read_rows() as session:
            for rec_id in ids:
                rec = session.get(Recommendation, rec_id)
                if rec is None:
                    continue
                incident = session.get(Incident, rec.incident_id)
                out.append(
                    UnpostedRecommendation(
                        rec.id,
                        decision_from_dict(json.loads(rec.decision_json)),
                        rec.channel,
                        incident.thread_ts if incident else "",
                        incident.reporter if incident else "",
                    )
                )
        return out

    def claim_post(self, recommendation_id: str, lease: dt.timedelta = POST_LEASE) -> bool:
        """Hold the post of a stored recommendation nobody holds (a retry of its delivery)."""
        now = self.uow.clock()
        with self.uow.write() as conn:
            return claim_post(conn, recommendation_id, now, lease)

    def release_post(self, recommendation_id: str) -> None:
        """Give the post back after a failed attempt: the next one may go at once."""
        with self.uow.write() as conn:
            release_post(conn, recommendation_id)

    def attach_message(self, recommendation_id: str, channel: str, message_ts: str) -> None:
        with self.uow.write() as conn:
            store_message_ts(conn, recommendation_id, channel, message_ts)

    def recommendation_for_message(self, channel: str, message_ts: str) -> str | None:
        with self.uow.read_rows() as session:
            rec = session.exec(
                select(Recommendation).where(
                    Recommendation.channel == channel, Recommendation.message_ts == message_ts
                )
            ).first()
            return rec.id if rec else None

    def decision(self, recommendation_id: str) -> Decision | None:
        with self.uow.read_rows() as session:
            rec = session.get(Recommendation, recommendation_id)
            return decision_from_dict(json.loads(rec.decision_json)) if rec else None
