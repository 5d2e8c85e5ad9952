"""Store acknowledgements: which delivered releases a store accepted or rejected, and why."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .schema import _t
from .storable import storable_text


@dataclass(frozen=True)
class StoreAck:
    """One acknowledgement file a store left beside a delivered message (a row of ``store_acks``)."""

    job: str
    ack_file: str
    batch_id: str
    run_id: int | None
    message_file: str
    release: str | None  # the store's name for it: the release folder (ICPN, GRid or id)
    release_id: int | None
    status: str
    accepted: bool
    error_text: str | None = None
    proposed_action: str | None = None
    manual_check_required: bool | None = None
    acknowledged_at: str | None = None
    read_at: dt.datetime | None = None


def delivered_batches(conn: Connection, schema: str, job: str, limit: int = 50) -> list[tuple[int, str]]:
    """(run id, batch id) of the job's newest finished runs that wrote a batch, newest first.

    A run still running, failed or interrupted has not sent ``BatchComplete``:
    the store does not ingest (nor acknowledge) that batch yet.
    """
    rows = conn.execute(
        sa.text(
            f"""SELECT id, batch_id FROM {_t(schema, 'runs')}
            WHERE job = :job AND batch_id IS NOT NULL AND status = 'succeeded' ORDER BY id DESC LIMIT :n"""
        ),
        {"job": job, "n": limit},
    )
    return [(int(r[0]), str(r[1])) for r in rows]


@dataclass(frozen=True)
class AckBatch:
    """What is known of a store's answers for one delivered batch (a row of ``ack_batches``)."""

    batch_id: str
    folder: str  # the batch's folder on the target
    releases: int  # release folders the batch holds there
    acknowledged: int  # of them, answered with a final status
    settled: bool  # every release answered: never listed again


def ack_batches(conn: Connection, schema: str, job: str, batch_ids: Sequence[str]) -> dict[str, AckBatch]:
    """The ``ack_batches`` rows of these batches."""
    if not batch_ids:
        return {}
    rows = conn.execute(
        sa.text(
            f"""SELECT batch_id, folder, releases, acknowledged, settled FROM {_t(schema, 'ack_batches')}
            WHERE job = :job AND batch_id = ANY(:ids)"""
        ),
        {"job": job, "ids": list(batch_ids)},
    )
    return {str(r[0]): AckBatch(str(r[0]), str(r[1]), int(r[2]), int(r[3]), bool(r[4])) for r in rows}


def record_ack_batch(conn: Connection, schema: str, job: str, batch: AckBatch) -> None:
    """Insert or refresh one batch's row."""
    conn.execute(
        sa.text(
            f"""INSERT INTO {_t(schema, 'ack_batches')} (job, batch_id, folder, releases, acknowledged, settled, checked_at)
            VALUES (:job, :batch, :folder, :releases, :acknowledged, :settled, now())
            ON CONFLICT (job, batch_id) DO UPDATE
            SET folder = EXCLUDED.folder, releases = EXCLUDED.releases, acknowledged = EXCLUDED.acknowledged,
                settled = EXCLUDED.settled, checked_at = now()"""
        ),
        {"job": job, "batch": batch.batch_id, "folder": batch.folder, "releases": batch.releases,
         "acknowledged": batch.acknowledged, "settled": batch.settled},
    )


def settled_batches(conn: Connection, schema: str, job: str) -> set[str]:
    """The job's batches every release of which the store has answered for."""
    rows = conn.execute(
        sa.text(f"SELECT batch_id FROM {_t(schema, 'ack_batches')} WHERE job = :job AND settled"), {"job": job}
    )
    return {str(r[0]) for r in rows}


def acks_of_batches(conn: Connection, schema: str, job: str, batch_ids: Sequence[str]) -> list[StoreAck]:
    """Every acknowledgement recorded for these batches."""
    if not batch_ids:
        return []
    rows = conn.execute(
        sa.text(f"SELECT * FROM {_t(schema, 'store_acks')} WHERE job = :job AND batch_id = ANY(:ids)"),
        {"job": job, "ids": list(batch_ids)},
    ).mappings()
    fields = set(StoreAck.__dataclass_fields__)
    return [StoreAck(**{k: v for k, v in r.items() if k in fields}) for r in rows]


def batch_runs(conn: Connection, schema: str, job: str) -> list[tuple[int, str, str]]:
    """(run id, batch id, status) of every run of the job that wrote a batch, newest first."""
    rows = conn.execute(
        sa.text(
            f"""SELECT id, batch_id, status FROM {_t(schema, 'runs')}
            WHERE job = :job AND batch_id IS NOT NULL ORDER BY id DESC"""
        ),
        {"job": job},
    )
    return [(int(r[0]), str(r[1]), str(r[2])) for r in rows]


def releases_by_identifier(conn: Connection, schema: str, job: str, identifiers: Sequence[str]) -> dict[str, int]:
    """Release ids of the folders (ICPN, GRid or id) the job delivered under those names."""
    if not identifiers:
        return {}
    rows = conn.execute(
        sa.text(
            f"""SELECT identifier, release_id FROM {_t(schema, 'delivered')}
            WHERE job = :job AND identifier = ANY(:ids)"""
        ),
        {"job": job, "ids": list(identifiers)},
    )
    return {str(r[0]): int(r[1]) for r in rows}


def record_acks(conn: Connection, schema: str, acks: Iterable[StoreAck]) -> int:
    """Insert or refresh acknowledgement rows (keyed by job and ACK file); returns how many were new."""
    new = 0
    for a in acks:
        result = conn.execute(
            sa.text(
                f"""INSERT INTO {_t(schema, 'store_acks')}
                (job, ack_file, batch_id, run_id, message_file, release, release_id, status, accepted,
                 error_text, proposed_action, manual_check_required, acknowledged_at, read_at)
                VALUES (:job, :ack_file, :batch_id, :run_id, :message_file, :release, :release_id, :status, :accepted,
                        :error_text, :proposed_action, :manual, :acknowledged_at, now())
                ON CONFLICT (job, ack_file) DO UPDATE
                SET status = EXCLUDED.status, accepted = EXCLUDED.accepted, error_text = EXCLUDED.error_text,
                    proposed_action = EXCLUDED.proposed_action, manual_check_required = EXCLUDED.manual_check_required,
                    release_id = COALESCE(EXCLUDED.release_id, {_t(schema, 'store_acks')}.release_id),
                    acknowledged_at = EXCLUDED.acknowledged_at, read_at = now()
                RETURNING (xmax = 0) AS inserted"""
            ),
            {
                "job": a.job, "ack_file": a.ack_file, "batch_id": a.batch_id, "run_id": a.run_id,
                "message_file": a.message_file, "release": a.release, "release_id": a.release_id,
                "status": a.status, "accepted": a.accepted, "error_text": storable_text(a.error_text),
                "proposed_action": a.proposed_action, "manual": a.manual_check_required,
                "acknowledged_at": a.acknowledged_at,
            },
        ).scalar()
        new += bool(result)
    return new


def store_rejections(conn: Connection, schema: str, job: str, run_id: int | None = None) -> list[StoreAck]:
    """The job's releases whose latest acknowledgement is a rejection (or, with ``run_id``, that run's batch's)."""
    where = "AND run_id = :run" if run_id is not None else ""
    rows = conn.execute(
        sa.text(
            f"""SELECT * FROM (
                SELECT DISTINCT ON (COALESCE(release_id::text, release, message_file)) *
                FROM {_t(schema, 'store_acks')} WHERE job = :job {where}
                ORDER BY COALESCE(release_id::text, release, message_file), batch_id DESC, ack_file DESC
            ) latest WHERE NOT accepted ORDER BY batch_id, ack_file"""
        ),
        {"job": job, "run": run_id},
    ).mappings()
    fields = {f for f in StoreAck.__dataclass_fields__}
    return [StoreAck(**{k: v for k, v in r.items() if k in fields}) for r in rows]


def ack_status_counts(conn: Connection, schema: str, job: str) -> dict[str, int]:
    """The job's releases by the status of their newest acknowledgement (for the metrics file)."""
    rows = conn.execute(
        sa.text(
            f"""SELECT status, count(*) FROM (
                SELECT DISTINCT ON (COALESCE(release_id::text, release, message_file)) status
                FROM {_t(schema, 'store_acks')} WHERE job = :job
                ORDER BY COALESCE(release_id::text, release, message_file), batch_id DESC, ack_file DESC
            ) latest GROUP BY status ORDER BY status"""
        ),
        {"job": job},
    )
    return {str(r[0]): int(r[1]) for r in rows}


def acks_per_batch(conn: Connection, schema: str, job: str, batch_ids: Sequence[str]) -> dict[str, int]:
    """Per batch id: how many of its messages have an acknowledgement recorded (however it was read)."""
    if not batch_ids:
        return {}
    rows = conn.execute(
        sa.text(
            f"""SELECT batch_id, count(DISTINCT message_file) FROM {_t(schema, 'store_acks')}
            WHERE job = :job AND batch_id = ANY(:ids) GROUP BY batch_id"""
        ),
        {"job": job, "ids": list(batch_ids)},
    )
    found = {str(r[0]): int(r[1]) for r in rows}
    return {b: found.get(b, 0) for b in batch_ids}
