"""Reads and preferences: alignment stats, the votes on a recommendation, pausing a
playbook by hand, and each operator's verbosity."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from sqlalchemy.engine import Engine
from sqlmodel import col, select

from bot.db.models import Feedback, OperatorPrefs
from bot.db.recommendation_rows import operator_verbosity
from bot.db.state import audit, load_monitor, read_clock, read_monitor, save_monitor
from bot.reporting.stats import PlaybookStats, playbook_stats
from bot.service.types import UnknownPlaybookError, Vote
from bot.service.unit_of_work import UnitOfWork
from core.feedback import FeedbackKind
from core.npo import NPOConfig


def set_paused(
    engine: Engine,
    config: NPOConfig,
    playbook_id: str,
    paused: bool,
    actor: str,
    reason: str,
    now: dt.datetime,
    known: Callable[[str], bool] | None = None,
) -> bool:
    """Pause or resume a playbook by hand (audited); returns whether anything changed.
    ``known`` says which ids exist: anything else is refused (``UnknownPlaybookError``)."""
    if known is not None and not known(playbook_id):
        raise UnknownPlaybookError(f"no playbook {playbook_id!r} in the library")
    with engine.begin() as conn:
        monitor = load_monitor(conn, config.monitor)
        if paused == (playbook_id in monitor.state.paused):
            return False
        if paused:
            monitor.pause(playbook_id)
        else:
            monitor.resume(playbook_id, read_clock(conn)[0])
        save_monitor(conn, monitor, now)
        action = "pause" if paused else "resume"
        audit(conn, actor, f"playbook:{action}", playbook_id, {"reason": reason}, now)
        return True


class Reads:
    def __init__(self, uow: UnitOfWork, config: NPOConfig) -> None:
        self.uow, self.config = uow, config

    def stats(self, playbook_id: str | None = None) -> list[PlaybookStats]:
        return playbook_stats(self.uow.engine, playbook_id)

    def set_paused(self, playbook_id: str, paused: bool, actor: str, reason: str = "") -> bool:
        return set_paused(
            self.uow.engine, self.config, playbook_id, paused, actor, reason, self.uow.clock()
        )

    def paused(self) -> set[str]:
        with self.uow.read() as conn:
            return set(read_monitor(conn, self.config.monitor).state.paused)

    def verbosity(self, operator_id: str, default: str) -> str:
        with self.uow.read() as conn:
            return operator_verbosity(conn, operator_id) or default

    def set_verbosity(self, operator_id: str, verbosity: str) -> None:
        if verbosity not in {"brief", "full"}:
            raise ValueError(f"verbosity: {verbosity!r} is not 'brief' or 'full'")
        with self.uow.write_rows() as session:
            prefs = session.get(OperatorPrefs, operator_id) or OperatorPrefs(
                operator_id=operator_id
            )
            prefs.verbosity, prefs.updated_at = verbosity, self.uow.clock()
            session.add(prefs)
            audit(
                session.connection(),
                operator_id,
                "prefs",
                operator_id,
                {"verbosity": verbosity},
                self.uow.clock(),
            )

    def votes(self, recommendation_id: str) -> list[Vote]:
        with self.uow.read_rows() as session:
            rows = session.exec(
                select(Feedback)
                .where(
                    Feedback.recommendation_id == recommendation_id,
                    col(Feedback.withdrawn).is_(False),
                )
                .order_by(col(Feedback.updated_at))
            ).all()
            return [
                Vote(r.operator_id, FeedbackKind(r.kind), r.playbook_id, r.reason) for r in rows
            ]
