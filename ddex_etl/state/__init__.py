"""The connector's own tables: runs, checkpoints, rejected releases (and their migrations).

Everything lives in one schema (``database.state_schema``, default ``ddex_etl``),
including alembic's version table, so the connector never touches the catalog's
schema. Helpers here take a connection and never commit: the pipeline owns the
transaction, so a chunk's documents, its rejects and its checkpoint commit
together.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

import ddex_etl

from ..db import map_db_error, quote_ident
from ..errors import ConfigError, EtlError

RUN_STATUSES = ("running", "succeeded", "failed", "interrupted")
RUN_MODES = ("full", "incremental", "retry", "targeted")
STAGES = ("extract", "transform", "load")


def migrations_dir() -> Path:
    """The repository's ``migrations/`` folder (or the wheel's copy of it)."""
    return ddex_etl.data_dir("migrations")


def _alembic_config(connection: Connection, schema: str) -> Any:
    from alembic.config import Config as AlembicConfig

    where = migrations_dir()
    if not (where / "env.py").is_file():
        raise ConfigError(f"alembic migrations not found at {where}; fix: reinstall ddex-etl from its source tree")
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(where))
    cfg.attributes["connection"] = connection
    cfg.attributes["schema"] = schema
    return cfg


def _migration_lock_key(schema: str) -> int:
    return int.from_bytes(hashlib.sha256(f"ddex_etl:migrate:{schema}".encode()).digest()[:8], "big", signed=True)


def upgrade(engine: Engine, schema: str, revision: str = "head") -> None:
    """Create or upgrade the state tables in ``schema`` to ``revision``.

    Safe to call from several processes at once: a transaction-level advisory
    lock serialises them, and the second finds nothing left to do.
    """
    from alembic import command

    q = quote_ident(schema)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _migration_lock_key(schema)})
            conn.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {q}"))
            command.upgrade(_alembic_config(conn, schema), revision)
    except EtlError:
        raise
    except sa.exc.DBAPIError as exc:
        raise map_db_error(exc, f"upgrading the state tables in schema {schema!r}") from exc
    except Exception as exc:  # alembic reports unknown revisions with its own exceptions
        raise ConfigError(f"cannot upgrade schema {schema!r} to revision {revision!r}: {exc}") from exc


def downgrade(engine: Engine, schema: str, revision: str = "-1") -> None:
    """Downgrade the state tables in ``schema`` (default: one revision back; ``base`` removes them)."""
    from alembic import command

    try:
        with engine.begin() as conn:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _migration_lock_key(schema)})
            if _current(conn, schema) is None:
                raise ConfigError(f"schema {schema!r} has no state tables to downgrade; fix: `etl db upgrade` first")
            command.downgrade(_alembic_config(conn, schema), revision)
    except EtlError:
        raise
    except sa.exc.DBAPIError as exc:
        raise map_db_error(exc, f"downgrading the state tables in schema {schema!r}") from exc
    except Exception as exc:
        raise ConfigError(f"cannot downgrade schema {schema!r} to revision {revision!r}: {exc}") from exc


def current(engine: Engine, schema: str) -> str | None:
    """The applied revision in ``schema``, or None when the state tables do not exist."""
    try:
        with engine.connect() as conn:
            return _current(conn, schema)
    except sa.exc.DBAPIError as exc:
        raise map_db_error(exc, f"reading the state revision in schema {schema!r}") from exc


def _current(conn: Connection, schema: str) -> str | None:
    exists = conn.execute(
        sa.text("SELECT to_regclass(:t) IS NOT NULL"), {"t": f"{quote_ident(schema)}.alembic_version"}
    ).scalar()
    if not exists:
        return None
    rev = conn.execute(sa.text(f"SELECT version_num FROM {quote_ident(schema)}.alembic_version")).scalar()
    return str(rev) if rev is not None else None


# The newest revision under migrations/versions. Every run compares the
# schema with it; asking alembic instead costs ~0.1 s of imports and script
# parsing per run. tests/state/test_state.py checks it against alembic's head.
HEAD = "0005"


def head() -> str:
    """The newest revision the migration scripts define (alembic's own answer)."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(migrations_dir()))
    h = script.get_current_head()
    assert h is not None
    return h


def ensure_current(engine: Engine, schema: str) -> None:
    """Upgrade to head if needed (``etl run`` does this automatically)."""
    if current(engine, schema) != HEAD:
        upgrade(engine, schema)


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class RunRow:
    """One row of ``runs``."""

    id: int
    job: str
    status: str
    mode: str
    extract_mode: str
    config_fingerprint: str
    target: str
    layout: str | None
    output: str | None
    batch_id: str | None
    source_run_id: int | None
    options: dict[str, Any]
    watermark_from: dt.datetime | None
    watermark_to: dt.datetime | None
    started_at: dt.datetime
    resumed_at: dt.datetime | None
    finished_at: dt.datetime | None
    heartbeat_at: dt.datetime | None
    attempts: int
    pid: int | None
    host: str | None
    total: int | None
    built: int
    rejected: int
    skipped: int
    chunks_redone: int
    seconds: float | None
    releases_per_second: float | None
    peak_memory_mb: float | None
    error: str | None
    takedowns: int = 0
    unchanged: int = 0


@dataclass(frozen=True)
class Checkpoint:
    """Where a run stands: the first ``chunks_done`` chunks are loaded, and so are the chunks in ``ahead``.

    ``ahead``: chunks of the current attempt loaded beyond that contiguous
    point, each ``{"n": number, "lo": first id, "hi": last id}``. ``skip``:
    ``[lo, hi]`` id ranges (or, in offset mode, ``{"chunk": n}`` chunk numbers)
    that an earlier attempt loaded that way; a resume filters them out of its chunks.
    """

    run_id: int
    last_key: int | None
    next_offset: int
    chunks_done: int
    chunks_dispatched: int
    updated_at: dt.datetime | None = None
    ahead: list[dict[str, Any]] = field(default_factory=list)
    skip: list[Any] = field(default_factory=list)
    claims_through: int = -1  # the last chunk whose identifiers are claimed (see ddex_etl.state.claims)


@dataclass(frozen=True)
class RejectRecord:
    """A release that could not be extracted, built or loaded."""

    release_id: int
    stage: str  # extract | transform | load
    error_kind: str  # e.g. ReleaseDataError
    message: str
    retryable: bool = False
    input: Any = None  # JSON-able snapshot of the input


@dataclass(frozen=True)
class RejectRow:
    """One row of ``rejected_releases``."""

    id: int
    run_id: int
    release_id: int
    stage: str
    error_kind: str
    message: str
    retryable: bool
    attempts: int
    input: Any
    created_at: dt.datetime
    updated_at: dt.datetime
    resolved_at: dt.datetime | None
    resolved_by_run: int | None = field(default=None)

    def as_dict(self) -> dict[str, Any]:
        """What ``etl errors --json`` prints for it (the row's own id and update time left out)."""
        data = dataclasses.asdict(self)
        del data["id"], data["updated_at"]
        return data


_RUN_COLUMNS = [f.name for f in RunRow.__dataclass_fields__.values()]
_REJECT_COLUMNS = [f.name for f in RejectRow.__dataclass_fields__.values()]


def _t(schema: str, table: str) -> str:
    return f"{quote_ident(schema)}.{quote_ident(table)}"


def _run(row: Any) -> RunRow:
    return RunRow(**{k: row._mapping[k] for k in _RUN_COLUMNS})


# --------------------------------------------------------------------------- runs


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


# --------------------------------------------------------------------------- storable text

# PostgreSQL's text and jsonb cannot hold U+0000, and UTF-8 cannot encode a
# lone surrogate; catalog data (a JSON column, a DataFrame) can carry both.
# A reject that cannot be stored would fail its whole chunk's transaction, on
# every resume: the state tables store a visible stand-in instead and say so.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
NUL_STAND_IN = "\u2400"  # SYMBOL FOR NULL
SURROGATE_STAND_IN = "\ufffd"
UNSTORABLE_NOTE = (
    "characters PostgreSQL cannot store were replaced: U+0000 by U+2400, lone surrogates by U+FFFD"
)


def storable_text(text: str | None) -> str | None:
    """``text`` with the characters PostgreSQL refuses replaced by visible stand-ins."""
    if text is None or not _UNSTORABLE.search(text):
        return text
    return _UNSTORABLE.sub(lambda m: NUL_STAND_IN if m.group(0) == "\x00" else SURROGATE_STAND_IN, text)


def storable_json(value: Any) -> str | None:
    """``value`` as JSON text that jsonb accepts, whatever strings it holds.

    When something had to be replaced, a dict gains ``"_note"`` saying what.
    """
    if value is None:
        return None
    changed = False

    def clean(v: Any) -> Any:
        nonlocal changed
        if isinstance(v, str):
            fixed = storable_text(v)
            changed = changed or fixed != v
            return fixed
        if isinstance(v, dict):
            return {clean(str(k)): clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    # Round-trip first so that default=str values (dates, Decimals) are strings too.
    cleaned = clean(json.loads(json.dumps(value, default=str)))
    if changed and isinstance(cleaned, dict):
        cleaned["_note"] = UNSTORABLE_NOTE
    return json.dumps(cleaned)


# --------------------------------------------------------------------------- rejected releases


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


# --------------------------------------------------------------------------- delivered checksums


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


_PLAIN = re.compile(r"^[A-Za-z0-9_-]+$")


def _array_literal(values: list[Any]) -> Any:
    """``values`` as one PostgreSQL array literal when every item is a plain word or
    number (ids, hex checksums, message kinds): psycopg adapts a list item by
    item, which was half the client CPU of recording a 500-release chunk
    (1.5 ms, now 0.7). Anything else goes as a list, which psycopg quotes."""
    parts = [str(v) for v in values]
    if all(
        (type(v) is int or type(v) is str) and _PLAIN.match(p) and p.lower() != "null" for v, p in zip(values, parts)
    ):
        return "{" + ",".join(parts) + "}"
    return list(values)


def database_now(conn: Connection, lag_seconds: float = 0.0) -> dt.datetime:
    """The database clock minus ``lag_seconds`` (watermarks never trust the runner's clock)."""
    return conn.execute(
        sa.text("SELECT now() - make_interval(secs => :lag)"), {"lag": float(lag_seconds)}
    ).scalar_one()


# --------------------------------------------------------------------------- store acknowledgements


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
    """(run id, batch id) of the job's newest runs that wrote a batch, newest first."""
    rows = conn.execute(
        sa.text(
            f"""SELECT id, batch_id FROM {_t(schema, 'runs')}
            WHERE job = :job AND batch_id IS NOT NULL ORDER BY id DESC LIMIT :n"""
        ),
        {"job": job, "n": limit},
    )
    return [(int(r[0]), str(r[1])) for r in rows]


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
