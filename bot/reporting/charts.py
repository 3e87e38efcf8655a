"""``npo stats --chart FILE.png``: alignment loss, override rate and threshold over time."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bot.db.models import Feedback, Recommendation


def _rolling(values: list[float], window: int) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if len(arr) == 0:
        return arr
    sums = np.cumsum(arr)
    out = np.empty_like(arr)
    for i in range(len(arr)):
        lo = max(0, i - window + 1)
        out[i] = (sums[i] - (sums[lo - 1] if lo else 0.0)) / (i - lo + 1)
    return out


def write_chart(engine: Engine, path: Path, window: int = 20) -> None:
    """Render and write atomically (a failure leaves any previous chart in place)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with Session(engine) as session:
        votes = session.exec(
            select(Feedback)
            .where(col(Feedback.withdrawn).is_(False))
            .order_by(col(Feedback.created_at))
        ).all()
        recs = session.exec(select(Recommendation).order_by(col(Recommendation.created_at))).all()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=False)
    if votes:
        when = [v.created_at for v in votes]
        top.plot(
            when,
            _rolling([v.loss for v in votes], window),
            label=f"alignment loss (rolling {window})",
        )
        top.plot(
            when,
            _rolling([1.0 if v.kind == "override" else 0.0 for v in votes], window),
            label=f"override rate (rolling {window})",
        )
        top.legend(fontsize=8)
    top.set(title="alignment", ylim=(0, 1))
    if recs:
        bottom.step([r.created_at for r in recs], [r.threshold for r in recs], where="post")
    bottom.set(title="decision threshold τ", ylim=(0.45, 0.95))
    fig.autofmt_xdate()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
