"""Tables. JSON documents (explanations, candidates, model weights) are stored as text so
the same schema works on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import BigInteger, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _id() -> str:
    return uuid.uuid4().hex


class Incident(SQLModel, table=True):
    id: str = Field(default_factory=_id, primary_key=True)
    source: str  # slack | console | alertmanager
    channel: str = ""
    thread_ts: str = ""
    reporter: str = ""
    text: str = Field(sa_column=Column(Text, nullable=False))
    scenario_json: str = Field(sa_column=Column(Text, nullable=False))
    context_key: str = Field(index=True)
    created_at: dt.datetime = Field(default_factory=_now)


class Recommendation(SQLModel, table=True):
    """One decision: recommend, abstain or blocked, with everything that explains it."""

    id: str = Field(default_factory=_id, primary_key=True)
    source_event_id: str | None = Field(default=None, unique=True)
    incident_id: str = Field(foreign_key="incident.id", index=True)
    outcome: str
    playbook_id: str | None = Field(default=None, index=True)
    score: float = 0.0
    threshold: float
    arm_index: int
    propensity: float = 1.0  # P(this arm) under the policy that chose it (for off-policy eval)
    policy: str = ""  # e.g. "thompson", "fixed:0.7"
    spe_verdict: str
    decision_json: str = Field(sa_column=Column(Text, nullable=False))
    channel: str = ""
    message_ts: str = Field(default="", index=True)
    status: str = Field(default="open", index=True)  # open | judged | expired
    # The outbox: "pending" until the message is posted ("posted"); "none" when nothing is
    # posted (console). The worker that stored it holds the post until ``post_claimed_until``;
    # after that any replica may post it, once.
    post_state: str = Field(default="none", index=True)
    post_claimed_until: dt.datetime | None = None
    created_at: dt.datetime = Field(default_factory=_now, index=True)


class IncidentInbox(SQLModel, table=True):
    """Incidents acknowledged to Slack but not yet decided: written before the ack, marked
    done in the transaction that stores the recommendation, so a process killed between
    the two loses nothing (another replica, or the next start, decides it)."""

    __tablename__ = "incident_inbox"

    event_id: str = Field(primary_key=True)
    incident_json: str = Field(sa_column=Column(Text, nullable=False))
    received_at: dt.datetime = Field(default_factory=_now)
    claimed_until: dt.datetime | None = None
    done_at: dt.datetime | None = Field(default=None, index=True)


class Feedback(SQLModel, table=True):
    """One operator's current judgment of one recommendation (a later vote replaces it)."""

    __table_args__ = (
        UniqueConstraint("recommendation_id", "operator_id"),
        # A scenario's evidence is counted from its live votes at every recommendation and
        # every vote: index-only with withdrawn and kind in it (revision 0006).
        Index("ix_feedback_scenario_live", "context_key", "playbook_id", "withdrawn", "kind"),
    )

    id: int | None = Field(default=None, primary_key=True)
    recommendation_id: str = Field(foreign_key="recommendation.id", index=True)
    playbook_id: str = Field(index=True)
    context_key: str
    operator_id: str
    kind: str
    label: float | None = None
    weight: float = 0.0
    score: float
    prior: float = 0.0  # the model prior the scenario score started from
    similarity: float = 0.0  # retrieval similarity of the judged candidate
    context_json: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    loss: float
    reason: str = ""
    source: str = ""  # button | reaction | modal | console | expiry
    source_event_id: str = Field(unique=True)
    withdrawn: bool = False
    # The learning step at which this vote (in its current form) was applied: orders the
    # log for the monitor and marks what a retrain has seen. A replacement gets a new one.
    seq: int = Field(default=0, index=True)
    # What the vote added to the threshold arms (core.bandit.ArmDelta), to take it back.
    bandit_json: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    created_at: dt.datetime = Field(default_factory=_now, index=True)
    updated_at: dt.datetime = Field(default_factory=_now, index=True)  # the recent losses
    # bot.db.scenario_code.scenario_hash(kind, playbook_id, context_json): the monitor tick
    # groups the log by it without reading the strings (None: stored before revision 0005).
    scenario_hash: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))


class ProcessedEvent(SQLModel, table=True):
    """Every delivery id already handled: Slack retries and replicas are deduplicated here."""

    event_id: str = Field(primary_key=True)
    created_at: dt.datetime = Field(default_factory=_now, index=True)  # retention deletes by age


class BanditArm(SQLModel, table=True):
    arm_index: int = Field(primary_key=True)
    threshold: float
    alpha: float = 1.0
    beta: float = 1.0


class LearningClock(SQLModel, table=True):
    """One row: the learning step (one per applied vote) and the bandit's own step count.
    Every vote's transaction locks it, which serialises learning updates."""

    __tablename__ = "learning_clock"

    id: int = Field(default=1, primary_key=True)
    step: int = 0
    bandit_steps: int = 0


class MonitorStateRow(SQLModel, table=True):
    __tablename__ = "monitor_state"

    id: int = Field(default=1, primary_key=True)
    state_json: str = Field(sa_column=Column(Text, nullable=False))
    updated_at: dt.datetime = Field(default_factory=_now)


class MonitorDecisionRow(SQLModel, table=True):
    """One tick: M's action and reason, and M* from the shadow retrain (fidelity)."""

    __tablename__ = "monitor_decision"

    id: int | None = Field(default=None, primary_key=True)
    action: str
    reason: str = Field(sa_column=Column(Text, nullable=False))
    playbook_id: str | None = None
    ideal_action: str | None = None  # None: too little fresh feedback for a shadow retrain
    shadow_gain: float | None = None
    created_at: dt.datetime = Field(default_factory=_now, index=True)


class ModelVersion(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    trained_on: int
    trained_upto: int = 0  # learning step of the newest vote the model was fitted on
    live: bool = Field(default=False, index=True)
    accepted: bool
    metrics_json: str = Field(sa_column=Column(Text, nullable=False))
    weights_json: str = Field(sa_column=Column(Text, nullable=False))
    created_at: dt.datetime = Field(default_factory=_now)


class SchedulerState(SQLModel, table=True):
    """When each scheduled job last ran: survives restarts and is shared by replicas."""

    __tablename__ = "scheduler_state"

    job: str = Field(primary_key=True)
    last_run_at: dt.datetime
    runs: int = 0


class RetrainRequest(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    reason: str
    requested_by: str = ""
    handled_at: dt.datetime | None = None
    created_at: dt.datetime = Field(default_factory=_now)


class AuditEntry(SQLModel, table=True):
    __tablename__ = "audit_log"

    id: int | None = Field(default=None, primary_key=True)
    actor: str
    action: str
    subject: str = ""
    detail_json: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    created_at: dt.datetime = Field(default_factory=_now, index=True)


class OperatorPrefs(SQLModel, table=True):
    __tablename__ = "operator_prefs"

    operator_id: str = Field(primary_key=True)
    verbosity: str = "full"
    updated_at: dt.datetime = Field(default_factory=_now)


class PlaybookSubmission(SQLModel, table=True):
    """A playbook proposed in Slack: a draft until a reviewer who is not its author approves."""

    __tablename__ = "playbook_submission"

    id: str = Field(default_factory=_id, primary_key=True)
    playbook_id: str = Field(index=True)
    author: str
    text: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(default="pending", index=True)  # pending | approved | changes_requested
    reviewer: str | None = None
    note: str = ""
    channel: str = ""
    message_ts: str = ""
    created_at: dt.datetime = Field(default_factory=_now)
    decided_at: dt.datetime | None = None


class StatsSnapshot(SQLModel, table=True):
    """The nightly copy of the alignment report, for trends over months."""

    __tablename__ = "stats_snapshot"

    id: int | None = Field(default=None, primary_key=True)
    taken_at: dt.datetime = Field(index=True)
    report_json: str = Field(sa_column=Column(Text, nullable=False))


class AlertGroup(SQLModel, table=True):
    """One Alertmanager group (groupKey) is one Slack thread."""

    __tablename__ = "alert_group"

    group_key: str = Field(primary_key=True)
    channel: str
    thread_ts: str = ""
    status: str = "firing"
    created_at: dt.datetime = Field(default_factory=_now)
    updated_at: dt.datetime = Field(default_factory=_now)


class Approval(SQLModel, table=True):
    """A recommendation whose candidate needs a second engineer (SPE ``needs_approval``):
    pending until someone allowed to approve, who is not its requester, approves or
    rejects it. The state changes once (a conditional update), whoever clicks twice."""

    __tablename__ = "approval"

    recommendation_id: str = Field(foreign_key="recommendation.id", primary_key=True)
    playbook_id: str
    requester: str = ""
    state: str = Field(default="pending", index=True)  # pending | approved | rejected
    decided_by: str | None = None
    reason: str = Field(default="", sa_column=Column(Text, nullable=False))
    created_at: dt.datetime = Field(default_factory=_now)
    decided_at: dt.datetime | None = None


class DeferralJob(SQLModel, table=True):
    """A deferred candidate to judge again at ``due_at`` with fresh context. Any replica
    may run it: it is claimed with a lease (``claimed_until``), and its outcome is posted
    once, into the incident's thread."""

    __tablename__ = "deferral_job"

    recommendation_id: str = Field(foreign_key="recommendation.id", primary_key=True)
    playbook_id: str
    incident_json: str = Field(sa_column=Column(Text, nullable=False))  # text and hints
    channel: str = ""
    thread_ts: str = ""
    due_at: dt.datetime = Field(index=True)
    attempts: int = 0  # re-evaluations done so far
    max_attempts: int = 1
    state: str = Field(default="waiting", index=True)  # waiting | done | gave_up
    outcome: str = ""  # the outcome of the last re-evaluation
    claimed_until: dt.datetime | None = None
    created_at: dt.datetime = Field(default_factory=_now)
    updated_at: dt.datetime = Field(default_factory=_now)
