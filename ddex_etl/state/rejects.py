"""Rejected releases: what a run could not build, with text PostgreSQL can always store."""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .records import _REJECT_COLUMNS, RejectRecord, RejectRow
from .schema import _t
from .storable import storable_json, storable_text


# PostgreSQL's text and jsonb cannot hold U+0000, and UTF-8 cannot encode a
# lone surrogate; catalog data (a JSON column, a DataFrame) can carry both.
# A reject that cannot be stored would fail its whole chunk's transaction, on
# every resume: the state tables store a visible stand-in instead and say so.
def record_rejects(conn: Connection, schema: str, run_id: int, rejects: Iterable[RejectRecord]) -> int:
    """Store rejected releases for a run; a release rejected again counts one more attempt."""
    params = [
        {
            "run": run_id,
            "rid": r.release_id,
            "stage": r.stage,
            "kind": storable_text(r.error_kind),
            "msg": storable_text(r.message),
            "retry": r.retryable,
            "input": storable_json(r.input),
        }
        for r in rejects
    ]
    if not params:
        return 0
    conn.execute(
        sa.text(
            f"""INSERT INTO {_t(schema, 'rejected_releases')}
                (run_id, release_id, stage, error_kind, message, retryable, input)
            VALUES (:run, :rid, :stage, :kind, :msg, :retry, CAST(:input AS jsonb))
            ON CONFLICT (run_id, release_id) DO UPDATE
            SET stage = EXCLUDED.stage, error_kind = EXCLUDED.error_kind, message = EXCLUDED.message,
                retryable = EXCLUDED.retryable, input = EXCLUDED.input,
                attempts = {_t(schema, 'rejected_releases')}.attempts + 1,
                updated_at = now(), resolved_at = NULL, resolved_by_run = NULL"""
        ),
        params,
    )
    return len(params)


def record_new_rejects(conn: Connection, schema: str, run_id: int, rejects: Iterable[RejectRecord]) -> list[int]:
    """Store rejects a run does not hold yet (found again by a resumed attempt: left as they are).

    Returns the release ids newly recorded, so the run's count grows once per release.
    """
    params = [
        {
            "run": run_id, "rid": r.release_id, "stage": r.stage, "kind": storable_text(r.error_kind),
            "msg": storable_text(r.message), "retry": r.retryable, "input": storable_json(r.input),
        }
        for r in rejects
    ]
    added: list[int] = []
    for p in params:  # a handful per run: one statement each keeps RETURNING simple
        row = conn.execute(
            sa.text(
                f"""INSERT INTO {_t(schema, 'rejected_releases')}
                    (run_id, release_id, stage, error_kind, message, retryable, input)
                VALUES (:run, :rid, :stage, :kind, :msg, :retry, CAST(:input AS jsonb))
                ON CONFLICT (run_id, release_id) DO NOTHING RETURNING release_id"""
            ),
            p,
        ).first()
        if row is not None:
            added.append(int(row[0]))
    return added


def list_rejects(conn: Connection, schema: str, run_id: int, *, unresolved_only: bool = False) -> list[RejectRow]:
    """A run's rejected releases in release order."""
    extra = "AND resolved_at IS NULL" if unresolved_only else ""
    rows = conn.execute(
        sa.text(
            f"SELECT * FROM {_t(schema, 'rejected_releases')} WHERE run_id = :r {extra} ORDER BY release_id"
        ),
        {"r": run_id},
    )
    return [RejectRow(**{k: row._mapping[k] for k in _REJECT_COLUMNS}) for row in rows]


def resolve_rejects(conn: Connection, schema: str, run_id: int, release_ids: Sequence[int], by_run: int) -> int:
    """Mark a run's rejects as fixed (rebuilt successfully by ``by_run``)."""
    if not release_ids:
        return 0
    result = conn.execute(
        sa.text(
            f"""UPDATE {_t(schema, 'rejected_releases')}
            SET resolved_at = now(), resolved_by_run = :by, updated_at = now()
            WHERE run_id = :r AND release_id = ANY(:ids) AND resolved_at IS NULL"""
        ),
        {"by": by_run, "r": run_id, "ids": list(release_ids)},
    )
    return int(result.rowcount or 0)
