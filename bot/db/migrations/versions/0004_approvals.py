"""approvals and deferral jobs

A recommendation whose candidate needs a second engineer gets an approval row (pending,
approved or rejected, by whom and why); a deferred one gets a job that re-evaluates it
when it may proceed, claimed with a lease so one replica runs it once.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

Decisions stored before this revision that the SPE deferred or sent for approval were
stored as ``blocked``; they stay as they were (nobody can act on them any more).
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "approval",
        sa.Column("recommendation_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("playbook_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("requester", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("decided_by", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("decided_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["recommendation_id"], ["recommendation.id"]),
        sa.PrimaryKeyConstraint("recommendation_id"),
    )
    op.create_index("ix_approval_state", "approval", ["state"])
    op.create_table(
        "deferral_job",
        sa.Column("recommendation_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("playbook_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("incident_json", sa.Text(), nullable=False),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("thread_ts", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("due_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("outcome", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("claimed_until", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["recommendation_id"], ["recommendation.id"]),
        sa.PrimaryKeyConstraint("recommendation_id"),
    )
    op.create_index("ix_deferral_job_due_at", "deferral_job", ["due_at"])
    op.create_index("ix_deferral_job_state", "deferral_job", ["state"])


def downgrade() -> None:
    op.drop_index("ix_deferral_job_state", "deferral_job")
    op.drop_index("ix_deferral_job_due_at", "deferral_job")
    op.drop_table("deferral_job")
    op.drop_index("ix_approval_state", "approval")
    op.drop_table("approval")
