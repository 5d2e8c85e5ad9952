"""Release identifiers claimed per run: a duplicate ICPN or GRid is rejected, never written over;
ISRCs on several releases are listed.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _schema() -> str:
    return str(context.config.attributes["schema"])


def upgrade() -> None:
    s = _schema()
    # Who owns each identifier in a run: the first release, in paging order,
    # that has it (kind: icpn | grid). Rows go when the run succeeds, except
    # those a retry of its duplicate rejects needs.
    op.create_table(
        "claimed_identifiers",
        sa.Column("run_id", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("release_id", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("run_id", "kind", "value", name="claimed_identifiers_pkey"),
        schema=s,
    )
    # Every ISRC a run builds, to list at its end those on several releases
    # (normal, but worth a look). Append-only, read once: no index, and
    # unlogged (a server crash loses only these notices).
    op.create_table(
        "release_isrcs",
        sa.Column("run_id", sa.BigInteger, nullable=False),
        sa.Column("isrc", sa.Text, nullable=False),
        sa.Column("release_id", sa.BigInteger, nullable=False),
        prefixes=["UNLOGGED"],
        schema=s,
    )
    # Chunks claim in chunk order: the number of the last chunk whose claims are in.
    op.add_column(
        "checkpoints", sa.Column("claims_through", sa.Integer, nullable=False, server_default="-1"), schema=s
    )


def downgrade() -> None:
    s = _schema()
    op.drop_column("checkpoints", "claims_through", schema=s)
    op.drop_table("release_isrcs", schema=s)
    op.drop_table("claimed_identifiers", schema=s)
