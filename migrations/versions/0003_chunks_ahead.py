"""Chunks loaded out of order: the checkpoint remembers them, so a resume does not redo them.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _schema() -> str:
    return str(context.config.attributes["schema"])


def upgrade() -> None:
    s = _schema()
    # ahead: chunks of the current attempt loaded beyond the contiguous
    # checkpoint ({"n": number, "lo": first id, "hi": last id}); skip: id
    # ranges [lo, hi] an earlier attempt loaded that way, which a resume must
    # not build again.
    op.add_column(
        "checkpoints", sa.Column("ahead", JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")), schema=s
    )
    op.add_column(
        "checkpoints", sa.Column("skip", JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")), schema=s
    )


def downgrade() -> None:
    s = _schema()
    op.drop_column("checkpoints", "skip", schema=s)
    op.drop_column("checkpoints", "ahead", schema=s)
