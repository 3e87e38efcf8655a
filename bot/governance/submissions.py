"""Playbook governance: submissions become vetted only when a reviewer who is not their
author approves them. Approval stores the vetted text in the submission's row (the database
is the source of truth for every replica) and then calls ``on_approved``, which syncs this
replica's folder and re-ingests (bot/governance/library_sync.py; the other replicas sync
within 30 s)."""

from __future__ import annotations

import datetime as dt
import enum
import logging
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from bot.db.engine import transaction
from bot.db.models import AuditEntry, PlaybookSubmission
from retrieval.playbook import PlaybookError, parse_playbook

log = logging.getLogger(__name__)

_FRONT = re.compile(r"\A---\r?\n(.*?)\r?\n---[ \t]*\r?\n", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Draft:
    """What an author fills in."""

    id: str
    title: str
    action: str
    risk: str
    blast_radius: int
    symptoms: str
    diagnosis: str
    steps: str
    rollback: str
    components: list[str] = field(default_factory=list)
    fault_types: list[str] = field(default_factory=list)


def render_draft(draft: Draft, author: str) -> str:
    meta = {
        "id": draft.id,
        "title": draft.title,
        "action": draft.action,
        "applies_to": {"components": draft.components, "fault_types": draft.fault_types},
        "risk": draft.risk,
        "blast_radius": draft.blast_radius,
        "status": "draft",
        "authors": [author],
        "reviewers": [],
        "version": 1,
    }
    body = "\n\n".join(
        f"## {name}\n\n{text.strip()}"
        for name, text in (
            ("Symptoms", draft.symptoms),
            ("Diagnosis", draft.diagnosis),
            ("Steps", draft.steps),
            ("Rollback", draft.rollback),
        )
    )
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + f"---\n\n# {draft.title}\n\n{body}\n"


def vetted(text: str, reviewer: str, today: dt.date) -> str:
    """The same playbook, now vetted by ``reviewer``."""
    match = _FRONT.match(text)
    if not match:
        raise ValueError("submission has no front matter")
    meta = yaml.safe_load(match.group(1))
    meta["status"] = "vetted"
    meta["reviewers"] = sorted({*meta.get("reviewers", []), reviewer})
    meta["reviewed_at"] = today.isoformat()
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n" + text[match.end() :]


class Decision(enum.StrEnum):
    APPROVED = "approved"
    CHANGES_REQUESTED = "changes_requested"
    REFUSED_AUTHOR = "refused_author"
    REFUSED_NOT_REVIEWER = "refused_not_reviewer"
    ALREADY_DECIDED = "already_decided"
    UNKNOWN = "unknown"


class Governance:
    def __init__(
        self,
        engine: Engine,
        folder: Path,
        reviewers: Collection[str],
        on_approved: Callable[[], object],
        clock: Callable[[], dt.datetime],
    ) -> None:
        self.engine, self.folder, self.reviewers = engine, folder, set(reviewers)
        self.on_approved, self.clock = on_approved, clock

    def submit(self, draft: Draft, author: str) -> PlaybookSubmission:
        """Validate and store a draft; raises ``PlaybookError`` naming the field."""
        text = render_draft(draft, author)
        parse_playbook(text, f"submission:{draft.id}")
        exists = PlaybookError(f"submission:{draft.id}", "id", "a playbook with this id exists")
        if (self.folder / f"{draft.id}.md").exists():
            raise exists
        with transaction(self.engine) as session:
            approved = select(PlaybookSubmission.id).where(
                PlaybookSubmission.playbook_id == draft.id, PlaybookSubmission.status == "approved"
            )
            if session.exec(approved).first() is not None:  # approved on another replica
                raise exists
            sub = PlaybookSubmission(
                playbook_id=draft.id, author=author, text=text, created_at=self.clock()
            )
            session.add(sub)
            session.add(
                AuditEntry(
                    actor=author,
                    action="playbook:submit",
                    subject=draft.id,
                    created_at=self.clock(),
                )
            )
        return sub

    def attach(self, submission_id: str, channel: str, ts: str) -> None:
        with transaction(self.engine) as session:
            sub = session.get(PlaybookSubmission, submission_id)
            if sub is not None:
                sub.channel, sub.message_ts = channel, ts
                session.add(sub)

    def get(self, submission_id: str) -> PlaybookSubmission | None:
        with Session(self.engine) as session:
            return session.get(PlaybookSubmission, submission_id)

    def decide(self, submission_id: str, reviewer: str, approve: bool, note: str = "") -> Decision:
        with transaction(self.engine) as session:
            sub = session.get(PlaybookSubmission, submission_id)
            if sub is None:
                return Decision.UNKNOWN
            if sub.status != "pending":
                return Decision.ALREADY_DECIDED
            if reviewer == sub.author:
                return Decision.REFUSED_AUTHOR
            if self.reviewers and reviewer not in self.reviewers:
                return Decision.REFUSED_NOT_REVIEWER
            sub.reviewer, sub.note, sub.decided_at = reviewer, note, self.clock()
            sub.status = "approved" if approve else "changes_requested"
            session.add(sub)
            session.add(
                AuditEntry(
                    actor=reviewer,
                    action=f"playbook:{sub.status}",
                    subject=sub.playbook_id,
                    created_at=self.clock(),
                )
            )
            if approve:
                text = vetted(sub.text, reviewer, self.clock().date())
                parse_playbook(text, f"submission:{sub.playbook_id}")  # still valid once vetted
                sub.text = text  # what every replica's library sync writes
        if not approve:
            return Decision.CHANGES_REQUESTED
        try:
            self.on_approved()  # sync this replica's folder and ingest: retrievable now
        except Exception:  # the approval is stored; the periodic sync tries again
            log.exception("approved %s, but syncing the library failed", submission_id)
        return Decision.APPROVED
