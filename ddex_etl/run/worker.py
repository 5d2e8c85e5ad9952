"""What a worker does with one chunk: fetch its releases, build their messages, write them (files).

Runs in a worker process (local pool) or on a Dask worker: it sets itself up
once per process from a ``WorkerSpec`` (``worker_context``: a one-connection
engine, the builder's context, the extract module, the retry policy) and then
turns each ``Task`` into a ``ChunkResult``. ``run_chunk`` never raises: any
error becomes a ``ChunkFailure`` (message masked) and the run loop decides.

Extract and the builder stay separate modules (extract knows no XML, the
builder no database): only the process that runs them is shared, so row
decoding scales across cores instead of piling up in the main process.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import threading
import time
import traceback
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from sqlalchemy.engine import Engine

from .. import state
from ..db import make_engine
from ..errors import EtlError, MediaError, ReleaseDataError, TerminalError
from ..load import Output, release_identifier
from ..masking import mask_text
from ..progress import own_peak_rss_mb
from ..retry import RetryPolicy, with_retries
from ..state import claims
from .chunks import ChunkFailure, ChunkResult, Task, WorkerSpec

# What a chunk stays in while it waits long for its turn to claim (see claims.wait_for_turn).
Idle = Callable[[], AbstractContextManager[Any]]


@dataclass
class WorkerContext:
    """A worker process's set-up for one run, built once and reused for every chunk."""

    key: str
    engine: Engine
    ern_ctx: Any  # ern.BuildContext of the run's transform settings
    ern: ModuleType
    extract: ModuleType
    retry: RetryPolicy


_CONTEXT: WorkerContext | None = None
# A Dask worker may run two chunks at once in one process (one of them waiting
# for its turn, see Idle): they share the context, made once.
_CONTEXT_LOCK = threading.Lock()


def worker_context(spec: WorkerSpec) -> WorkerContext:
    """This process's context for ``spec`` (made on first use; a new spec replaces the old one)."""
    with _CONTEXT_LOCK:
        return _worker_context(spec)


def _worker_context(spec: WorkerSpec) -> WorkerContext:
    global _CONTEXT
    key = spec.key
    if _CONTEXT is not None and _CONTEXT.key == key:
        return _CONTEXT
    close_worker_context()
    from .. import ern, extract

    _CONTEXT = WorkerContext(
        key=key,
        engine=make_engine(spec.url, pool_size=1),
        ern_ctx=ern.context_from_config(spec.cfg.transform),
        ern=ern,
        extract=extract,
        retry=spec.retry,
    )
    return _CONTEXT


def close_worker_context() -> None:
    """Close this process's connections (a worker shutting down, or switching runs)."""
    global _CONTEXT
    if _CONTEXT is not None:
        ctx, _CONTEXT = _CONTEXT, None
        ctx.engine.dispose()


def run_chunk(spec: WorkerSpec, task: Task, *, idle: Idle | None = None) -> ChunkResult | ChunkFailure:
    """Fetch, build and (files) write chunk ``task``; any error comes back as a ``ChunkFailure``.

    ``idle()``: a context the chunk stays in while it waits long for the
    previous chunk's claims (see ``claims.wait_for_turn``).
    """
    try:
        return build_chunk(spec, worker_context(spec), task, idle=idle)
    except BaseException as exc:  # report anything, the run loop decides
        err = exc if isinstance(exc, EtlError) else None
        return ChunkFailure(
            number=task.number,
            kind=type(exc).__name__,
            message=mask_text(str(exc)) or type(exc).__name__,
            retryable=bool(err and err.retryable),
            output_error=type(exc).__name__ == "OutputError",
            pid=os.getpid(),
            detail="" if err else mask_text(traceback.format_exc()) or "",
        )


def build_chunk(spec: WorkerSpec, wc: WorkerContext, task: Task, *, idle: Idle | None = None) -> ChunkResult:
    """One chunk, start to end (``run_chunk`` without the error net)."""
    engine, ctx, ern, extract = wc.engine, wc.ern_ctx, wc.ern, wc.extract
    t0 = time.perf_counter()
    c0 = time.process_time()
    cfg = spec.cfg

    def fetch() -> tuple[list[Any], list[Any]]:
        with engine.connect() as conn:
            releases, bad = extract.fetch_releases(conn, cfg.extract, list(task.release_ids))
            conn.rollback()
            return list(releases), list(bad)

    releases, bad = with_retries(
        fetch, what=f"reading chunk {task.number}", policy=spec.retry
    )
    filtered = cfg.recipient is not None and bool(cfg.recipient.territories or cfg.recipient.labels)
    sent: dict[int, state.Sent] = {}
    if task.skip_unchanged or filtered or task.report_missing:

        def read_sent() -> dict[int, state.Sent]:
            with engine.connect() as conn:
                found = state.last_sent(conn, task.state_schema, task.job, list(task.release_ids))
                conn.rollback()
                return found

        sent = with_retries(
            read_sent, what=f"reading what was delivered of chunk {task.number}",
            policy=spec.retry,
        )
    last_sums = {rid: s.checksum for rid, s in sent.items()} if task.skip_unchanged else {}
    rejects: list[state.RejectRecord] = [_reject_from(b, "extract") for b in bad]
    if task.report_missing:
        rejects.extend(_not_found(task, releases, bad, sent))
    leaving: set[int] = set()
    if filtered:
        assert cfg.recipient is not None
        # Releases not for this store (territory or label filter) count as skipped, unless the
        # store was sent one and never a takedown: it left the filter, and the store takes it down.
        kept = []
        for r in releases:
            if cfg.recipient.matches(r):
                kept.append(r)
            elif (s := sent.get(int(r.release_id))) is not None and s.live:
                kept.append(r)
                leaving.add(int(r.release_id))
        releases = kept
    releases, duplicates = _claim_identifiers(spec, engine, task, releases, idle)
    rejects += duplicates
    t_fetched = time.perf_counter()
    c_fetched = time.process_time()
    if task.run_started is not None:
        ctx = ctx.for_delivery(task.delivery_id or f"run{task.run_id}", task.run_started)
    outputs: list[Output] = []
    # Files: each document goes to its temp file as soon as it is built, so a
    # worker never holds a whole chunk of XML; they all appear at commit().
    chunk = task.loader.open_chunk(task.release_ids[0] if task.release_ids else None) if task.loader is not None else None
    built = takedowns = unchanged = 0
    delivered: list[tuple[int, str, str, str]] = []
    warnings: list[str] = []
    media_root = None
    stream_media = False  # a remote target: media go from the media root to it at upload, not into the batch
    batch = chunk is not None and chunk.loader.layout == "ddex-batch"
    if batch and cfg.load.media_root:
        from ..delivery import media

        media_root = media.media_root(cfg.load.media_root)
        stream_media = cfg.recipient is not None and media.streams_media(cfg.recipient.target)
    # The recipient's media rules, and the technical details read from the files, before the build.
    from ..delivery import media_checks

    policy = media_checks.MediaPolicy(
        require_media=cfg.load.require_media,
        min_cover_px=cfg.load.min_cover_px,
        root=media_root,
        max_bytes=cfg.load.max_media_bytes,
        batch_without_media=batch and media_root is None,
        allow_unverified=cfg.load.allow_unverified_media,
        recipient=cfg.recipient.name if cfg.recipient is not None else None,
    )
    try:
        for release in releases:
            take_down = int(release.release_id) in leaving or (
                task.takedowns and is_takedown(release, task.ended_before)
            )
            planned: list[Any] = []
            checked = media_checks.check_media(release, policy, takedown=take_down)
            release = checked.release
            if checked.problems:
                rejects.append(_media_reject(release, MediaError(release.release_id, checked.problems), "transform"))
                continue
            warnings.extend(checked.warnings)
            if media_root is not None:
                release, planned, media_problems = media.with_resource_uris(release)
                if media_problems:
                    rejects.append(_media_reject(release, MediaError(release.release_id, media_problems), "transform"))
                    continue
            try:
                doc = ern.build_takedown(release, ctx) if take_down else ern.build(release, ctx)
            except ReleaseDataError as exc:
                rejects.append(
                    state.RejectRecord(
                        release_id=int(release.release_id),
                        stage="transform",
                        error_kind=type(exc).__name__,
                        message=str(exc),
                        retryable=False,
                        input={"problems": _problems(exc), "release": _snapshot(release)},
                    )
                )
                continue
            warnings.extend(doc.warnings)
            if last_sums.get(int(release.release_id)) == doc.body_checksum:
                unchanged += 1  # the same message as last delivered, header aside: not delivered again
                continue
            out_one = Output(doc, release_identifier(release.release_id, release.icpn, release.grid))
            if planned:
                assert chunk is not None and media_root is not None
                try:
                    if stream_media:
                        assert cfg.load.media_root is not None
                        copied = media.note_media(chunk, out_one.identifier, int(release.release_id), planned,
                                                  media_root, cfg.load.media_root, max_bytes=cfg.load.max_media_bytes,
                                                  allow_unverified=cfg.load.allow_unverified_media)
                    else:
                        copied = media.copy_media(chunk, out_one.identifier, int(release.release_id), planned,
                                                  media_root, max_bytes=cfg.load.max_media_bytes,
                                                  allow_unverified=cfg.load.allow_unverified_media)
                except MediaError as exc:
                    rejects.append(_media_reject(release, exc, "load"))
                    continue
                warnings.extend(
                    f"release {release.release_id}: {c.field} {c.source!r} went into the batch unverified (no MD5 "
                    f"in the catalog; allow_unverified_media = true): {media_root.path(c.source)}"
                    for c in copied if not c.verified
                )
            if chunk is not None:
                chunk.add(out_one)
            else:
                outputs.append(out_one)
            delivered.append((int(release.release_id), doc.body_checksum, doc.kind, out_one.identifier))
            if take_down:
                takedowns += 1
            else:
                built += 1
        t_built = time.perf_counter()
        c_built = time.process_time()
        if chunk is not None:
            _check_attempt(spec, engine, task)  # a zombie of an earlier attempt renames nothing
        written = chunk.commit() if chunk is not None else []
    finally:
        if chunk is not None:
            chunk.abort()
    found = {int(r.release_id) for r in releases} | {r.release_id for r in rejects}
    skipped = sum(1 for rid in task.release_ids if int(rid) not in found)  # vanished since the key page
    out: list[Output] | None = None if chunk is not None else outputs
    return ChunkResult(
        number=task.number,
        outputs=out,
        written=written,
        rejects=rejects,
        built=built,
        skipped=skipped,
        pid=os.getpid(),
        peak_rss_mb=own_peak_rss_mb(),
        seconds=time.perf_counter() - t0,
        fetch_seconds=t_fetched - t0,
        build_seconds=t_built - t_fetched,
        write_seconds=time.perf_counter() - t_built,
        fetch_cpu=c_fetched - c0,
        build_cpu=c_built - c_fetched,
        write_cpu=time.process_time() - c_built,
        takedowns=takedowns,
        unchanged=unchanged,
        delivered=delivered,
        warnings=warnings,
    )



def _check_attempt(spec: WorkerSpec, engine: Engine, task: Task) -> None:
    """Raise when the run was started again since ``task`` was handed out (the task is a zombie).

    Dask cannot cancel a running task: one whose coordinator died goes on
    after ``etl resume`` started the next attempt, which redoes the chunk. The
    bytes would be the same, but the zombie could write them after that
    attempt settled the chunk (a pending list left over, files after
    BatchComplete), so it stops here, leaving nothing.
    """
    if not task.attempt:
        return

    def read() -> int | None:
        with engine.connect() as conn:
            found = state.run_attempt(conn, task.state_schema, task.run_id)
            conn.rollback()
            return found

    now = with_retries(read, what=f"checking chunk {task.number}'s run attempt", policy=spec.retry)
    if now != task.attempt:
        raise TerminalError(
            f"chunk {task.number} of run {task.run_id} belongs to attempt {task.attempt}, but the run is at "
            f"attempt {now}: a task that outlived its `etl run`; nothing written (the current attempt redoes it)"
        )


def _media_reject(release: Any, exc: MediaError, stage: str) -> state.RejectRecord:
    """A release whose audio or cover cannot go into the batch (missing, wrong MD5, unsafe path)."""
    return state.RejectRecord(
        release_id=int(release.release_id),
        stage=stage,
        error_kind=type(exc).__name__,
        message=str(exc),
        retryable=False,
        input={"problems": _problems(exc)},
    )


def _claim_identifiers(
    spec: WorkerSpec, engine: Engine, task: Task, releases: list[Any], idle: Idle | None = None
) -> tuple[list[Any], list[state.RejectRecord]]:
    """Claim the chunk's ICPNs and GRids in chunk order, and list its ISRCs (see ``ddex_etl.state.claims``).

    Returns the releases to build and the rejects of releases whose ICPN or
    GRid an earlier release of the run has.
    """

    def attempt() -> list[claims.Clash]:
        claims.wait_for_turn(engine, task.state_schema, task.run_id, task.number, idle=idle)
        with engine.begin() as conn:
            return claims.claim(
                conn, task.state_schema, run_id=task.run_id, scope=task.claim_scope, chunk=task.number,
                releases=releases,
            )

    clashes = with_retries(attempt, what=f"claiming the identifiers of chunk {task.number}", policy=spec.retry)
    if not clashes:
        return releases, []
    by_release: dict[int, list[claims.Clash]] = {}
    for c in clashes:
        by_release.setdefault(c.release_id, []).append(c)
    rejects = []
    for release in releases:
        mine = by_release.get(int(release.release_id))
        if mine:
            rejects.append(
                state.RejectRecord(
                    release_id=int(release.release_id),
                    stage="transform",
                    error_kind=claims.DUPLICATE_KIND,
                    message="; ".join(c.message() for c in mine),
                    retryable=False,
                    input={"duplicates": [c.as_json() for c in mine], "release": _snapshot(release)},
                )
            )
    return [r for r in releases if int(r.release_id) not in by_release], rejects


def is_takedown(release: Any, ended_before: dt.date | None) -> bool:
    """True when ``release`` should be withdrawn: deleted, or every deal ended before ``ended_before``."""
    if getattr(release, "deleted_at", None) is not None:
        return True
    deals = getattr(release, "deals", ()) or ()
    if ended_before is None or not deals:
        return False
    return all(d.end_date is not None and d.end_date < ended_before for d in deals)


def _not_found(
    task: Task, releases: list[Any], bad: list[Any], sent: dict[int, state.Sent]
) -> list[state.RejectRecord]:
    """Rejects for asked-for ids the rows query returned nothing for (one the store still has: named so)."""
    from .orphans import orphan_reject

    wanted = task.release_ids
    found = {int(r.release_id) for r in releases}
    found.update(int(b.release_id) for b in bad if getattr(b, "release_id", None) is not None)
    orphans = [
        orphan_reject(sent[int(i)], task.job, task.state_schema)
        for i in wanted if int(i) not in found and int(i) in sent and sent[int(i)].live
    ]
    found.update(o.release_id for o in orphans)
    return orphans + [
        state.RejectRecord(
            release_id=int(i),
            stage="extract",
            error_kind="NotFound",
            message=(
                f"release {i}: not found in the catalog (the rows query returned no row for it); "
                "fix: check the id given to --release-id, or that the release exists in the catalog"
            ),
            retryable=False,
        )
        for i in wanted
        if int(i) not in found
    ]


def _reject_from(bad: Any, stage: str) -> state.RejectRecord:
    """A rejection from extract (a ReleaseDataError, or a (release_id, error) pair)."""
    if isinstance(bad, tuple) and len(bad) == 2:
        rid, exc = bad
    else:
        rid, exc = getattr(bad, "release_id", None), bad
    snapshot: dict[str, Any] = {}
    if isinstance(exc, ReleaseDataError):
        snapshot["problems"] = _problems(exc)
    raw = getattr(exc, "rows", None) or getattr(exc, "input", None)
    if raw is not None:
        snapshot["rows"] = _snapshot(raw)
    return state.RejectRecord(
        release_id=int(rid) if rid is not None else -1,
        stage=stage,
        error_kind=type(exc).__name__,
        message=str(exc),
        retryable=bool(getattr(exc, "retryable", False)),
        input=snapshot or None,
    )


# --------------------------------------------------------------------------- the runner


def _snapshot(obj: Any) -> Any:
    """A JSON-able copy of a record (enough of the input to reproduce a rejection)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        try:
            return json.loads(json.dumps(dataclasses.asdict(obj), default=str))
        except (TypeError, ValueError):
            return {"repr": repr(obj)[:10_000]}
    return obj


def _problems(exc: ReleaseDataError) -> list[dict[str, Any]]:
    return [
        {"field": p.field, "value": repr(p.value)[:500], "problem": p.problem, "fix": p.fix}
        for p in getattr(exc, "problems", ())
    ]


# --------------------------------------------------------------------------- worker side
