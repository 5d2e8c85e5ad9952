"""The connector's own tables: runs, checkpoints, rejected releases (and their migrations).

Everything lives in one schema (``database.state_schema``, default ``ddex_etl``),
including alembic's version table, so the connector never touches the catalog's
schema. Helpers here take a connection and never commit: the pipeline owns the
transaction, so a chunk's documents, its rejects and its checkpoint commit
together.

Files::

    schema.py      migrations (upgrade, downgrade, current), table names, the database clock
    records.py     RunRow, Checkpoint, RejectRecord, RejectRow
    runs.py        runs and checkpoints
    rejects.py     rejected releases
    storable.py    text PostgreSQL can always store (U+0000, lone surrogates)
    delivered.py   what each job last delivered, per release
    store_acks.py  what the stores acknowledged
    claims.py      identifiers claimed per run (duplicate ICPN/GRid/ISRC)
    joblock.py     one runner per job
    run_selection.py  which run `etl run` works on
"""
from __future__ import annotations

from .delivered import TAKEDOWN, Sent, delivered_by_run, delivered_checksums, last_sent, live_sent_missing_from, record_delivered  # noqa: F401,E501
from .records import RUN_MODES, RUN_STATUSES, STAGES, Checkpoint, RejectRecord, RejectRow, RunRow  # noqa: F401
from .rejects import list_rejects, record_new_rejects, record_rejects, resolve_rejects  # noqa: F401
from .store_acks import ack_status_counts, acks_per_batch  # noqa: F401  (metrics, a scheduler's ACK sensor)
from .runs import (  # noqa: F401
    add_rejected,
    advance,
    carry_ahead,
    create_run,
    finish_run,
    get_checkpoint,
    get_run,
    jobs,
    last_success,
    latest_run,
    list_runs,
    mark_dispatched,
    mark_superseded,
    record_ahead,
    reopen_run,
    run_attempt,
    set_total,
    unfinished_run,
    unfinished_runs_under,
)
from .schema import HEAD, _t, current, database_now, downgrade, ensure_current, head, migrations_dir, upgrade  # noqa: F401
from .storable import NUL_STAND_IN, SURROGATE_STAND_IN, UNSTORABLE_NOTE, storable_json, storable_text  # noqa: F401
from .store_acks import (  # noqa: F401
    AckBatch,
    StoreAck,
    ack_batches,
    acks_of_batches,
    batch_runs,
    delivered_batches,
    record_ack_batch,
    record_acks,
    releases_by_identifier,
    settled_batches,
    store_rejections,
)

__all__ = [
    "Checkpoint",
    "HEAD",
    "NUL_STAND_IN",
    "RUN_MODES",
    "RUN_STATUSES",
    "RejectRecord",
    "RejectRow",
    "RunRow",
    "STAGES",
    "TAKEDOWN",
    "Sent",
    "SURROGATE_STAND_IN",
    "StoreAck",
    "UNSTORABLE_NOTE",
    "add_rejected",
    "advance",
    "carry_ahead",
    "create_run",
    "current",
    "database_now",
    "delivered_batches",
    "delivered_by_run",
    "delivered_checksums",
    "downgrade",
    "ensure_current",
    "finish_run",
    "get_checkpoint",
    "get_run",
    "head",
    "jobs",
    "last_success",
    "last_sent",
    "latest_run",
    "live_sent_missing_from",
    "list_rejects",
    "list_runs",
    "mark_dispatched",
    "mark_superseded",
    "migrations_dir",
    "record_acks",
    "record_ahead",
    "record_delivered",
    "record_new_rejects",
    "record_rejects",
    "releases_by_identifier",
    "reopen_run",
    "resolve_rejects",
    "run_attempt",
    "set_total",
    "storable_json",
    "storable_text",
    "store_rejections",
    "unfinished_run",
    "unfinished_runs_under",
    "upgrade",
    "ack_status_counts",
    "acks_per_batch",
]
