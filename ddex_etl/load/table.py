"""The table loader: one row per (recipient, release), upserted in the run's own transaction."""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ..db import map_db_error, quote_ident
from .base import Committed, Output, Written


class TableLoader:
    """Upsert one row per (recipient, release) into ``<schema>.<table>``, in the caller's transaction.

    ``recipient`` is the recipient's name ('' for the single-recipient
    shorthand): each store's documents are rows of their own.
    """

    in_worker = False

    def __init__(self, schema: str, table: str = "documents", recipient: str = "") -> None:
        self.schema = schema
        self.table = table
        self.recipient = recipient
        self._qualified = f"{quote_ident(schema)}.{quote_ident(table)}"
        self._upsert = sa.text(
            f"""INSERT INTO {self._qualified}
                (recipient, release_id, ern_version, message_id, kind, document, checksum, run_id, built_at)
            VALUES (:recipient, :release_id, :ern_version, :message_id, :kind, :document, :checksum, :run_id, now())
            ON CONFLICT (recipient, release_id) DO UPDATE
            SET ern_version = EXCLUDED.ern_version, message_id = EXCLUDED.message_id, kind = EXCLUDED.kind,
                document = EXCLUDED.document, checksum = EXCLUDED.checksum, run_id = EXCLUDED.run_id,
                built_at = EXCLUDED.built_at"""
        )

    def describe(self) -> str:
        return f"{self.schema}.{self.table}"

    def check(self) -> None:
        return None

    def acquire(self, job: str, run_id: int | None = None) -> None:
        return None  # the job lock and the transaction keep runs apart

    def close(self) -> None:
        return None

    def prepare(self, engine: Engine, *, run_id: int | None = None, committed: Committed | None = None) -> None:
        """Create a custom-named output table like the migrated ``documents`` table."""
        if self.table == "documents":
            return
        template = f"{quote_ident(self.schema)}.{quote_ident('documents')}"
        try:
            with engine.begin() as conn:
                conn.execute(sa.text(f"CREATE TABLE IF NOT EXISTS {self._qualified} (LIKE {template} INCLUDING ALL)"))
                _key_by_recipient(conn, self.schema, self.table, self._qualified)
        except sa.exc.DBAPIError as exc:
            raise map_db_error(exc, f"creating the output table {self.describe()}") from exc

    def write(self, outputs: Sequence[Output], *, conn: Connection | None, run_id: int) -> list[Written]:
        if conn is None:
            raise TypeError("TableLoader.write needs the pipeline's connection")
        if not outputs:
            return []
        conn.execute(
            self._upsert,
            [
                {
                    "recipient": self.recipient,
                    "release_id": o.doc.release_id,
                    "ern_version": o.doc.ern_version,
                    "message_id": o.doc.message_id,
                    "kind": o.doc.kind,
                    "document": o.doc.xml,
                    "checksum": o.doc.checksum,
                    "run_id": run_id,
                }
                for o in outputs
            ],
        )
        where = self.describe()
        return [Written(o.doc.release_id, where, o.doc.checksum) for o in outputs]

    def finish(self, *, resumed: bool) -> None:
        return None


def _key_by_recipient(conn: Connection, schema: str, table: str, qualified: str) -> None:
    """An output table made before recipients existed gets the recipient column and key (migration 0005's change)."""
    has = conn.execute(
        sa.text("SELECT 1 FROM information_schema.columns WHERE table_schema = :s AND table_name = :t "
                "AND column_name = 'recipient'"),
        {"s": schema, "t": table},
    ).first()
    if has is not None:
        return
    conn.execute(sa.text(f"ALTER TABLE {qualified} ADD COLUMN recipient text NOT NULL DEFAULT ''"))
    pkey = conn.execute(
        sa.text("SELECT conname FROM pg_constraint WHERE conrelid = CAST(:q AS regclass) AND contype = 'p'"),
        {"q": qualified},
    ).scalar()
    if pkey is not None:
        conn.execute(sa.text(f"ALTER TABLE {qualified} DROP CONSTRAINT {quote_ident(str(pkey))}"))
    conn.execute(sa.text(f"ALTER TABLE {qualified} ADD PRIMARY KEY (recipient, release_id)"))
