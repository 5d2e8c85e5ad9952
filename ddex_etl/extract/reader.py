"""Chunked reads of whole releases from PostgreSQL.

Two queries, both plain SQL files (``sql/`` by default, or the user's own via
``extract.keys_query`` / ``extract.rows_query``):

* the **keys query** pages release ids: keyset (``:after``, ``:limit``; the
  default) or offset (``:offset``, ``:limit``). Each page is read in its own
  short transaction, so no snapshot is held across a run.
* the **rows query** returns the contract columns (docs/column-contract.md)
  for exactly the ids of one chunk (``:release_ids``), one row per track,
  ordered by release. Rows stream through a server-side cursor and are grouped
  into ``Release`` records by ``ddex_etl.extract.records``.

A chunk is always whole releases: keys page releases, never rows.

``fetch_releases`` returns ``(releases, rejects)``: a release whose values
cannot be converted (a bad date, a duration of 'abc') becomes a
``ReleaseDataError`` in ``rejects`` (with ``.rows`` holding its raw rows) and
the rest of the chunk goes on. Database faults are raised as
``TransientError``/``TerminalError`` via ``db.map_db_error``, naming the query
file. Everything here is module-level and takes plain arguments so the
pipeline can call ``fetch_releases`` in worker processes, each with its own
engine.
"""
from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg.types.string import TextLoader

from .. import data_dir
from ..config import ExtractConfig
from ..db import map_db_error
from ..errors import EtlError, ReleaseDataError, TerminalError
from ..models import Release
from . import catalog_read, records

SQL_DIR = data_dir("sql")
KEYS_SQL = SQL_DIR / "release_keys.sql"
KEYS_OFFSET_SQL = SQL_DIR / "release_keys_offset.sql"
ROWS_SQL = SQL_DIR / "release_rows.sql"
CHANGED_KEYS_SQL = SQL_DIR / "changed_release_keys.sql"

MIN_KEY = -(2**63)  # ":after" for the first keyset page: below every bigint id
ROWS_PER_FETCH = 2000  # server-side cursor batch: a few chunks' worth of memory, few round trips

# Per-transaction planner settings for the rows query. A chunk is small and
# its plan cheap: JIT compilation alone cost more than the query (100 ms of
# 200 ms measured), and parallel workers compete with our own workers for the
# same cores. A server-side cursor is planned for its first 10% of rows by
# default (cursor_tuple_fraction), which picked nested-loop plans 50 times
# slower here; we always read every row. SET LOCAL semantics: they end with
# the transaction.
_SESSION_SETTINGS = (
    "SELECT set_config('jit', 'off', true), "
    "set_config('cursor_tuple_fraction', '1.0', true), "
    "set_config('max_parallel_workers_per_gather', '0', true), "
    "set_config('work_mem', '64MB', true)"
)

_counter = itertools.count()


@dataclass(frozen=True)
class KeyChunk:
    """One page of release ids, and where the next page starts (for the checkpoint)."""

    number: int  # 0-based position of the chunk in the run
    release_ids: tuple[int, ...]
    last_key: int  # the highest id in this chunk: keyset mode resumes after it
    next_offset: int  # releases seen so far including this chunk: offset mode resumes here


# ---------------------------------------------------------------------------
# Queries: read once per process, compiled once to the driver's paramstyle


@dataclass(frozen=True)
class _Query:
    path: Path
    text: str  # as written, with :name parameters
    driver_sql: str  # psycopg's %(name)s form, % escaped

    def __str__(self) -> str:
        return str(self.path)


@functools.lru_cache(maxsize=16)
def _load_query(path: str) -> _Query:
    from sqlalchemy.dialects.postgresql import psycopg as pg_dialect

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise TerminalError(
            f"cannot read the extract query {p}: {exc.strerror or exc}; "
            "fix: point extract.keys_query / extract.rows_query at a readable .sql file"
        ) from exc
    # One statement, no trailing ';': the text is wrapped in COPY (...) and count(*) subqueries.
    text = text.strip().rstrip(";").strip()
    if not text:
        raise TerminalError(f"the extract query {p} is empty; fix: write a SELECT returning the contract columns")
    driver_sql = str(sa.text(text).compile(dialect=pg_dialect.dialect()))
    return _Query(p, text, driver_sql)


def keys_query(cfg: ExtractConfig) -> _Query:
    """The keys query for the configured mode (the user's file, or the packaged one)."""
    if cfg.keys_query is not None:
        return _load_query(str(cfg.keys_query))
    return _load_query(str(KEYS_OFFSET_SQL if cfg.mode == "offset" else KEYS_SQL))


def rows_query(cfg: ExtractConfig) -> _Query:
    """The rows query (the user's file, or the packaged one)."""
    return _load_query(str(cfg.rows_query if cfg.rows_query is not None else ROWS_SQL))


def changed_keys_query(cfg: ExtractConfig) -> _Query:
    """The changed-keys query of incremental runs (the user's file, or the packaged one)."""
    return _load_query(str(cfg.changed_keys_query if cfg.changed_keys_query is not None else CHANGED_KEYS_SQL))


# ---------------------------------------------------------------------------
# Keys


def _key_params(cfg: ExtractConfig, after: int | None, offset: int, limit: int | None) -> dict[str, Any]:
    if cfg.mode == "offset":
        return {"offset": offset, "limit": limit}
    return {"after": MIN_KEY if after is None else after, "limit": limit}


def iter_key_chunks(
    engine: sa.Engine,
    cfg: ExtractConfig,
    *,
    after_key: int | None = None,
    offset: int = 0,
    start_number: int = 0,
) -> Iterator[KeyChunk]:
    """Page release ids in chunks of ``cfg.chunk_size``, keyset (default) or offset per ``cfg.mode``.

    Keyset resumes after ``after_key`` (``None``: from the start); offset
    resumes at ``offset``. Each page is its own short transaction, so a
    release inserted or deleted between pages can never make keyset paging
    skip or repeat another release.
    """
    query = keys_query(cfg)
    stmt = sa.text(query.text)
    size = cfg.chunk_size
    number = start_number
    last = after_key
    while True:
        params = _key_params(cfg, last, offset, size)
        try:
            with engine.connect() as conn:
                ids = [int(row[0]) for row in conn.execute(stmt, params)]
                conn.rollback()
        except EtlError:
            raise
        except Exception as exc:
            where = _page_place(last) if cfg.mode != "offset" else f"at offset {offset}"
            raise map_db_error(exc, f"paging release ids {where} with {query}") from exc
        if not ids:
            return
        if cfg.mode != "offset":
            _check_keyset_page(ids, last, query)
        offset += len(ids)
        last = ids[-1]
        yield KeyChunk(number, tuple(ids), last, offset)
        number += 1
        if len(ids) < size:
            return  # a short page: there was nothing more when it was read


def iter_changed_key_chunks(
    engine: sa.Engine,
    cfg: ExtractConfig,
    *,
    since: Any,
    until: Any,
    after_key: int | None = None,
    start_number: int = 0,
) -> Iterator[KeyChunk]:
    """Page the ids of releases that changed in ``(since, until]`` (``extract.changed_keys_query``,
    by default ``sql/changed_release_keys.sql``).

    Always keyset on release id: the window is frozen, so the set is the same
    on every page and after a resume. Includes deleted releases (takedowns).
    """
    query = changed_keys_query(cfg)
    stmt = sa.text(query.text)
    size = cfg.chunk_size
    number = start_number
    last = after_key
    while True:
        params = {"since": since, "until": until, "after": MIN_KEY if last is None else last, "limit": size}
        try:
            with engine.connect() as conn:
                ids = [int(row[0]) for row in conn.execute(stmt, params)]
                conn.rollback()
        except EtlError:
            raise
        except Exception as exc:
            raise map_db_error(exc, f"paging changed release ids {_page_place(last)} with {query}") from exc
        if not ids:
            return
        _check_keyset_page(ids, last, query)
        last = ids[-1]
        yield KeyChunk(number, tuple(ids), last, 0)
        number += 1
        if len(ids) < size:
            return


def count_changed_releases(engine: sa.Engine, cfg: ExtractConfig | None = None, *, since: Any, until: Any) -> int:
    """How many releases changed in ``(since, until]`` (for progress and ETA)."""
    query = changed_keys_query(cfg if cfg is not None else ExtractConfig())
    stmt = sa.text(f"SELECT count(*) FROM ({query.text}) AS keys")
    try:
        with engine.connect() as conn:
            n = conn.execute(stmt, {"since": since, "until": until, "after": MIN_KEY, "limit": None}).scalar_one()
            conn.rollback()
    except Exception as exc:
        raise map_db_error(exc, f"counting changed releases with {query}") from exc
    return int(n)


def _page_place(last: int | None) -> str:
    """Where paging stood, for a message: never "after release None"."""
    return "for the first page" if last is None else f"after release {last}"


def iter_id_chunks(
    ids: Sequence[int], chunk_size: int, *, after_key: int | None = None, start_number: int = 0
) -> Iterator[KeyChunk]:
    """Chunks of a fixed list of release ids (``etl run --release-id``), ascending, resumable after a key."""
    todo = sorted({int(i) for i in ids if after_key is None or int(i) > after_key})
    number = start_number
    for i in range(0, len(todo), chunk_size):
        page = tuple(todo[i : i + chunk_size])
        yield KeyChunk(number, page, page[-1], 0)
        number += 1


def _check_keyset_page(ids: list[int], after: int | None, query: _Query) -> None:
    # Keyset paging is only safe when ids come back strictly ascending and
    # above the previous page: otherwise a resume would skip releases.
    floor = MIN_KEY if after is None else after
    previous = floor
    for rid in ids:
        if rid <= previous:
            raise TerminalError(
                f"the keys query {query} returned release id {rid} after {previous}: keyset paging needs ids "
                "strictly ascending and above :after; fix: WHERE release_id > :after ORDER BY release_id LIMIT :limit"
            )
        previous = rid


def count_releases(engine: sa.Engine, cfg: ExtractConfig) -> int:
    """How many releases the keys query would page (for progress and ETA)."""
    query = keys_query(cfg)
    stmt = sa.text(f"SELECT count(*) FROM ({query.text}) AS keys")
    try:
        with engine.connect() as conn:
            n = conn.execute(stmt, _key_params(cfg, None, 0, None)).scalar_one()
            conn.rollback()
    except Exception as exc:
        raise map_db_error(exc, f"counting releases with {query}") from exc
    return int(n)


# ---------------------------------------------------------------------------
# Rows


def fetch_releases(
    conn: sa.Connection, cfg: ExtractConfig, release_ids: Sequence[int]
) -> tuple[list[Release], list[ReleaseDataError]]:
    """Read and group the rows of exactly ``release_ids``: ``(releases, rejects)``.

    Rows stream through a server-side cursor. Releases come back in the rows
    query's order (release id); an id with no rows (deleted since its key was
    read) is simply absent. A release whose values cannot be converted is
    returned in ``rejects`` as a ``ReleaseDataError`` naming release, field,
    value and fix, with its raw rows in ``.rows``.

    Uses the caller's transaction when there is one; otherwise opens and
    ends its own (read only).
    """
    if not release_ids:
        return [], []
    if cfg.rows_query is None:
        return _fetch_tablewise(conn, release_ids)
    query = rows_query(cfg)
    ids = [int(r) for r in release_ids]
    own = None if conn.in_transaction() else conn.begin()
    releases: list[Release] = []
    rejects: list[ReleaseDataError] = []
    try:
        dbapi: psycopg.Connection[Any] = conn.connection.driver_connection  # type: ignore[assignment]
        dbapi.execute(_SESSION_SETTINGS)
        with dbapi.cursor(name=f"ddex_etl_rows_{next(_counter)}") as cur:
            # JSON columns stay text: the records layer parses each distinct
            # value once (a release's artists and deals repeat on every row).
            cur.adapters.register_loader("json", TextLoader)
            cur.adapters.register_loader("jsonb", TextLoader)
            cur.itersize = ROWS_PER_FETCH
            cur.execute(query.driver_sql, {"release_ids": ids})
            columns = [d.name for d in cur.description or ()]
            for result in records.iter_release_results(cur, columns):
                if isinstance(result, ReleaseDataError):
                    rejects.append(result)
                else:
                    releases.append(result)
        if own is not None:
            own.commit()
    except records.RowOrderError as exc:
        _end(own)
        raise records.RowOrderError(f"{exc} (rows query {query})") from None
    except EtlError:
        _end(own)
        raise
    except Exception as exc:
        _end(own)
        raise map_db_error(exc, f"reading the rows of {len(ids)} releases ({_span(ids)}) with {query}") from exc
    return releases, rejects


def _fetch_tablewise(
    conn: sa.Connection, release_ids: Sequence[int]
) -> tuple[list[Release], list[ReleaseDataError]]:
    """The packaged catalog, table by table (``catalog_read``), in one consistent snapshot."""
    ids = [int(r) for r in release_ids]
    own = None if conn.in_transaction() else conn.begin()
    try:
        dbapi: psycopg.Connection[Any] = conn.connection.driver_connection  # type: ignore[assignment]
        if own is not None:
            if dbapi.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                dbapi.rollback()  # nothing of ours is in it: the transaction is ours to start
            # The five queries must see one snapshot, or a release edited between
            # two of them could mix old tracks with new credits.
            dbapi.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        dbapi.execute(_SESSION_SETTINGS)
        result = catalog_read.fetch_chunk(dbapi, ids)
        if own is not None:
            own.commit()
    except EtlError:
        _end(own)
        raise
    except Exception as exc:
        _end(own)
        where = catalog_read.CHUNK_SQL_DIR
        raise map_db_error(exc, f"reading the rows of {len(ids)} releases ({_span(ids)}) with {where}") from exc
    return result


def _end(trans: sa.RootTransaction | None) -> None:
    if trans is not None and trans.is_active:
        try:
            trans.rollback()
        except Exception:  # the connection may be gone; the original error is the one to report
            pass


def _span(ids: Sequence[int]) -> str:
    return f"release {ids[0]}" if len(ids) == 1 else f"releases {min(ids)}..{max(ids)}"


def iter_chunks(
    engine: sa.Engine,
    cfg: ExtractConfig,
    *,
    after_key: int | None = None,
    offset: int = 0,
    start_number: int = 0,
) -> Iterator[tuple[KeyChunk, list[Release], list[ReleaseDataError]]]:
    """Page keys and fetch each chunk in this process: ``(chunk, releases, rejects)``.

    The single-process form of what the pipeline does across workers; the
    batch API, tests and the benchmark use it.
    """
    for chunk in iter_key_chunks(engine, cfg, after_key=after_key, offset=offset, start_number=start_number):
        with engine.connect() as conn:
            releases, rejects = fetch_releases(conn, cfg, chunk.release_ids)
        yield chunk, releases, rejects


_BASELINE_ARTISTS_SQL = """SELECT a.artist_id, a.name, a.isni, a.updated_at FROM artists a
WHERE a.artist_id = ANY (ARRAY(
    SELECT c.artist_id FROM track_contributors c
    WHERE c.track_id = ANY (ARRAY(SELECT t.track_id FROM tracks t WHERE t.release_id = ANY (%(release_ids)s)))
    UNION
    SELECT ra.artist_id FROM release_artists ra WHERE ra.release_id = ANY (%(release_ids)s)
))"""


def copy_baseline(engine: sa.Engine, cfg: ExtractConfig, limit: int | None = None) -> tuple[int, int, float]:
    """Raw ``COPY (...) TO STDOUT`` of the rows the extract reads, chunk by chunk: ``(releases, rows, seconds)``.

    The floor any extract can reach through this query: no Python decoding,
    no records. Paging the keys is timed too (the pipeline pays for it as
    well). ``limit`` stops after that many releases.
    """
    query = rows_query(cfg)
    if cfg.rows_query is None:
        # What the default extract reads: the table-by-table queries (artists
        # by a subquery here, where the extract passes the ids it parsed).
        pieces = catalog_read.chunk_queries()
        texts = [pieces[n] for n in ("releases", "tracks", "release_artists", "deals")] + [_BASELINE_ARTISTS_SQL]
    else:
        texts = [query.driver_sql]
    copies = [f"COPY ({t}) TO STDOUT" for t in texts]
    releases = rows = 0
    started = time.perf_counter()
    raw = engine.raw_connection()
    try:
        dbapi: psycopg.Connection[Any] = raw.driver_connection  # type: ignore[assignment]
        for chunk in iter_key_chunks(engine, cfg):
            ids = list(chunk.release_ids)
            if limit is not None:
                ids = ids[: max(0, limit - releases)]
            if not ids:
                break
            with dbapi.transaction(), dbapi.cursor() as cur:
                cur.execute(_SESSION_SETTINGS)
                # COPY takes no server-side parameters: psycopg binds the id array client-side.
                for copy_sql in copies:
                    with cur.copy(copy_sql, {"release_ids": ids}) as copy:
                        for block in copy:
                            rows += bytes(block).count(b"\n")
            releases += len(ids)
            if limit is not None and releases >= limit:
                break
    except EtlError:
        raise
    except Exception as exc:
        source = catalog_read.CHUNK_SQL_DIR if cfg.rows_query is None else query
        raise map_db_error(exc, f"copying the rows of all releases with {source}") from exc
    finally:
        raw.close()
    return releases, rows, time.perf_counter() - started
