"""Recipients: the output table keyed by recipient and release; stores' acknowledgements.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def _schema() -> str:
    return str(context.config.attributes["schema"])


def upgrade() -> None:
    s = _schema()
    # One row per (recipient, release): a second store's run no longer
    # overwrites the first one's documents. '' is the single-recipient
    # shorthand ([transform] keys, no [[recipients]]), so old rows keep their meaning.
    op.add_column("documents", sa.Column("recipient", sa.Text, nullable=False, server_default=""), schema=s)
    op.drop_constraint("documents_pkey", "documents", schema=s, type_="primary")
    op.create_primary_key("documents_pkey", "documents", ["recipient", "release_id"], schema=s)
    # The folder a release was delivered under (its ICPN, GRid or id): how a
    # store's acknowledgement, which names that folder, finds the release.
    op.add_column("delivered", sa.Column("identifier", sa.Text, nullable=True), schema=s)
    # What each store answered, one row per acknowledgement file (read by
    # `etl acks` and before each `etl run`); `etl errors` shows the rejections.
    op.create_table(
        "store_acks",
        sa.Column("job", sa.Text, nullable=False),
        sa.Column("ack_file", sa.Text, nullable=False),
        sa.Column("batch_id", sa.Text, nullable=False),
        sa.Column("run_id", sa.BigInteger, nullable=True),
        sa.Column("message_file", sa.Text, nullable=False),
        sa.Column("release", sa.Text, nullable=True),
        sa.Column("release_id", sa.BigInteger, nullable=True),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("accepted", sa.Boolean, nullable=False),
        sa.Column("error_text", sa.Text, nullable=True),
        sa.Column("proposed_action", sa.Text, nullable=True),
        sa.Column("manual_check_required", sa.Boolean, nullable=True),
        sa.Column("acknowledged_at", sa.Text, nullable=True),  # the store's MessageCreatedDateTime, as written
        sa.Column("read_at", _TS, nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("job", "ack_file", name="store_acks_pkey"),
        schema=s,
    )
    op.create_index("store_acks_release", "store_acks", ["job", "release_id"], schema=s)


def downgrade() -> None:
    s = _schema()
    op.drop_index("store_acks_release", "store_acks", schema=s)
    op.drop_table("store_acks", schema=s)
    op.drop_column("delivered", "identifier", schema=s)
    quoted = '"' + s.replace('"', '""') + '"'
    # release_id alone is the key again: only the shorthand's rows fit it.
    op.execute(sa.text(f"DELETE FROM {quoted}.documents WHERE recipient <> ''"))
    op.drop_constraint("documents_pkey", "documents", schema=s, type_="primary")
    op.create_primary_key("documents_pkey", "documents", ["release_id"], schema=s)
    op.drop_column("documents", "recipient", schema=s)
