"""What each job delivered: the checksum, kind and identifier of every release's latest document."""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .schema import _t

TAKEDOWN = "TakeDown"  # the kind of a takedown message (ern.build_takedown)


@dataclass(frozen=True)
class Sent:
    """What a job last delivered for one release."""

    release_id: int
    checksum: str
    kind: str  # NewReleaseMessage or TakeDown
    run_id: int
    identifier: str | None  # the release's folder in that run's batch

    @property
    def live(self) -> bool:
        """The store may still offer the release: the last thing sent was not a takedown."""
        return self.kind != TAKEDOWN


def last_sent(conn: Connection, schema: str, job: str, release_ids: Sequence[int]) -> dict[int, Sent]:
    """What ``job`` last delivered for each of ``release_ids`` (absent: never delivered)."""
    if not release_ids:
        return {}
    rows = conn.execute(
        sa.text(
            f"""SELECT release_id, checksum, kind, run_id, identifier FROM {_t(schema, 'delivered')}
            WHERE job = :job AND release_id = ANY(:ids)"""
        ),
        {"job": job, "ids": [int(i) for i in release_ids]},
    )
    return {int(r[0]): Sent(int(r[0]), str(r[1]), str(r[2]), int(r[3]), r[4]) for r in rows}


def live_sent_missing_from(
    conn: Connection, schema: str, job: str, keys_sql: str, params: Mapping[str, Any]
) -> list[Sent]:
    """Releases ``job`` delivered and never took down that the keys query ``keys_sql`` no longer returns.

    ``keys_sql`` is the user's keys query (``:after``/``:offset`` and ``:limit``
    bound by ``params``, ``:limit`` NULL for all of it), compared by
    ``release_id``. One anti-join: its cost follows the job's delivered rows
    and the keys query's full scan, not the number of releases that left.
    """
    rows = conn.execute(
        sa.text(
            f"""SELECT d.release_id, d.checksum, d.kind, d.run_id, d.identifier FROM {_t(schema, 'delivered')} d
            WHERE d.job = :job AND d.kind <> :takedown
              AND NOT EXISTS (SELECT 1 FROM ({keys_sql}) AS k WHERE k.release_id = d.release_id)
            ORDER BY d.release_id"""
        ),
        {**params, "job": job, "takedown": TAKEDOWN},
    )
    return [Sent(int(r[0]), str(r[1]), str(r[2]), int(r[3]), r[4]) for r in rows]


def delivered_checksums(conn: Connection, schema: str, job: str, release_ids: Sequence[int]) -> dict[int, str]:
    """The checksum of what ``job`` last delivered for each of ``release_ids`` (absent: never delivered)."""
    if not release_ids:
        return {}
    rows = conn.execute(
        sa.text(
            f"""SELECT release_id, checksum FROM {_t(schema, 'delivered')}
            WHERE job = :job AND release_id = ANY(:ids)"""
        ),
        {"job": job, "ids": [int(i) for i in release_ids]},
    )
    return {int(r[0]): str(r[1]) for r in rows}


def delivered_by_run(conn: Connection, schema: str, job: str, run_id: int, release_ids: Sequence[int]) -> set[int]:
    """Which of ``release_ids`` a committed chunk of ``run_id`` delivered (its ``delivered`` row names that run)."""
    if not release_ids:
        return set()
    rows = conn.execute(
        sa.text(
            f"""SELECT release_id FROM {_t(schema, 'delivered')}
            WHERE job = :job AND run_id = :run AND release_id = ANY(:ids)"""
        ),
        {"job": job, "run": run_id, "ids": [int(i) for i in release_ids]},
    )
    return {int(r[0]) for r in rows}


def folders_of_run(conn: Connection, schema: str, job: str, run_id: int) -> list[tuple[int, str]]:
    """``(release_id, identifier)`` of every document ``run_id`` wrote into its batch and still holds as the job's
    latest for that release (the folders its local batch must hold), by release id."""
    rows = conn.execute(
        sa.text(
            f"""SELECT release_id, identifier FROM {_t(schema, 'delivered')}
            WHERE job = :job AND run_id = :run AND identifier IS NOT NULL ORDER BY release_id"""
        ),
        {"job": job, "run": run_id},
    )
    return [(int(r[0]), str(r[1])) for r in rows]


def record_delivered(
    conn: Connection, schema: str, job: str, run_id: int, delivered: Iterable[tuple[Any, ...]]
) -> int:
    """Remember ``(release_id, checksum, kind[, identifier])`` as delivered by ``run_id`` (in the chunk's transaction).

    ``identifier`` is the name of the release's folder in a batch (what a
    store's acknowledgement names). One statement per chunk over arrays: a
    row-by-row INSERT cost the server more per release than reading it. The
    last entry of a release given twice wins.
    """
    latest: dict[int, tuple[str, str, str | None]] = {}
    for entry in delivered:
        rid, checksum, kind = entry[:3]
        latest[int(rid)] = (checksum, kind, entry[3] if len(entry) > 3 else None)
    if not latest:
        return 0
    ids = sorted(latest)
    conn.execute(
        sa.text(
            f"""INSERT INTO {_t(schema, 'delivered')} (job, release_id, checksum, kind, run_id, delivered_at, identifier)
            SELECT :job, u.rid, u.sum, u.kind, :run, now(), u.ident
            FROM unnest(CAST(:rids AS bigint[]), CAST(:sums AS text[]), CAST(:kinds AS text[]),
                        CAST(:idents AS text[])) AS u (rid, sum, kind, ident)
            ON CONFLICT (job, release_id) DO UPDATE
            SET checksum = EXCLUDED.checksum, kind = EXCLUDED.kind, run_id = EXCLUDED.run_id,
                delivered_at = EXCLUDED.delivered_at, identifier = EXCLUDED.identifier"""
        ),
        {
            "job": job, "run": run_id, "rids": _array_literal(ids),
            "sums": _array_literal([latest[i][0] for i in ids]), "kinds": _array_literal([latest[i][1] for i in ids]),
            "idents": _array_literal([latest[i][2] for i in ids]),
        },
    )
    return len(ids)


_PLAIN = re.compile(r"[A-Za-z0-9_-]+")


def _array_literal(values: list[Any]) -> Any:
    """``values`` as one PostgreSQL array literal when every item is a plain word or
    number (ids, hex checksums, message kinds): psycopg adapts a list item by
    item, which was half the client CPU of recording a 500-release chunk
    (1.5 ms, now 0.7). Anything else goes as a list, which psycopg quotes."""
    parts = [str(v) for v in values]
    if all(
        (type(v) is int or type(v) is str) and _PLAIN.fullmatch(p) and p.lower() != "null" for v, p in zip(values, parts)
    ):
        return "{" + ",".join(parts) + "}"
    return list(values)
