"""Incremental sync: targeted runs, unchanged/takedown counts, the delivered checksums.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def _schema() -> str:
    return str(context.config.attributes["schema"])


def upgrade() -> None:
    s = _schema()
    # targeted: --since / --release-id rebuilds; they never move the job's watermark.
    op.drop_constraint("runs_mode_known", "runs", schema=s, type_="check")
    op.create_check_constraint(
        "runs_mode_known", "runs", "mode IN ('full', 'incremental', 'retry', 'targeted')", schema=s
    )
    op.add_column("runs", sa.Column("takedowns", sa.BigInteger, nullable=False, server_default="0"), schema=s)
    op.add_column("runs", sa.Column("unchanged", sa.BigInteger, nullable=False, server_default="0"), schema=s)
    # What each job last delivered per release: a rebuilt document with the same
    # checksum is not delivered again. Updated in the chunk's checkpoint
    # transaction, so it works the same for files and for the output table.
    op.create_table(
        "delivered",
        sa.Column("job", sa.Text, nullable=False),
        sa.Column("release_id", sa.BigInteger, nullable=False),
        sa.Column("checksum", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("run_id", sa.BigInteger, nullable=False),
        sa.Column("delivered_at", _TS, nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("job", "release_id", name="delivered_pkey"),
        schema=s,
    )


def downgrade() -> None:
    s = _schema()
    op.drop_table("delivered", schema=s)
    op.drop_column("runs", "unchanged", schema=s)
    op.drop_column("runs", "takedowns", schema=s)
    quoted = '"' + s.replace('"', '""') + '"'
    op.execute(sa.text(f"DELETE FROM {quoted}.runs WHERE mode = 'targeted'"))
    op.drop_constraint("runs_mode_known", "runs", schema=s, type_="check")
    op.create_check_constraint("runs_mode_known", "runs", "mode IN ('full', 'incremental', 'retry')", schema=s)
