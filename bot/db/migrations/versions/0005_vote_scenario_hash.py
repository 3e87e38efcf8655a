"""a 64-bit code of each vote's scenario

The monitor tick reads a million votes; their scenario (kind, playbook, context) as three
strings per row cost most of that read. ``feedback.scenario_hash`` carries it as one
integer (``bot.db.vote_log.scenario_hash``), written with every vote; this revision fills
it in for the votes stored before it, in batches.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

A replica still running the code of 0004 writes votes without the code; the tick then
reads that snapshot the slower way (the strings), so a rolling upgrade changes no result.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.db.scenario_code import scenario_hash

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_BATCH = 5_000


def upgrade() -> None:
    with op.batch_alter_table("feedback") as batch:
        batch.add_column(sa.Column("scenario_hash", sa.BigInteger(), nullable=True))
    conn = op.get_bind()
    votes = sa.table(
        "feedback",
        sa.column("id", sa.Integer()),
        sa.column("kind", sa.String()),
        sa.column("playbook_id", sa.String()),
        sa.column("context_json", sa.Text()),
        sa.column("scenario_hash", sa.BigInteger()),
    )
    fill = (
        sa.update(votes)
        .where(votes.c.id == sa.bindparam("vote_id"))
        .values(scenario_hash=sa.bindparam("code"))
    )
    last = 0
    while True:
        rows = conn.execute(
            sa.select(votes.c.id, votes.c.kind, votes.c.playbook_id, votes.c.context_json)
            .where(votes.c.id > last)
            .order_by(votes.c.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            break
        conn.execute(
            fill,
            [
                {"vote_id": r.id, "code": scenario_hash(r.kind, r.playbook_id, r.context_json)}
                for r in rows
            ],
        )
        last = rows[-1].id


def downgrade() -> None:
    with op.batch_alter_table("feedback") as batch:
        batch.drop_column("scenario_hash")
