"""Playbook alignment stats, read straight from the feedback table."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bot.db.models import Feedback


@dataclass(frozen=True, slots=True)
class PlaybookStats:
    playbook_id: str
    decisions: int
    likes: int
    overrides: int
    neutral: int
    skipped: int
    mean_loss: float

    @property
    def override_rate(self) -> float:
        judged = self.likes + self.overrides + self.neutral
        return self.overrides / judged if judged else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "playbook": self.playbook_id,
            "decisions": self.decisions,
            "likes": self.likes,
            "overrides": self.overrides,
            "neutral": self.neutral,
            "skipped": self.skipped,
            "mean_loss": round(self.mean_loss, 6),
            "override_rate": round(self.override_rate, 6),
        }


def playbook_stats(engine: Engine, playbook_id: str | None = None) -> list[PlaybookStats]:
    query = (
        select(Feedback.playbook_id, Feedback.kind, func.count(), func.avg(Feedback.loss))
        .where(col(Feedback.withdrawn).is_(False), Feedback.playbook_id != "")
        .group_by(Feedback.playbook_id, Feedback.kind)
    )
    if playbook_id:
        query = query.where(Feedback.playbook_id == playbook_id)
    with Session(engine) as session:
        rows = session.exec(query).all()
    table: dict[str, dict[str, tuple[int, float]]] = {}
    for pb, kind, count, mean in rows:
        table.setdefault(pb, {})[kind] = (int(count), float(mean or 0.0))
    out = []
    for pb, kinds in sorted(table.items()):
        n = sum(c for c, _ in kinds.values())
        loss = sum(c * m for c, m in kinds.values()) / n if n else 0.0
        counts = {k: c for k, (c, _) in kinds.items()}
        out.append(
            PlaybookStats(
                pb,
                n,
                counts.get("like", 0),
                counts.get("override", 0),
                counts.get("neutral", 0),
                counts.get("skipped", 0),
                loss,
            )
        )
    return out
