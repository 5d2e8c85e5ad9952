"""Runs and their checkpoints: create, reopen, finish, list; advance a chunk at a time."""
from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .records import RUN_STATUSES, Checkpoint, RunRow, _run
from .schema import _t
from .storable import storable_text


def create_run(
    conn: Connection,
    schema: str,
    *,
    job: str,
    mode: str,
    extract_mode: str,
    fingerprint: str,
    target: str,
    layout: str | None,
    output: str | None,
    batch_id: str | None = None,
    source_run_id: int | None = None,
    options: dict[str, Any] | None = None,
    watermark_from: dt.datetime | None = None,
    watermark_to: dt.datetime | None = None,
    pid: int | None = None,
    host: str | None = None,
    total: int | None = None,
) -> RunRow:
    """Insert a new run (status running) and its empty checkpoint."""
    row = conn.execute(
        sa.text(
            f"""INSERT INTO {_t(schema, 'runs')}
                (job, status, mode, extract_mode, config_fingerprint, target, layout, output, batch_id,
                 source_run_id, options, watermark_from, watermark_to, pid, host, total, heartbeat_at)
            VALUES (:job, 'running', :mode, :extract_mode, :fp, :target, :layout, :output, :batch_id,
                 :source_run_id, CAST(:options AS jsonb), :wf, :wt, :pid, :host, :total, now())
            RETURNING *"""
        ),
        {
            "job": job,
            "mode": mode,
            "extract_mode": extract_mode,
            "fp": fingerprint,
            "target": target,
            "layout": layout,
            "output": output,
            "batch_id": batch_id,
            "source_run_id": source_run_id,
            "options": json.dumps(options or {}, default=str),
            "wf": watermark_from,
            "wt": watermark_to,
            "pid": pid,
            "host": host,
            "total": total,
        },
    ).one()
    conn.execute(sa.text(f"INSERT INTO {_t(schema, 'checkpoints')} (run_id) VALUES (:r)"), {"r": row.id})
    return _run(row)


def get_run(conn: Connection, schema: str, run_id: int) -> RunRow | None:
    """The run with this id, or None."""
    row = conn.execute(sa.text(f"SELECT * FROM {_t(schema, 'runs')} WHERE id = :id"), {"id": run_id}).first()
    return _run(row) if row is not None else None


def run_attempt(conn: Connection, schema: str, run_id: int) -> int | None:
    """How many times run ``run_id`` has been started (``runs.attempts``), or None when there is no such run."""
    n = conn.execute(sa.text(f"SELECT attempts FROM {_t(schema, 'runs')} WHERE id = :id"), {"id": run_id}).scalar()
    return int(n) if n is not None else None


def latest_run(conn: Connection, schema: str, job: str, modes: Sequence[str] = ("full", "incremental")) -> RunRow | None:
    """The newest run of ``job`` among ``modes``."""
    row = conn.execute(
        sa.text(
            f"SELECT * FROM {_t(schema, 'runs')} WHERE job = :job AND mode = ANY(:modes) ORDER BY id DESC LIMIT 1"
        ),
        {"job": job, "modes": list(modes)},
    ).first()
    return _run(row) if row is not None else None


def unfinished_run(conn: Connection, schema: str, job: str) -> RunRow | None:
    """The job's newest full/incremental run if it did not succeed (so ``etl run`` continues it)."""
    run = latest_run(conn, schema, job)
    return run if run is not None and run.status != "succeeded" else None


def unfinished_runs_under(conn: Connection, schema: str, prefix: str) -> list[RunRow]:
    """Per job whose name starts with ``prefix`` (a recipient's ``<job>/<name>``): its unfinished run, if any."""
    rows = conn.execute(
        sa.text(
            f"""SELECT DISTINCT ON (job) * FROM {_t(schema, 'runs')}
            WHERE left(job, length(:p)) = :p AND mode IN ('full', 'incremental')
            ORDER BY job, id DESC"""
        ),
        {"p": prefix},
    )
    return [run for run in map(_run, rows) if run.status != "succeeded"]


def last_success(conn: Connection, schema: str, job: str) -> RunRow | None:
    """The job's newest successful full/incremental run."""
    row = conn.execute(
        sa.text(
            f"""SELECT * FROM {_t(schema, 'runs')}
            WHERE job = :job AND status = 'succeeded' AND mode IN ('full', 'incremental')
            ORDER BY id DESC LIMIT 1"""
        ),
        {"job": job},
    ).first()
    return _run(row) if row is not None else None


def mark_superseded(conn: Connection, schema: str, run_id: int, *, by_run: int) -> None:
    """Record in an unfinished run's options that a newer run took its place (it stays resumable)."""
    conn.execute(
        sa.text(
            f"""UPDATE {_t(schema, 'runs')}
            SET options = coalesce(options, '{{}}'::jsonb) || jsonb_build_object('superseded_by', CAST(:by AS bigint))
            WHERE id = :id"""
        ),
        {"id": run_id, "by": by_run},
    )


def reopen_run(conn: Connection, schema: str, run_id: int, *, pid: int, host: str, redone: int) -> RunRow:
    """Mark a stopped run running again for a resume; count the chunks it will redo."""
    row = conn.execute(
        sa.text(
            f"""UPDATE {_t(schema, 'runs')}
            SET status = 'running', attempts = attempts + 1, resumed_at = now(), heartbeat_at = now(),
                finished_at = NULL, error = NULL, pid = :pid, host = :host,
                chunks_redone = chunks_redone + :redone
            WHERE id = :id RETURNING *"""
        ),
        {"id": run_id, "pid": pid, "host": host, "redone": redone},
    ).one()
    return _run(row)


def set_total(conn: Connection, schema: str, run_id: int, total: int | None) -> None:
    """Record how many releases the run expects (for progress and ETA)."""
    conn.execute(sa.text(f"UPDATE {_t(schema, 'runs')} SET total = :t WHERE id = :id"), {"t": total, "id": run_id})


def finish_run(
    conn: Connection,
    schema: str,
    run_id: int,
    *,
    status: str,
    seconds: float | None = None,
    peak_memory_mb: float | None = None,
    error: str | None = None,
) -> RunRow:
    """Close an attempt: set the status, add its time to the run's total, store the (masked) error."""
    if status not in RUN_STATUSES:
        raise ValueError(f"unknown run status {status!r}")
    row = conn.execute(
        sa.text(
            f"""UPDATE {_t(schema, 'runs')}
            SET status = :status,
                finished_at = CASE WHEN :status = 'running' THEN NULL ELSE now() END,
                heartbeat_at = now(),
                seconds = COALESCE(seconds, 0) + COALESCE(:seconds, 0),
                releases_per_second = CASE WHEN COALESCE(seconds, 0) + COALESCE(:seconds, 0) > 0
                    THEN (built + rejected + skipped) / (COALESCE(seconds, 0) + COALESCE(:seconds, 0)) END,
                peak_memory_mb = GREATEST(peak_memory_mb, :peak),
                error = :error
            WHERE id = :id RETURNING *"""
        ),
        {"status": status, "seconds": seconds, "peak": peak_memory_mb, "error": storable_text(error), "id": run_id},
    ).one()
    return _run(row)


def list_runs(conn: Connection, schema: str, *, job: str | None = None, limit: int = 20) -> list[RunRow]:
    """Recent runs, newest first."""
    where = "WHERE job = :job" if job is not None else ""
    rows = conn.execute(
        sa.text(f"SELECT * FROM {_t(schema, 'runs')} {where} ORDER BY id DESC LIMIT :limit"),
        {"job": job, "limit": limit},
    )
    return [_run(r) for r in rows]


def jobs(conn: Connection, schema: str) -> list[str]:
    """Every job that has run at least once."""
    return [r[0] for r in conn.execute(sa.text(f"SELECT DISTINCT job FROM {_t(schema, 'runs')} ORDER BY job"))]


# --------------------------------------------------------------------------- checkpoints


def get_checkpoint(conn: Connection, schema: str, run_id: int) -> Checkpoint:
    """The run's checkpoint (a run always has one)."""
    row = conn.execute(
        sa.text(f"SELECT * FROM {_t(schema, 'checkpoints')} WHERE run_id = :r"), {"r": run_id}
    ).one()
    return Checkpoint(**dict(row._mapping))


def mark_dispatched(conn: Connection, schema: str, run_id: int, chunks_dispatched: int) -> None:
    """Record that chunks up to this count were handed to workers (committed before they start)."""
    conn.execute(
        sa.text(
            f"""UPDATE {_t(schema, 'checkpoints')}
            SET chunks_dispatched = GREATEST(chunks_dispatched, :n) WHERE run_id = :r"""
        ),
        {"n": chunks_dispatched, "r": run_id},
    )


def advance(
    conn: Connection,
    schema: str,
    run_id: int,
    *,
    last_key: int | None,
    next_offset: int,
    chunks_done: int,
    built: int,
    rejected: int,
    skipped: int = 0,
    takedowns: int = 0,
    unchanged: int = 0,
    ahead: list[dict[str, Any]] | None = None,
    skip: list[Any] | None = None,
) -> None:
    """Move the checkpoint to ``chunks_done`` chunks and add one chunk's counts (in the chunk's transaction).

    ``ahead`` and ``skip``, when given, replace those lists (chunks loaded
    ahead that the checkpoint has now caught up with leave them).
    """
    conn.execute(
        sa.text(
            f"""UPDATE {_t(schema, 'checkpoints')}
            SET last_key = :k, next_offset = :o, chunks_done = :n,
                chunks_dispatched = GREATEST(chunks_dispatched, :n), updated_at = now(),
                ahead = COALESCE(CAST(:ahead AS jsonb), ahead), skip = COALESCE(CAST(:skip AS jsonb), skip)
            WHERE run_id = :r"""
        ),
        {
            "k": last_key, "o": next_offset, "n": chunks_done, "r": run_id,
            "ahead": None if ahead is None else json.dumps(ahead),
            "skip": None if skip is None else json.dumps(skip),
        },
    )
    _add_counts(conn, schema, run_id, built, rejected, skipped, takedowns, unchanged)


def record_ahead(
    conn: Connection,
    schema: str,
    run_id: int,
    entry: dict[str, Any],
    *,
    built: int,
    rejected: int,
    skipped: int = 0,
    takedowns: int = 0,
    unchanged: int = 0,
) -> None:
    """Record a chunk loaded beyond the contiguous checkpoint, with its counts (in the chunk's transaction)."""
    conn.execute(
        sa.text(
            f"""UPDATE {_t(schema, 'checkpoints')}
            SET ahead = ahead || jsonb_build_array(CAST(:e AS jsonb)), updated_at = now()
            WHERE run_id = :r"""
        ),
        {"e": json.dumps(entry), "r": run_id},
    )
    _add_counts(conn, schema, run_id, built, rejected, skipped, takedowns, unchanged)


def carry_ahead(conn: Connection, schema: str, run_id: int, *, by_chunk: bool = False) -> None:
    """On resume: the previous attempt's chunks loaded ahead become entries to skip.

    Keys paged in ascending id order (keyset, incremental, targeted, retry)
    skip the id range ``[lo, hi]`` of each chunk: robust to releases that
    appeared or vanished in between. Offset mode (``by_chunk``) pages in the
    keys query's own order, so a chunk's ids span no range: it skips the
    chunk by number, ``{"chunk": n}``, which the same stable order pages again.
    """
    conn.execute(
        sa.text(
            f"""UPDATE {_t(schema, 'checkpoints')}
            SET skip = skip || COALESCE((
                    SELECT jsonb_agg(CASE WHEN :by_chunk THEN jsonb_build_object('chunk', e -> 'n')
                                          ELSE jsonb_build_array(e -> 'lo', e -> 'hi') END)
                    FROM jsonb_array_elements(ahead) AS e
                    WHERE :by_chunk OR e ->> 'lo' IS NOT NULL
                ), '[]'::jsonb),
                ahead = '[]'::jsonb
            WHERE run_id = :r"""
        ),
        {"r": run_id, "by_chunk": by_chunk},
    )


def add_rejected(conn: Connection, schema: str, run_id: int, rejected: int) -> None:
    """Count releases a run rejected outside any chunk (see ``ddex_etl.run.orphans``)."""
    _add_counts(conn, schema, run_id, 0, rejected, 0, 0, 0)


def _add_counts(
    conn: Connection, schema: str, run_id: int, built: int, rejected: int, skipped: int, takedowns: int, unchanged: int
) -> None:
    conn.execute(
        sa.text(
            f"""UPDATE {_t(schema, 'runs')}
            SET built = built + :b, rejected = rejected + :j, skipped = skipped + :s,
                takedowns = takedowns + :td, unchanged = unchanged + :un, heartbeat_at = now()
            WHERE id = :r"""
        ),
        {"b": built, "j": rejected, "s": skipped, "td": takedowns, "un": unchanged, "r": run_id},
    )
