"""Acknowledged batches: which delivered batches the store has answered for in full.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def _schema() -> str:
    return str(context.config.attributes["schema"])


def upgrade() -> None:
    s = _schema()
    # One row per batch a recipient's acknowledgements were looked for in: the
    # folder it lies in on the target, how many release folders it holds and how
    # many of them the store has answered for with a final status. A settled
    # batch (every release answered) is never listed again.
    op.create_table(
        "ack_batches",
        sa.Column("job", sa.Text, nullable=False),
        sa.Column("batch_id", sa.Text, nullable=False),
        sa.Column("folder", sa.Text, nullable=False),
        sa.Column("releases", sa.Integer, nullable=False, server_default="0"),
        sa.Column("acknowledged", sa.Integer, nullable=False, server_default="0"),
        sa.Column("settled", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("checked_at", _TS, nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("job", "batch_id", name="ack_batches_pkey"),
        schema=s,
    )


def downgrade() -> None:
    op.drop_table("ack_batches", schema=_schema())
