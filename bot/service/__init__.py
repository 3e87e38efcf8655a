"""The application service, split by use case: ``recommend`` (retrieve, score, decide,
store), ``feedback`` (votes, withdrawals, unanswered abstentions), ``outbox`` (the durable
inbox and the post lease), ``reads`` (stats, votes, pauses, preferences), and the follow-up
paths ``approvals`` and ``deferrals``. ``NPOService`` (``facade``) is what adapters hold.

May import ``bot.db``, ``bot.context``, ``bot.extraction``, ``bot.reporting.stats``, ``core``;
never an adapter (``bot.slack``, ``bot.console``, ``bot.alerts``) and never ``retrieval``
(the retriever is passed in).
"""

from bot.service.facade import NPOService
from bot.service.reads import set_paused
from bot.service.types import (
    ACCEPT_WAIT,
    POST_LEASE,
    DuplicateInFlightError,
    FeedbackInput,
    FeedbackResult,
    FeedbackStatus,
    IncidentInput,
    PlaybookHit,
    Recorded,
    Retriever,
    UnknownPlaybookError,
    UnpostedRecommendation,
    Vote,
    incident_from_json,
    incident_to_json,
)

__all__ = [
    "ACCEPT_WAIT",
    "POST_LEASE",
    "DuplicateInFlightError",
    "FeedbackInput",
    "FeedbackResult",
    "FeedbackStatus",
    "IncidentInput",
    "NPOService",
    "PlaybookHit",
    "Recorded",
    "Retriever",
    "UnknownPlaybookError",
    "UnpostedRecommendation",
    "Vote",
    "incident_from_json",
    "incident_to_json",
    "set_paused",
]
