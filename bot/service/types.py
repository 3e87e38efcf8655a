"""What the application service takes and returns: the inputs every adapter builds, the
results it reads, the errors it may see, and the retriever the service searches with."""

from __future__ import annotations

import datetime as dt
import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.text_input import MAX_STORED_CHARS, clean_text
from core.decision import Decision
from core.feedback import FeedbackKind


class PlaybookHit(Protocol):
    @property
    def doc_id(self) -> str: ...

    @property
    def title(self) -> str: ...

    @property
    def similarity(self) -> float: ...

    @property
    def metadata(self) -> dict[str, Any]: ...


class Retriever(Protocol):
    def search(self, query: str, k: int = 5) -> Sequence[PlaybookHit]: ...


@dataclass(frozen=True, slots=True)
class IncidentInput:
    """An incident as every adapter hands it over. Its text is stored as given, without
    control characters and up to Slack's message limit (``MAX_STORED_CHARS``) whatever
    the adapter: PostgreSQL rejects NUL, and no source may grow a row without bound."""

    text: str
    source: str
    channel: str = ""
    thread_ts: str = ""
    reporter: str = ""
    hints: Mapping[str, object] = field(default_factory=dict)
    source_event_id: str | None = None  # set by adapters whose deliveries can repeat
    received_chars: int = field(default=0, init=False, compare=False)  # before the cap

    def __post_init__(self) -> None:
        object.__setattr__(self, "received_chars", len(self.text))
        object.__setattr__(self, "text", clean_text(self.text, MAX_STORED_CHARS))

    def for_matching(self, limit: int) -> tuple[str, tuple[str, ...]]:
        """The head of the text that extraction and retrieval read (their cost grows with
        the text; an incident's start says what it is about), and trace notes saying what
        was kept."""
        notes = []
        if self.received_chars > len(self.text):
            notes.append(
                f"incident text cut to Slack's limit: the first {len(self.text):,} of "
                f"{self.received_chars:,} characters are stored"
            )
        if len(self.text) > limit:
            notes.append(
                f"incident text truncated to the first {limit:,} of {len(self.text):,} "
                "characters for matching"
            )
        return self.text[:limit], tuple(notes)


POST_LEASE = dt.timedelta(minutes=5)  # how long the worker that decided holds the post
# The inbox write happens before Slack's 3-second deadline: it waits at most this long for
# another writer, then fails the request (Slack retries) instead of missing the deadline.
ACCEPT_WAIT = dt.timedelta(seconds=1)


def incident_to_json(incident: IncidentInput) -> str:
    return json.dumps(
        {
            "text": incident.text,
            "source": incident.source,
            "channel": incident.channel,
            "thread_ts": incident.thread_ts,
            "reporter": incident.reporter,
            "hints": dict(incident.hints),
            "source_event_id": incident.source_event_id,
        }
    )


def incident_from_json(text: str) -> IncidentInput:
    data = json.loads(text)
    return IncidentInput(
        text=str(data["text"]),
        source=str(data["source"]),
        channel=str(data["channel"]),
        thread_ts=str(data["thread_ts"]),
        reporter=str(data["reporter"]),
        hints=dict(data["hints"]),
        source_event_id=data["source_event_id"],
    )


@dataclass(frozen=True, slots=True)
class UnpostedRecommendation:
    """A stored decision whose message never reached Slack (its worker died)."""

    recommendation_id: str
    decision: Decision
    channel: str
    thread_ts: str
    reporter: str


@dataclass(frozen=True, slots=True)
class Recorded:
    recommendation_id: str
    decision: Decision
    duplicate: bool = False  # the same delivery was already handled: do not post again
    verbosity: str = ""  # the reporter's own preference, read with the decision ("": none)


@dataclass(frozen=True, slots=True)
class Vote:
    operator_id: str
    kind: FeedbackKind
    playbook_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class FeedbackInput:
    recommendation_id: str
    operator_id: str
    kind: FeedbackKind
    source_event_id: str
    source: str = "button"
    reason: str = ""
    playbook_id: str | None = None  # a candidate of an abstention; default: the recommended one


class DuplicateInFlightError(RuntimeError):
    """Another delivery of the same event is being handled right now."""


class FeedbackStatus(enum.StrEnum):
    STORED = "stored"
    REPLACED = "replaced"
    WITHDRAWN = "withdrawn"
    DUPLICATE = "duplicate"
    UNKNOWN_RECOMMENDATION = "unknown_recommendation"
    NOT_A_CANDIDATE = "not_a_candidate"
    NOTHING_TO_WITHDRAW = "nothing_to_withdraw"


@dataclass(frozen=True, slots=True)
class FeedbackResult:
    status: FeedbackStatus
    loss: float | None = None
    local_score: float | None = None
    playbook_id: str | None = None

    @property
    def changed(self) -> bool:
        return self.status in {
            FeedbackStatus.STORED,
            FeedbackStatus.REPLACED,
            FeedbackStatus.WITHDRAWN,
        }


class UnknownPlaybookError(ValueError):
    """A playbook id that is not in the library (nothing to pause or resume)."""
