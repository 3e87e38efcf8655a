"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_group",
        sa.Column("group_key", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("thread_ts", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("group_key"),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("actor", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("subject", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("detail_json", sa.Text(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_log_created_at"), ["created_at"], unique=False)

    op.create_table(
        "banditarm",
        sa.Column("arm_index", sa.Integer(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("alpha", sa.Float(), nullable=False),
        sa.Column("beta", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("arm_index"),
    )
    op.create_table(
        "incident",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("thread_ts", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("reporter", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("scenario_json", sa.Text(), nullable=False),
        sa.Column("context_key", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("incident", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_incident_context_key"), ["context_key"], unique=False)

    op.create_table(
        "modelversion",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("trained_on", sa.Integer(), nullable=False),
        sa.Column("live", sa.Boolean(), nullable=False),
        sa.Column("accepted", sa.Boolean(), nullable=False),
        sa.Column("metrics_json", sa.Text(), nullable=False),
        sa.Column("weights_json", sa.Text(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("modelversion", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_modelversion_live"), ["live"], unique=False)

    op.create_table(
        "monitor_decision",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("playbook_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("ideal_action", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("shadow_gain", sa.Float(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("monitor_decision", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_monitor_decision_created_at"), ["created_at"], unique=False
        )

    op.create_table(
        "monitor_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("state_json", sa.Text(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "operator_prefs",
        sa.Column("operator_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("verbosity", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("operator_id"),
    )
    op.create_table(
        "playbook_submission",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("playbook_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("author", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("reviewer", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("note", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("message_ts", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("decided_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("playbook_submission", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_playbook_submission_playbook_id"), ["playbook_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_playbook_submission_status"), ["status"], unique=False)

    op.create_table(
        "processedevent",
        sa.Column("event_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("event_id"),
    )
    op.create_table(
        "retrainrequest",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("requested_by", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("handled_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "scenario_score",
        sa.Column("playbook_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("context_key", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("observations", sa.Integer(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("playbook_id", "context_key"),
    )
    op.create_table(
        "scheduler_state",
        sa.Column("job", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("last_run_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("job"),
    )
    op.create_table(
        "stats_snapshot",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("taken_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("report_json", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("stats_snapshot", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_stats_snapshot_taken_at"), ["taken_at"], unique=False)

    op.create_table(
        "recommendation",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("source_event_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("incident_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("outcome", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("playbook_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("arm_index", sa.Integer(), nullable=False),
        sa.Column("propensity", sa.Float(), nullable=False),
        sa.Column("policy", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("spe_verdict", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("decision_json", sa.Text(), nullable=False),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("message_ts", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incident.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source_event_id"),
    )
    with op.batch_alter_table("recommendation", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_recommendation_created_at"), ["created_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_recommendation_incident_id"), ["incident_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_recommendation_message_ts"), ["message_ts"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_recommendation_playbook_id"), ["playbook_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_recommendation_status"), ["status"], unique=False)

    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("recommendation_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("playbook_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("context_key", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("operator_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("label", sa.Float(), nullable=True),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("prior", sa.Float(), nullable=False),
        sa.Column("similarity", sa.Float(), nullable=False),
        sa.Column("context_json", sa.Text(), nullable=False),
        sa.Column("loss", sa.Float(), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("source_event_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("withdrawn", sa.Boolean(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["recommendation_id"],
            ["recommendation.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("recommendation_id", "operator_id"),
        sa.UniqueConstraint("source_event_id"),
    )
    with op.batch_alter_table("feedback", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_feedback_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_feedback_playbook_id"), ["playbook_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_feedback_recommendation_id"), ["recommendation_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("feedback", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_feedback_recommendation_id"))
        batch_op.drop_index(batch_op.f("ix_feedback_playbook_id"))
        batch_op.drop_index(batch_op.f("ix_feedback_created_at"))

    op.drop_table("feedback")
    with op.batch_alter_table("recommendation", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_recommendation_status"))
        batch_op.drop_index(batch_op.f("ix_recommendation_playbook_id"))
        batch_op.drop_index(batch_op.f("ix_recommendation_message_ts"))
        batch_op.drop_index(batch_op.f("ix_recommendation_incident_id"))
        batch_op.drop_index(batch_op.f("ix_recommendation_created_at"))

    op.drop_table("recommendation")
    with op.batch_alter_table("stats_snapshot", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_stats_snapshot_taken_at"))

    op.drop_table("stats_snapshot")
    op.drop_table("scheduler_state")
    op.drop_table("scenario_score")
    op.drop_table("retrainrequest")
    op.drop_table("processedevent")
    with op.batch_alter_table("playbook_submission", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_playbook_submission_status"))
        batch_op.drop_index(batch_op.f("ix_playbook_submission_playbook_id"))

    op.drop_table("playbook_submission")
    op.drop_table("operator_prefs")
    op.drop_table("monitor_state")
    with op.batch_alter_table("monitor_decision", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_monitor_decision_created_at"))

    op.drop_table("monitor_decision")
    with op.batch_alter_table("modelversion", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_modelversion_live"))

    op.drop_table("modelversion")
    with op.batch_alter_table("incident", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_incident_context_key"))

    op.drop_table("incident")
    op.drop_table("banditarm")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_log_created_at"))

    op.drop_table("audit_log")
    op.drop_table("alert_group")
