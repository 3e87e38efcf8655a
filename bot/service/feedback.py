"""Feedback: store one vote and learn from it, withdraw it, or close an abstention nobody
answered.

Feedback is idempotent: each delivery carries a source event id that is stored once
(unique key), so a Slack retry, a second click or a second replica changes nothing. One
operator's later vote on a recommendation replaces the earlier one. Every vote goes through
the one learning step of the core (``core.learning.learn``); a replaced or withdrawn vote's
arm evidence is taken back exactly, and its scenario evidence leaves with it (scenario
evidence is counted from the live votes, ``bot.db.scores``). Concurrent votes share one
transaction (group commit).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from bot.db.batch_writes import BatchWrites
from bot.db.feedback_rows import (
    StoredVote,
    claim_event,
    claim_events,
    decisions,
    decisions_and_voters,
    replace_vote,
    stored_vote,
    withdraw_vote,
)
from bot.db.group_commit import GroupCommit
from bot.db.recommendation_rows import expire_open
from bot.db.scenario_code import scenario_hash
from bot.db.scores import Key as ScoreKey
from bot.db.scores import scenario_evidence
from bot.db.state import audit, audit_row, load_bandit, load_clock, save_bandit, save_clock
from bot.service.types import FeedbackInput, FeedbackResult, FeedbackStatus
from bot.service.unit_of_work import UnitOfWork
from core.bandit import ArmDelta, ThresholdBandit
from core.codec import decision_from_dict
from core.decision import Decision
from core.feedback import FeedbackKind, signal
from core.learning import judged, learn, learn_unanswered
from core.npo import NPOConfig
from core.scoring import Evidence, evidence, posterior


@dataclass(slots=True)
class _Batch:
    """What one batch of votes reads, loaded up front, and what it will write."""

    step: int  # the learning clock: one step per applied vote
    bandit: ThresholdBandit
    unclaimed: set[str] = field(default_factory=set)  # claimed by this batch, not yet used
    decisions: dict[str, Decision] = field(default_factory=dict)
    # (recommendation, operator) → the stored vote, or None until a replacement loads it
    votes: dict[tuple[str, str], StoredVote | None] = field(default_factory=dict)
    # (playbook, context) → evidence of its live votes, kept current as the batch votes
    scores: dict[ScoreKey, Evidence] = field(default_factory=dict)
    writes: BatchWrites = field(default_factory=BatchWrites)


class FeedbackRecorder:
    def __init__(self, uow: UnitOfWork, config: NPOConfig) -> None:
        self.uow, self.config = uow, config
        self._writer = GroupCommit(self.record_batch)

    def record_feedback(self, fb: FeedbackInput) -> FeedbackResult:
        """Store one vote and learn from it; returns once it is committed.

        Concurrent callers share a transaction (group commit), so a burst costs one
        durable commit per batch instead of one per vote.
        """
        return self._writer.submit(fb)

    def record_batch(self, batch: Sequence[FeedbackInput]) -> list[FeedbackResult]:
        """Apply a batch of votes, in order, in one transaction (the group commit calls
        this; tests call it to compare a batch with the same votes one at a time)."""
        for attempt in range(5):
            try:
                with self.uow.write() as conn:
                    return self._record_all(conn, batch)
            except IntegrityError:
                # Another replica stored a vote of the same operator on the same
                # recommendation between our read and our write: the next attempt sees it
                # and replaces it. A batch is retried item by item by the group commit.
                if attempt == 4 or len(batch) > 1:
                    raise
        raise AssertionError("unreachable")

    def expire_abstentions(self, rec_ids: Sequence[str]) -> int:
        """Close abstentions nobody answered (no vote: the bot's silence is nobody's skip)
        and let the arms learn their expected worth (``core.learning.learn_unanswered``)."""
        if not rec_ids:
            return 0
        with self.uow.write() as conn:
            step, bandit_steps = load_clock(conn)  # serialises learning updates
            closed = expire_open(conn, rec_ids)
            if not closed:
                return 0
            bandit = load_bandit(conn, self.config.bandit, bandit_steps)
            learner = bandit if self.config.bandit_learns else None
            for _rec_id, decision_json in sorted(decisions(conn, closed).items()):
                decision = decision_from_dict(json.loads(decision_json))
                learn_unanswered(decision, self.config.learning, learner)
            save_bandit(conn, bandit)
            save_clock(conn, step, bandit.steps)
        return len(closed)

    def withdraw_feedback(
        self, recommendation_id: str, operator_id: str, source_event_id: str
    ) -> FeedbackResult:
        now = self.uow.clock()
        with self.uow.write() as conn:
            if not claim_event(conn, source_event_id, now):
                return FeedbackResult(FeedbackStatus.DUPLICATE)
            _, bandit_steps = load_clock(conn)  # serialises learning updates
            current = stored_vote(conn, recommendation_id, operator_id)
            if current is None or current.withdrawn:
                return FeedbackResult(FeedbackStatus.NOTHING_TO_WITHDRAW)
            bandit = load_bandit(conn, self.config.bandit, bandit_steps)
            self._take_back(bandit, current)
            save_bandit(conn, bandit)
            withdraw_vote(conn, current.id, now)
            audit(conn, operator_id, "withdraw", recommendation_id, {"kind": current.kind}, now)
            return FeedbackResult(FeedbackStatus.WITHDRAWN, None, None, current.playbook_id)

    def _record_all(self, conn: Connection, batch: Sequence[FeedbackInput]) -> list[FeedbackResult]:
        """Apply a batch of votes in order: a few queries up front, one write per table."""
        step, bandit_steps = load_clock(conn)  # serialises learning updates
        loaded = _Batch(step=step, bandit=load_bandit(conn, self.config.bandit, bandit_steps))
        # Every delivery is claimed up front in one statement; a vote whose id was taken
        # (earlier, or by an earlier vote of this batch) is a duplicate.
        events = {fb.source_event_id for fb in batch}
        loaded.unclaimed = claim_events(conn, events, self.uow.clock())
        stored, voted = decisions_and_voters(conn, {fb.recommendation_id for fb in batch})
        for rec_id, decision_json in stored.items():
            loaded.decisions[rec_id] = decision_from_dict(json.loads(decision_json))
        loaded.votes.update(dict.fromkeys(voted))  # loaded if replaced
        loaded.scores = scenario_evidence(
            conn,
            (
                (c.playbook_id, d.scenario.context_key)
                for d in loaded.decisions.values()
                for c in d.candidates
            ),
            self.config.scoring,
        )
        results = [self._record(conn, fb, loaded) for fb in batch]
        loaded.writes.flush(conn)
        if any(r.changed for r in results):
            save_bandit(conn, loaded.bandit)
            save_clock(conn, loaded.step, loaded.bandit.steps)
        return results

    def _record(self, conn: Connection, fb: FeedbackInput, loaded: _Batch) -> FeedbackResult:
        if fb.source_event_id not in loaded.unclaimed:
            return FeedbackResult(FeedbackStatus.DUPLICATE)
        loaded.unclaimed.discard(fb.source_event_id)
        now = self.uow.clock()
        decision = loaded.decisions.get(fb.recommendation_id)
        if decision is None:
            return FeedbackResult(FeedbackStatus.UNKNOWN_RECOMMENDATION)
        target = judged(decision, fb.playbook_id)
        if target is None and fb.kind is not FeedbackKind.SKIPPED:
            return FeedbackResult(FeedbackStatus.NOT_A_CANDIDATE)
        sig = signal(fb.kind)
        key = (fb.recommendation_id, fb.operator_id)
        replaced = key in loaded.votes
        previous: StoredVote | None = None
        if replaced:  # the earlier vote's evidence goes before the new vote's comes in
            loaded.writes.flush(conn)
            previous = loaded.votes[key] or stored_vote(conn, *key)
            assert previous is not None
            if not previous.withdrawn:
                self._take_back(loaded.bandit, previous)
                self._forget(loaded, previous)
        loaded.step += 1
        bandit = loaded.bandit if self.config.bandit_learns else None
        effect = learn(decision, fb.playbook_id, fb.kind, loaded.step, self.config.learning, bandit)
        context_json = json.dumps(decision.scenario.context())
        fields: dict[str, Any] = {
            "playbook_id": effect.playbook_id or "",
            "kind": fb.kind.value,
            "label": sig.label,
            "weight": sig.weight,
            "score": effect.score,
            "loss": effect.loss,
            "reason": fb.reason,
            "source": fb.source,
            "prior": target.model_prior if target else 0.0,
            "similarity": target.similarity if target else 0.0,
            "context_json": context_json,
            "scenario_hash": scenario_hash(fb.kind.value, effect.playbook_id or "", context_json),
            "withdrawn": False,
            "seq": loaded.step,
            "bandit_json": json.dumps(effect.arms.to_dict()) if effect.arms else "{}",
            "updated_at": now,
        }
        local = None
        context_key = decision.scenario.context_key
        if target is not None and not effect.evidence.empty:
            scenario = (target.playbook_id, context_key)
            found = loaded.scores.get(scenario, Evidence()) + effect.evidence
            loaded.scores[scenario] = found
            local = posterior(found, target.model_prior, self.config.scoring)
        replaced_kind = None
        if not replaced:  # the common case: a first vote, appended in bulk
            loaded.votes[key] = None  # stored by this batch: loaded only if it is replaced
            loaded.writes.votes.append(
                {
                    "recommendation_id": fb.recommendation_id,
                    "context_key": context_key,
                    "operator_id": fb.operator_id,
                    "source_event_id": fb.source_event_id,
                    "created_at": now,
                    **fields,
                }
            )
        else:  # a later vote replaces the earlier one in place
            assert previous is not None
            replaced_kind = previous.kind
            replace_vote(conn, previous.id, fields)
            loaded.votes[key] = None  # changed: read again if replaced again
        if fb.kind is FeedbackKind.OVERRIDE:
            loaded.writes.retrains.append(
                {
                    "reason": f"override of {fields['playbook_id']}: {fb.reason}".strip(),
                    "requested_by": fb.operator_id,
                    "handled_at": None,
                    "created_at": now,
                }
            )
        loaded.writes.judged.add(fb.recommendation_id)
        detail = {
            "playbook": fields["playbook_id"],
            "reason": fb.reason,
            "source": fb.source,
            "replaced": replaced_kind,
            "loss": round(effect.loss, 4),
            "utility": effect.utility,
        }
        loaded.writes.audits.append(
            audit_row(
                fb.operator_id, f"feedback:{fb.kind.value}", fb.recommendation_id, detail, now
            )
        )
        status = FeedbackStatus.REPLACED if replaced else FeedbackStatus.STORED
        return FeedbackResult(status, effect.loss, local, fields["playbook_id"] or None)

    @staticmethod
    def _take_back(bandit: ThresholdBandit, vote: StoredVote) -> None:
        """Take back exactly what one stored vote added to the arms (also with discount)."""
        stored = json.loads(vote.bandit_json or "{}")
        if stored:
            bandit.take_back(ArmDelta.from_dict(stored))

    def _forget(self, loaded: _Batch, previous: StoredVote) -> None:
        """The batch's view of a scenario loses what a replaced vote had added to it."""
        scenario = (previous.playbook_id, previous.context_key)
        if previous.playbook_id and scenario in loaded.scores:
            found = evidence(FeedbackKind(previous.kind), self.config.scoring)
            loaded.scores[scenario] = loaded.scores[scenario] - found
