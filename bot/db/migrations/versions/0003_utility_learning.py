"""scenario evidence from live votes; threshold arms learn utility

Scenario scores are a Beta posterior counted from the live votes (``bot.db.scores``), so the
stored running scores go, and an index serves the count. The threshold arms now hold
evidence on the utility of deciding at each threshold, from a prior at the threshold the
objective implies: the acceptance counts stored before cannot be read that way, so the arms
start again from that prior (the next vote writes them) and no old vote takes anything back
from them.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_feedback_scenario", "feedback", ["context_key", "playbook_id"])
    op.drop_table("scenario_score")
    conn = op.get_bind()
    had_arms = conn.execute(sa.text("SELECT COUNT(*) FROM banditarm")).scalar_one()
    conn.execute(sa.text("DELETE FROM banditarm"))
    conn.execute(sa.text("UPDATE feedback SET bandit_json = '{}'"))
    if had_arms:
        conn.execute(
            sa.text(
                "INSERT INTO audit_log (actor, action, subject, detail_json, created_at) "
                "VALUES ('migration', 'arms:reset', 'bandit', :detail, :now)"
            ),
            {
                "detail": '{"reason": "arms learn utility from 0003 on; restarted from the prior"}',
                "now": dt.datetime.now(dt.UTC),
            },
        )


def downgrade() -> None:
    op.create_table(
        "scenario_score",
        sa.Column("playbook_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("context_key", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("observations", sa.Integer(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("playbook_id", "context_key"),
    )
    op.drop_index("ix_feedback_scenario", "feedback")
