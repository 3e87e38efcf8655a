"""The monitor tick on a columnar log: a million live votes as a few numpy arrays.

``MetaMonitor.signals`` and ``evaluate_candidate`` read sequences of Python objects; at a
million votes building those objects costs more than the work itself. These are the same
computations on columns (``VoteColumns`` for the monitor, ``LabelledLog`` for the retrain
model), with the same results: tests hold them to the object versions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from core.feedback import FeedbackKind
from core.model import FeatureHasher, LabelledLog, LogisticModel, Prior, fit_log, predict_log
from core.monitor import LoggedVote, MetaMonitor, MonitorSignals, PlaybookTally, ewma, page_hinkley
from core.npo import NPOConfig, RetrainResult, holdout_size, retrain_verdict

KINDS: tuple[FeedbackKind, ...] = tuple(FeedbackKind)  # a vote's kind is its index here
_OVERRIDE = KINDS.index(FeedbackKind.OVERRIDE)
_SKIPPED = KINDS.index(FeedbackKind.SKIPPED)


@dataclass(frozen=True, slots=True)
class VoteColumns:
    """Every live vote, ordered by seq, as the monitor reads it (``LoggedVote`` columns)."""

    seq: npt.NDArray[np.int64]
    kind: npt.NDArray[np.int64]  # index into KINDS
    loss: npt.NDArray[np.float64]
    playbook: npt.NDArray[np.int64]  # index into playbooks; -1: the vote judged none
    playbooks: Sequence[str]

    def __len__(self) -> int:
        return len(self.seq)

    @property
    def newest(self) -> int:
        """The seq of the newest vote (0 when there is none)."""
        return int(self.seq[-1]) if len(self.seq) else 0

    @classmethod
    def of(cls, votes: Sequence[LoggedVote]) -> VoteColumns:
        """The columns of logged votes (for tests and small logs)."""
        ordered = sorted(votes, key=lambda v: v.seq)
        playbooks: dict[str, int] = {}
        return cls(
            np.array([v.seq for v in ordered], dtype=np.int64),
            np.array([KINDS.index(v.kind) for v in ordered], dtype=np.int64),
            np.array([v.loss for v in ordered], dtype=np.float64),
            np.array(
                [
                    -1
                    if v.playbook_id is None
                    else playbooks.setdefault(v.playbook_id, len(playbooks))
                    for v in ordered
                ],
                dtype=np.int64,
            ),
            tuple(playbooks),
        )


def monitor_signals(monitor: MetaMonitor, votes: VoteColumns) -> MonitorSignals:
    """``monitor.signals`` on columns (the votes ordered by seq)."""
    s, c = monitor.state, monitor.config
    since = votes.seq > s.retrained_at
    labelled = votes.kind != _SKIPPED
    override = votes.kind == _OVERRIDE
    resumed = np.array([s.resumed_at.get(pb, 0) for pb in votes.playbooks] + [0], dtype=np.int64)
    counted = (votes.playbook >= 0) & (votes.seq > resumed[votes.playbook])
    decisions = np.bincount(votes.playbook[counted], minlength=len(votes.playbooks))
    overrides = np.bincount(votes.playbook[counted & override], minlength=len(votes.playbooks))
    # In the order each playbook's first counted vote came, like the object version.
    seen, first = np.unique(votes.playbook[counted], return_index=True)
    tallies = {
        votes.playbooks[pb]: PlaybookTally(int(decisions[pb]), int(overrides[pb]))
        for pb in seen[np.argsort(first, kind="stable")].tolist()
    }
    drift = page_hinkley(votes.loss[since], c.ph_delta, c.ph_threshold)
    return MonitorSignals(
        ewma=ewma(votes.loss, c.ewma_alpha),
        drift=drift,
        drift_detected=drift > c.ph_threshold,
        labels_since_retrain=int((labelled & since).sum()),
        labels_at_retrain=int((labelled & ~since).sum()),
        overrides_since_retrain=int((since & override).sum()),
        playbooks=tallies,
    )


def holdout_loss_log(prior: Prior, log: LabelledLog) -> float:
    """``core.npo.holdout_loss`` on columns: the weighted Brier score, summed in log order
    (``cumsum`` adds one by one, as the loop does) so it is the same float."""
    if len(log) == 0:
        return 0.0
    p = predict_log(prior, log)
    total = float(np.cumsum(log.weight * (p - log.label) ** 2)[-1])
    weight = float(np.cumsum(log.weight)[-1])
    return total / weight if weight else 0.0


def evaluate_log(
    log: LabelledLog,
    trained_upto: int,
    live: Prior,
    config: NPOConfig,
    hasher: FeatureHasher | None = None,
) -> tuple[RetrainResult, LogisticModel | None]:
    """``core.npo.evaluate_candidate`` on columns: the newest share of the feedback the
    live model has not seen is held out, the candidate trains on the rest, and it is
    accepted if it lowers the hold-out Brier score by δ."""
    fresh = int((log.seq > trained_upto).sum())
    n_hold, too_few = holdout_size(fresh, config.retrain)
    if too_few is not None:
        return too_few, None
    train, hold = log.rows(0, len(log) - n_hold), log.rows(len(log) - n_hold, len(log))
    candidate = fit_log(train, config.fit, hasher)
    verdict = retrain_verdict(
        holdout_loss_log(live, hold), holdout_loss_log(candidate, hold), len(hold), config.retrain
    )
    return verdict, candidate
