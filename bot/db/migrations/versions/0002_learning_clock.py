"""learning clock, incident inbox and post outbox

Votes carry their learning step and their contribution to the arms; incidents acknowledged
to Slack wait in an inbox until decided; recommendations wait in an outbox until posted;
delivery claims are indexed by age for the retention job.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

Existing votes get their row id as their step (ids grow in the order votes arrived) and
the arm contribution the code before this revision gave them (exact without a discount);
a live model is taken to have seen every vote stored before it was created; the monitor's
running tallies become watermarks.
"""

from __future__ import annotations

import json

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "learning_clock",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("bandit_steps", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("feedback") as batch:
        batch.add_column(sa.Column("seq", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("bandit_json", sa.Text(), nullable=False, server_default="{}"))
        batch.create_index("ix_feedback_seq", ["seq"])
    with op.batch_alter_table("modelversion") as batch:
        batch.add_column(
            sa.Column("trained_upto", sa.Integer(), nullable=False, server_default="0")
        )
    op.create_table(
        "incident_inbox",
        sa.Column("event_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("incident_json", sa.Text(), nullable=False),
        sa.Column("received_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("claimed_until", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("done_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("event_id"),
    )
    op.create_index("ix_incident_inbox_done_at", "incident_inbox", ["done_at"])
    op.create_index("ix_processedevent_created_at", "processedevent", ["created_at"])
    with op.batch_alter_table("recommendation") as batch:
        batch.add_column(
            sa.Column(
                "post_state",
                sqlmodel.sql.sqltypes.AutoString(),
                nullable=False,
                server_default="posted",
            )
        )
        batch.add_column(
            sa.Column("post_claimed_until", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
        )
        batch.create_index("ix_recommendation_post_state", ["post_state"])
    op.execute("UPDATE feedback SET seq = id")
    op.execute(
        "UPDATE modelversion SET trained_upto = (SELECT COALESCE(MAX(f.id), 0) FROM feedback f "
        "WHERE f.created_at <= modelversion.created_at)"
    )
    op.execute(
        "INSERT INTO learning_clock (id, step, bandit_steps) "
        "SELECT 1, COALESCE(MAX(id), 0), COALESCE(MAX(id), 0) FROM feedback"
    )
    _monitor_watermarks()
    _arm_contributions()


def _arm_contributions() -> None:
    """What each live vote added to the arms, as the code before this revision added it
    (the chosen arm, when the candidate's score cleared its threshold), so withdrawing or
    replacing a vote stored before the upgrade takes that back too. Only votes on decisions
    of the Thompson policy touched the arms."""
    conn = op.get_bind()
    arms = [
        float(t)
        for (t,) in conn.execute(sa.text("SELECT threshold FROM banditarm ORDER BY arm_index"))
    ]
    if not arms:
        return
    step = conn.execute(sa.text("SELECT bandit_steps FROM learning_clock WHERE id = 1")).scalar()
    rows = conn.execute(
        sa.text(
            "SELECT f.id, f.label, f.weight, f.score, r.arm_index FROM feedback f "
            "JOIN recommendation r ON r.id = f.recommendation_id "
            "WHERE f.label IS NOT NULL AND r.policy = 'thompson'"
        )
    ).all()
    for vote_id, label, weight, score, arm in rows:
        if not 0 <= arm < len(arms) or score < arms[arm]:
            continue
        alpha, beta = [0.0] * len(arms), [0.0] * len(arms)
        alpha[arm], beta[arm] = weight * label, weight * (1.0 - label)
        delta = {"arms": arms, "alpha": alpha, "beta": beta, "step": int(step or 0)}
        conn.execute(
            sa.text("UPDATE feedback SET bandit_json = :d WHERE id = :id"),
            {"d": json.dumps(delta), "id": vote_id},
        )


def _monitor_watermarks() -> None:
    """The monitor document kept running tallies; it now keeps watermarks and derives the
    tallies from the live votes. The last retrain decision saw every vote up to the newest
    model version's ``trained_upto``; a playbook resumed by hand counts only votes after
    its latest resume."""
    conn = op.get_bind()
    row = conn.execute(sa.text("SELECT state_json FROM monitor_state WHERE id = 1")).first()
    if row is None:
        return
    old = json.loads(row[0])
    retrained_at = conn.execute(
        sa.text("SELECT COALESCE(MAX(trained_upto), 0) FROM modelversion")
    ).scalar_one()
    resumed_at: dict[str, int] = {}
    resumes = conn.execute(
        sa.text(
            "SELECT subject, MAX(created_at) FROM audit_log "
            "WHERE action = 'playbook:resume' GROUP BY subject"
        )
    ).all()
    for playbook, at in resumes:
        resumed_at[str(playbook)] = int(
            conn.execute(
                sa.text("SELECT COALESCE(MAX(id), 0) FROM feedback WHERE created_at <= :at"),
                {"at": at},
            ).scalar_one()
        )
    new = {
        "retrained_at": int(retrained_at),
        "paused": sorted(old.get("paused", [])),
        "resumed_at": resumed_at,
    }
    conn.execute(
        sa.text("UPDATE monitor_state SET state_json = :doc WHERE id = 1"),
        {"doc": json.dumps(new)},
    )


def downgrade() -> None:
    with op.batch_alter_table("recommendation") as batch:
        batch.drop_index("ix_recommendation_post_state")
        batch.drop_column("post_claimed_until")
        batch.drop_column("post_state")
    op.drop_index("ix_processedevent_created_at", "processedevent")
    op.drop_index("ix_incident_inbox_done_at", "incident_inbox")
    op.drop_table("incident_inbox")
    with op.batch_alter_table("modelversion") as batch:
        batch.drop_column("trained_upto")
    with op.batch_alter_table("feedback") as batch:
        batch.drop_index("ix_feedback_seq")
        batch.drop_column("bandit_json")
        batch.drop_column("seq")
    op.drop_table("learning_clock")
