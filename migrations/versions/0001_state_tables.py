"""State tables: runs, checkpoints, rejected releases, and the default output table.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql as pg

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def _schema() -> str:
    # The state schema comes from configuration (database.state_schema).
    return str(context.config.attributes["schema"])


def upgrade() -> None:
    s = _schema()
    op.create_table(
        "runs",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("job", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        # full | incremental | retry; incremental runs cover [watermark_from, watermark_to)
        sa.Column("mode", sa.Text, nullable=False, server_default="full"),
        sa.Column("extract_mode", sa.Text, nullable=False, server_default="keyset"),
        sa.Column("config_fingerprint", sa.Text, nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("layout", sa.Text),
        sa.Column("output", sa.Text),  # directory or schema.table written to
        sa.Column("batch_id", sa.Text),  # ddex-batch: frozen at run start, reused on resume
        sa.Column("source_run_id", sa.BigInteger, sa.ForeignKey(f"{s}.runs.id", ondelete="SET NULL")),
        sa.Column("options", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("watermark_from", _TS),
        sa.Column("watermark_to", _TS),
        sa.Column("started_at", _TS, nullable=False, server_default=sa.func.now()),
        sa.Column("resumed_at", _TS),
        sa.Column("finished_at", _TS),
        sa.Column("heartbeat_at", _TS),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="1"),
        sa.Column("pid", sa.Integer),
        sa.Column("host", sa.Text),
        sa.Column("total", sa.BigInteger),
        sa.Column("built", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("rejected", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("skipped", sa.BigInteger, nullable=False, server_default="0"),
        # chunks handed to workers again after a crash (at most one per worker per resume)
        sa.Column("chunks_redone", sa.Integer, nullable=False, server_default="0"),
        sa.Column("seconds", sa.Float),
        sa.Column("releases_per_second", sa.Float),
        sa.Column("peak_memory_mb", sa.Float),
        sa.Column("error", sa.Text),  # masked: never holds a password
        sa.CheckConstraint(
            "status IN ('running', 'succeeded', 'failed', 'interrupted')", name="runs_status_known"
        ),
        sa.CheckConstraint("mode IN ('full', 'incremental', 'retry')", name="runs_mode_known"),
        schema=s,
    )
    op.create_index("runs_job_id", "runs", ["job", sa.text("id DESC")], schema=s)

    op.create_table(
        "checkpoints",
        sa.Column("run_id", sa.BigInteger, sa.ForeignKey(f"{s}.runs.id", ondelete="CASCADE"), primary_key=True),
        # keyset: the last release key of the last contiguous chunk fully loaded
        sa.Column("last_key", sa.BigInteger),
        # offset: where the next chunk starts
        sa.Column("next_offset", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("chunks_done", sa.Integer, nullable=False, server_default="0"),
        # high-water mark of chunks handed to workers; on resume, dispatched - done = chunks redone
        sa.Column("chunks_dispatched", sa.Integer, nullable=False, server_default="0"),
        sa.Column("updated_at", _TS, nullable=False, server_default=sa.func.now()),
        schema=s,
    )

    op.create_table(
        "rejected_releases",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("run_id", sa.BigInteger, sa.ForeignKey(f"{s}.runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("release_id", sa.BigInteger, nullable=False),
        sa.Column("stage", sa.Text, nullable=False),
        sa.Column("error_kind", sa.Text, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("retryable", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="1"),
        sa.Column("input", pg.JSONB),  # enough of the input to reproduce the failure
        sa.Column("created_at", _TS, nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", _TS, nullable=False, server_default=sa.func.now()),
        sa.Column("resolved_at", _TS),
        sa.Column("resolved_by_run", sa.BigInteger),
        sa.UniqueConstraint("run_id", "release_id", name="rejected_releases_once_per_run"),
        sa.CheckConstraint("stage IN ('extract', 'transform', 'load')", name="rejected_releases_stage_known"),
        schema=s,
    )
    op.create_index("rejected_releases_release", "rejected_releases", ["release_id"], schema=s)

    # The default output table for load.target = "table"; a table with another
    # name is created LIKE this one, so there is one definition.
    op.create_table(
        "documents",
        sa.Column("release_id", sa.BigInteger, primary_key=True),
        sa.Column("ern_version", sa.Text, nullable=False),
        sa.Column("message_id", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False, server_default="NewReleaseMessage"),
        # the exact bytes a file would hold (UTF-8 XML), so table and files compare byte for byte
        sa.Column("document", sa.LargeBinary, nullable=False),
        sa.Column("checksum", sa.Text, nullable=False),  # sha256 hex of document
        sa.Column("run_id", sa.BigInteger, nullable=False),
        sa.Column("built_at", _TS, nullable=False, server_default=sa.func.now()),
        schema=s,
    )


def downgrade() -> None:
    s = _schema()
    op.drop_table("documents", schema=s)
    op.drop_table("rejected_releases", schema=s)
    op.drop_table("checkpoints", schema=s)
    op.drop_table("runs", schema=s)
