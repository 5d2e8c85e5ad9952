"""The run: page keys, build in worker processes, load, checkpoint; resume after anything.

Shape of a run (one process per core does the heavy lifting)::

    main process                         worker processes (fork / forkserver)
    ------------                         ------------------------
    iter_key_chunks (keys only) ──task──> fetch_releases(chunk)   (extract: rows -> records)
      at most `workers` chunks            ern.build(release)      (transform: records -> bytes)
      in flight                           files: write atomically (load, in the worker)
    <──────────── result: documents (table) or names + checksums (files), rejects
    commit each result as it arrives: table rows + rejects + checkpoint in ONE
    transaction; for files, only once the chunk's files are durable.

The checkpoint is the last contiguous chunk fully loaded (keyset: its last key;
offset: the next offset) plus the chunks loaded ahead of it: a worker that
finishes chunk N+1 before another finishes chunk N gets its next chunk at once
instead of waiting, and when N is loaded the checkpoint joins up with N+1. At
most ``workers`` chunks are ever handed out and not yet loaded, so a resume
after a crash redoes at most one chunk per worker: it pages again from the
contiguous point and leaves out the ids of the chunks loaded ahead. Redone
work is idempotent (upsert by release id, atomic replace of identical bytes).

A worker process calls extract and then the builder: the modules stay separate
(extract knows no XML, the builder no database), only the process that runs
them is shared, so row decoding scales across cores instead of piling up in the
main process. The price: each worker holds its own small connection pool, and
the chunk's rows never cross a process boundary (only keys go out; names and
checksums, or documents for the table target, come back).
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import multiprocessing as mp
import os
import queue
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from . import claims, logs, state
from .config import Config
from .masking import mask_text
from .db import database_url, make_engine, map_db_error
from .errors import (
    ConfigError,
    EtlError,
    ExitCode,
    InterruptedRun,
    LockHeldError,
    MediaError,
    ReleaseDataError,
    TerminalError,
    TransientError,
)
from .load import FileLoader, Loader, Output, Written, loader_for, new_batch_id, release_identifier
from .procs import can_fork, pid_alive
from .joblock import ACTIVE_RUNS, JobLock, host, job_lock_key, runner_alive
from .retry import RetryPolicy, with_retries
from .progress import Reporter, children_peak_rss_mb, own_peak_rss_mb, reporter_for
from .run_selection import Selection, select_run

log = logging.getLogger("ddex_etl.pipeline")

T = TypeVar("T")

# Seconds to wait for chunks already in a worker's hands after the first Ctrl-C
# before abandoning them (they are redone on resume either way).
DRAIN_SECONDS = 15.0
HEARTBEAT_SECONDS = 5.0
# Data warnings logged at WARNING per run before the rest go to INFO; shared ISRCs listed.
NOTES_LOGGED = 50


# --------------------------------------------------------------------------- reports


@dataclass(frozen=True)
class RunReport:
    """What a run did; ``summary()`` is what the CLI prints."""

    run_id: int
    job: str
    status: str
    mode: str
    built: int
    rejected: int
    skipped: int
    seconds: float
    releases_per_second: float
    peak_memory_mb: float
    target: str
    output: str | None = None
    batch_id: str | None = None
    attempts: int = 1
    chunks_redone: int = 0
    resumed: bool = False
    error: str | None = None
    # this attempt only (a resumed run's totals include earlier attempts)
    attempt_releases: int = 0
    attempt_seconds: float = 0.0
    # peak_memory_mb = main + each worker's peak RSS (shared pages counted in each)
    main_peak_mb: float = 0.0
    worker_peak_mb: tuple[float, ...] = ()
    # this attempt's worker time by stage (summed over workers), for tuning
    stage_seconds: dict[str, float] = field(default_factory=dict)
    # incremental sync: takedown messages delivered, rebuilt documents identical to
    # the last delivery (not written again), and the window the run covered
    takedowns: int = 0
    unchanged: int = 0
    watermark_from: dt.datetime | None = None
    watermark_to: dt.datetime | None = None
    # the builder's warnings in this attempt: values transform.repair cleaned, deals that
    # look wrong (each logged with its release and field)
    data_warnings: int = 0
    # ISRCs on more than one release of the run (listed in the log when it succeeds)
    shared_isrcs: int = 0
    # the job's unfinished run this one superseded (run_id, mode, status, reason), if any
    superseded: dict[str, Any] | None = None
    # the upload of the batch to the recipient's target (see ddex_etl.deliver), when it has one
    delivery: dict[str, Any] | None = None

    @property
    def exit_code(self) -> int:
        """0 when everything was built, ExitCode.REJECTED when some releases were rejected, …"""
        if self.status == "interrupted":
            return ExitCode.INTERRUPTED
        if self.status in ("failed", "running"):
            return ExitCode.FAILED
        return ExitCode.REJECTED if self.rejected else ExitCode.OK

    def summary(self, with_error: bool = True) -> str:
        """A few human lines: counts, time, throughput, peak memory, where the output went.

        ``with_error=False`` leaves the error out (for a caller that prints it itself).
        """
        verb = {"succeeded": "finished", "failed": "failed", "interrupted": "was interrupted"}.get(
            self.status, self.status
        )
        resumed = f", resumed (attempt {self.attempts})" if self.resumed else ""
        lines = [
            f"run {self.run_id} of job {self.job!r} {verb}{resumed}",
            f"  built {self.built:,}, rejected {self.rejected:,}, skipped {self.skipped:,}"
            + (f", takedowns {self.takedowns:,}, unchanged {self.unchanged:,}" if self.mode != "full" else ""),
            f"  time {self.seconds:,.1f} s, {self.releases_per_second:,.0f} releases/s, "
            f"peak memory {self.peak_memory_mb:,.0f} MB",
        ]
        if self.mode in ("incremental", "targeted") and self.watermark_to is not None:
            since = self.watermark_from.isoformat() if self.watermark_from else "the beginning"
            lines.append(f"  window: changes after {since} up to {self.watermark_to.isoformat()}")
        if self.superseded:
            old = self.superseded
            lines.append(
                f"  superseded run {old['run_id']} ({old['mode']}, {old['status']}): {old['reason']}; "
                f"resume it with `etl resume {old['run_id']}`"
            )
        if self.output:
            lines.append(f"  output: {self.output}")
        if self.delivery:
            d = self.delivery
            lines.append(
                f"  delivered to {d['target']}: {d['uploaded']:,} files uploaded ({d['bytes'] / 1e6:,.1f} MB), "
                f"{d['skipped']:,} already there, batch {'complete' if d['complete'] else 'NOT complete'}"
            )
        if self.data_warnings:
            lines.append(f"  {self.data_warnings:,} data warnings (repaired values, deals to check; each is in the log)")
        if self.shared_isrcs:
            lines.append(f"  {self.shared_isrcs:,} ISRCs are on more than one release (listed in the log)")
        if self.rejected:
            lines.append(f"  see the rejected releases with `etl errors {self.run_id}`")
        if self.error and with_error:
            lines.append(f"  error: {self.error}")
        if self.status in ("failed", "interrupted"):
            lines.append(f"  resume with `etl resume {self.run_id}`")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (for ``etl run --json``)."""
        data = dataclasses.asdict(self)
        data["exit_code"] = self.exit_code
        data["window"] = {
            "from": self.watermark_from.isoformat() if self.watermark_from else None,
            "to": self.watermark_to.isoformat() if self.watermark_to else None,
        }
        return data


@dataclass(frozen=True)
class RunInfo:
    """One run, for ``etl runs`` and ``etl status``."""

    run_id: int
    job: str
    status: str
    mode: str
    started_at: dt.datetime
    finished_at: dt.datetime | None
    built: int
    rejected: int
    skipped: int
    seconds: float | None
    releases_per_second: float | None
    peak_memory_mb: float | None
    attempts: int
    chunks_redone: int
    target: str
    output: str | None
    batch_id: str | None
    error: str | None
    watermark_from: dt.datetime | None = None
    watermark_to: dt.datetime | None = None
    source_run_id: int | None = None
    takedowns: int = 0
    unchanged: int = 0

    @classmethod
    def from_row(cls, r: state.RunRow) -> RunInfo:
        return cls(
            run_id=r.id,
            job=r.job,
            status=r.status,
            mode=r.mode,
            started_at=r.started_at,
            finished_at=r.finished_at,
            built=r.built,
            rejected=r.rejected,
            skipped=r.skipped,
            seconds=r.seconds,
            releases_per_second=r.releases_per_second,
            peak_memory_mb=r.peak_memory_mb,
            attempts=r.attempts,
            chunks_redone=r.chunks_redone,
            target=r.target,
            output=r.output,
            batch_id=r.batch_id,
            error=r.error,
            watermark_from=r.watermark_from,
            watermark_to=r.watermark_to,
            source_run_id=r.source_run_id,
            takedowns=r.takedowns,
            unchanged=r.unchanged,
        )


@dataclass(frozen=True)
class JobStatus:
    """Per job: its newest run and its newest successful run."""

    job: str
    last_run: RunInfo | None
    last_success: RunInfo | None
    # The newest run says "running" but its runner is gone (killed, or it failed
    # while the database was down and could not record it): the next `etl run`
    # of the job marks it failed and continues it.
    note: str | None = None

    @property
    def status(self) -> str:
        if self.last_run is None:
            return "never run"
        return "stalled" if self.note else self.last_run.status


@dataclass(frozen=True)
class RejectedRelease:
    """A release a run could not build or load, for ``etl errors``."""

    run_id: int
    release_id: int
    stage: str
    error_kind: str
    message: str
    retryable: bool
    attempts: int
    input: Any
    created_at: dt.datetime
    resolved_at: dt.datetime | None
    resolved_by_run: int | None


class RunFailed(EtlError):
    """The run stopped: too many rejected releases, or fail_fast met a rejected release."""


# --------------------------------------------------------------------------- helpers

def mask(text: str | None) -> str | None:
    """``text`` with every password masked (for logs, errors and the state tables)."""
    return mask_text(text)


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


@dataclass(frozen=True)
class _Task:
    number: int
    release_ids: tuple[int, ...]
    last_key: int | None
    next_offset: int
    loader: FileLoader | None = None  # set when the worker writes the chunk's files itself
    # incremental/targeted runs: deleted releases, and releases whose deals all
    # ended before this date, become takedowns
    takedowns: bool = False
    ended_before: dt.date | None = None
    # skip documents identical to the job's last delivery (delivered table)
    skip_unchanged: bool = False
    job: str = ""
    state_schema: str = ""
    # The delivery the documents belong to: MessageId derives from the run id
    # and MessageCreatedDateTime is the run's frozen start, so a resumed run
    # writes the same bytes and a new run (or --force) gets new message ids.
    run_id: int = 0
    run_started: dt.datetime | None = None
    # identifiers are claimed per run, in chunk order (see ddex_etl.claims); a
    # retry run claims in the scope of the run it retries
    claim_scope: int = 0
    # ids asked for by name (--release-id, a retry): one the catalog does not have is a reject
    report_missing: bool = False


@dataclass
class _ChunkResult:
    number: int
    outputs: list[Output] | None  # documents, when the main process loads them (table)
    written: list[Written]  # what the worker wrote itself (files)
    rejects: list[state.RejectRecord]
    built: int
    skipped: int
    pid: int
    peak_rss_mb: float
    seconds: float
    fetch_seconds: float = 0.0  # extract: query + rows -> records
    build_seconds: float = 0.0  # transform (and, for files, the temp-file writes)
    write_seconds: float = 0.0  # files: sync + renames
    # the same stages in this worker's CPU time: wall minus CPU is waiting (on
    # the database, the disk, or a core busy elsewhere)
    fetch_cpu: float = 0.0
    build_cpu: float = 0.0
    write_cpu: float = 0.0
    takedowns: int = 0
    unchanged: int = 0
    delivered: list[tuple[int, str, str, str]] = field(default_factory=list)  # (release_id, body checksum, kind, folder)
    warnings: list[str] = field(default_factory=list)  # the builder's, per release (repairs, deal sanity)


@dataclass
class _ChunkFailure:
    number: int
    kind: str
    message: str
    retryable: bool
    output_error: bool
    pid: int
    detail: str = ""


@dataclass(frozen=True)
class _WorkerSpec:
    url: str
    cfg: Config
    main_pid: int
    retry: RetryPolicy


def _set_parent_death_signal() -> None:
    """Linux: the kernel kills this worker when the main process dies (even by SIGKILL)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - best effort; the ppid poll covers the rest
        pass


def _watch_main(main_alive: Any) -> None:
    """Worker thread: exit at once when the main process dies (SIGKILL included).

    ``main_alive`` is the read end of a pipe whose only write end lives in the
    main process: it reads EOF the moment the main process is gone, even while
    it is an unreaped zombie. (Under the fork server the kernel's parent-death
    signal watches the fork server, not the main process, and a worker
    mid-chunk would otherwise go on writing files a resumed run is rewriting.)
    """
    from multiprocessing.connection import wait

    while True:
        if wait([main_alive], timeout=None):
            try:
                main_alive.recv_bytes()
            except (EOFError, OSError):
                os._exit(1)


def _mp_context() -> Any:
    """How worker processes start.

    ``fork`` while this process runs a single Python thread (Linux): a worker
    is running within milliseconds, with every module the main process
    already imported, and none of the main process's database connections
    are open yet (the pool starts before any). Otherwise the fork server: it
    imports the worker's modules once and forks each worker from a clean,
    single-threaded process (a fork of a threaded process could inherit a lock
    held by another thread, forever). ``spawn`` where neither exists. Scripts
    that call ``run`` need the usual ``if __name__ == "__main__":`` guard for
    the last two.
    """
    if can_fork():
        return mp.get_context("fork")
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(list(_WORKER_MODULES))
        return ctx
    return mp.get_context("spawn")


_WORKER_MODULES = ("ddex_etl.pipeline", "ddex_etl.ern", "ddex_etl.extract")


def _worker_main(spec: _WorkerSpec, tasks: Any, results: Any, main_alive: Any, inherited: Any = None) -> None:
    """Worker process: fetch, build and (files) write one chunk at a time until told to stop.

    ``inherited``: under ``fork``, the main process's write end of the
    ``main_alive`` pipe, which the fork copied; closed first thing, or the
    pipe would never read EOF.
    """
    if inherited is not None:
        inherited.close()
    # The parent coordinates Ctrl-C / SIGTERM; a worker finishes or is killed.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _set_parent_death_signal()
    parent = os.getppid()  # the fork server (or the main process under spawn)
    if not pid_alive(spec.main_pid):
        os._exit(0)
    # Results are only useful to a live main process: never block exit on flushing them.
    results.cancel_join_thread()
    threading.Thread(target=_watch_main, args=(main_alive,), name="etl-watchdog", daemon=True).start()
    from . import ern, extract

    engine = make_engine(spec.url, pool_size=1)
    ctx = ern.context_from_config(spec.cfg.transform)
    try:
        while True:
            try:
                task = tasks.get(timeout=1.0)
            except queue.Empty:
                if os.getppid() != parent or not pid_alive(spec.main_pid):
                    os._exit(0)  # orphaned: the main process is gone
                continue
            if task is None:
                return
            try:
                results.put(_do_chunk(spec, engine, ctx, ern, extract, task))
            except BaseException as exc:  # report anything, the parent decides
                err = exc if isinstance(exc, EtlError) else None
                results.put(
                    _ChunkFailure(
                        number=task.number,
                        kind=type(exc).__name__,
                        message=mask(str(exc)) or type(exc).__name__,
                        retryable=bool(err and err.retryable),
                        output_error=type(exc).__name__ == "OutputError",
                        pid=os.getpid(),
                        detail="" if err else mask(traceback.format_exc()) or "",
                    )
                )
    finally:
        engine.dispose()


def _do_chunk(spec: _WorkerSpec, engine: Engine, ctx: Any, ern: Any, extract: Any, task: _Task) -> _ChunkResult:
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
    last_sums: dict[int, str] = {}
    if task.skip_unchanged:

        def sums() -> dict[int, str]:
            with engine.connect() as conn:
                found = state.delivered_checksums(conn, task.state_schema, task.job, list(task.release_ids))
                conn.rollback()
                return found

        last_sums = with_retries(
            sums, what=f"reading the delivered checksums of chunk {task.number}",
            policy=spec.retry,
        )
    rejects: list[state.RejectRecord] = [_reject_from(b, "extract") for b in bad]
    if task.report_missing:
        rejects.extend(_not_found(task.release_ids, releases, bad))
    if cfg.recipient is not None:
        # Releases not for this store (territory or label filter) count as skipped.
        releases = [r for r in releases if cfg.recipient.matches(r)]
    releases, duplicates = _claim_identifiers(spec, engine, task, releases)
    rejects += duplicates
    t_fetched = time.perf_counter()
    c_fetched = time.process_time()
    if task.run_started is not None:
        ctx = ctx.for_delivery(f"run{task.run_id}", task.run_started)
    outputs: list[Output] = []
    # Files: each document goes to its temp file as soon as it is built, so a
    # worker never holds a whole chunk of XML; they all appear at commit().
    chunk = task.loader.open_chunk(task.release_ids[0] if task.release_ids else None) if task.loader is not None else None
    built = takedowns = unchanged = 0
    delivered: list[tuple[int, str, str, str]] = []
    warnings: list[str] = []
    media_root = None
    if chunk is not None and chunk.loader.layout == "ddex-batch" and cfg.load.media_root:
        from . import media

        media_root = media.media_root(cfg.load.media_root)
    try:
        for release in releases:
            take_down = task.takedowns and is_takedown(release, task.ended_before)
            planned: list[Any] = []
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
                    media.copy_media(chunk, out_one.identifier, int(release.release_id), planned, media_root)
                except MediaError as exc:
                    rejects.append(_media_reject(release, exc, "load"))
                    continue
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
        written = chunk.commit() if chunk is not None else []
    finally:
        if chunk is not None:
            chunk.abort()
    found = {int(r.release_id) for r in releases} | {r.release_id for r in rejects}
    skipped = sum(1 for rid in task.release_ids if int(rid) not in found)  # vanished since the key page
    out: list[Output] | None = None if chunk is not None else outputs
    return _ChunkResult(
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
    spec: _WorkerSpec, engine: Engine, task: _Task, releases: list[Any]
) -> tuple[list[Any], list[state.RejectRecord]]:
    """Claim the chunk's ICPNs and GRids in chunk order, and list its ISRCs (see ``ddex_etl.claims``).

    Returns the releases to build and the rejects of releases whose ICPN or
    GRid an earlier release of the run has.
    """

    def attempt() -> list[claims.Clash]:
        claims.wait_for_turn(engine, task.state_schema, task.run_id, task.number)
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


def _ahead_entry(task: _Task) -> dict[str, Any]:
    """How the checkpoint remembers a chunk loaded ahead of it (see ``state.Checkpoint``)."""
    ids = task.release_ids
    return {"n": task.number, "lo": ids[0] if ids else None, "hi": ids[-1] if ids else None}


def _skip_passed(entry: Any, through: _Task) -> bool:
    """Whether the checkpoint, now through chunk ``through``, has left a skip entry behind."""
    if isinstance(entry, dict):
        return int(entry["chunk"]) <= through.number
    return through.last_key is not None and entry[1] <= through.last_key


def is_takedown(release: Any, ended_before: dt.date | None) -> bool:
    """True when ``release`` should be withdrawn: deleted, or every deal ended before ``ended_before``."""
    if getattr(release, "deleted_at", None) is not None:
        return True
    deals = getattr(release, "deals", ()) or ()
    if ended_before is None or not deals:
        return False
    return all(d.end_date is not None and d.end_date < ended_before for d in deals)


def _not_found(wanted: tuple[int, ...], releases: list[Any], bad: list[Any]) -> list[state.RejectRecord]:
    """Rejects for asked-for ids the rows query returned nothing for."""
    found = {int(r.release_id) for r in releases}
    found.update(int(b.release_id) for b in bad if getattr(b, "release_id", None) is not None)
    return [
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


class _Pool:
    """The worker processes of one run and their bounded queues.

    Started first thing (before migrations, the lock and the count query) so
    the workers' start-up (imports, first connection) overlaps the main
    process's setup, and no connection of the main process exists to be forked.
    """

    def __init__(self, url: str, cfg: Config, workers: int) -> None:
        ctx = _mp_context()
        self.workers = workers
        self.tasks = ctx.Queue(maxsize=workers)
        self.results = ctx.Queue()
        # Workers watch the read end; the write end never leaves this process.
        self._alive_r, self._alive_w = ctx.Pipe(duplex=False)
        forked = ctx.get_start_method() == "fork"
        spec = _WorkerSpec(
            url=url,
            cfg=cfg,
            main_pid=os.getpid(),
            retry=RetryPolicy.of(cfg.run),
        )
        self.procs: list[Any] = []
        self._stopped = False
        for i in range(workers):
            p = ctx.Process(
                target=_worker_main,
                args=(spec, self.tasks, self.results, self._alive_r, self._alive_w if forked else None),
                name=f"etl-worker-{i}",
                daemon=True,
            )
            p.start()
            self.procs.append(p)

    def kill(self) -> None:
        """From a signal handler: no joins, no locks."""
        for p in self.procs:
            with contextlib.suppress(Exception):
                p.kill()

    def stop(self, *, graceful: bool) -> None:
        """Ask the workers to finish (graceful) or kill them; close the queues. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if graceful:
            for _ in self.procs:
                with contextlib.suppress(Exception):
                    self.tasks.put(None, timeout=1.0)
            deadline = time.monotonic() + 10.0
            for p in self.procs:
                p.join(timeout=max(0.1, deadline - time.monotonic()))
        for p in self.procs:
            if p.is_alive():
                p.kill()
                p.join(timeout=5.0)
        for q in (self.tasks, self.results):
            with contextlib.suppress(Exception):
                q.cancel_join_thread()
                q.close()
        for end in (self._alive_r, self._alive_w):
            with contextlib.suppress(Exception):
                end.close()


class _Runner:
    """One attempt at one run: owns the workers, the loop, the signals and the state updates."""

    def __init__(
        self,
        cfg: Config,
        engine: Engine,
        url: str,
        lock: JobLock,
        run: state.RunRow,
        checkpoint: state.Checkpoint,
        loader: Loader,
        reporter: Reporter,
        pool: _Pool,
        *,
        resumed: bool,
        key_source: Callable[[state.Checkpoint], Iterator[Any]],
        total: int | None,
    ) -> None:
        self.cfg = cfg
        self.engine = engine
        self.url = url
        self.lock = lock
        self.run = run
        self.cp = checkpoint
        # What an earlier attempt loaded ahead of its checkpoint, not built again:
        # id ranges [lo, hi] (keys ascending), or {"chunk": n} in offset mode,
        # where a chunk's ids follow the keys query's order, not an id range.
        self.skip: list[Any] = [r if isinstance(r, dict) else list(r) for r in checkpoint.skip]
        self.loader = loader
        self.reporter = reporter
        self.resumed = resumed
        self.key_source = key_source
        self.total = total
        self.schema = cfg.database.state_schema
        self.pool = pool
        self.retry = RetryPolicy.of(cfg.run)
        # whose identifier claims count: a retry keeps those of the run it retries
        self.claim_scope = run.source_run_id if run.mode == "retry" and run.source_run_id else run.id
        self.workers = pool.workers
        self.signals = 0
        self.built = run.built
        self.rejected = run.rejected
        self.skipped = run.skipped
        self.takedowns = run.takedowns
        self.unchanged = run.unchanged
        self.attempt_releases = 0
        self.data_warnings = 0
        self.shared_isrcs = 0
        self.worker_rss: dict[int, float] = {}
        self.stage_seconds = {
            "fetch": 0.0, "build": 0.0, "write": 0.0, "worker": 0.0, "fetch_cpu": 0.0, "build_cpu": 0.0, "write_cpu": 0.0,
        }
        self.procs = pool.procs
        self.delivery: dict[str, Any] | None = None  # what the upload to the recipient's target did
        self.t0 = time.monotonic()
        self._old_handlers: dict[int, Any] = {}

    def _drop_empty_batch(self) -> bool:
        """An incremental run that delivered nothing leaves no (empty) ddex-batch folder behind:
        a store would otherwise receive an empty batch every quiet night."""
        loader = self.loader
        if self.run.mode not in ("incremental", "targeted") or self.built + self.takedowns:
            return False
        if not isinstance(loader, FileLoader) or loader.batch_complete_path is None:
            return False
        root = loader.root
        if not root.is_dir() or any(p.is_file() for p in root.rglob("*")):
            return False
        import shutil

        shutil.rmtree(root, ignore_errors=True)
        return True

    def _deliver(self) -> None:
        """The local batch is whole: upload it to the recipient's target (resumable; see ddex_etl.deliver)."""
        recipient = self.cfg.recipient
        if recipient is None or recipient.target is None or not isinstance(self.loader, FileLoader):
            return
        from .deliver import deliver_batch

        self.delivery = deliver_batch(recipient, self.loader.root, run_id=self.run.id).as_dict()

    def _close_claims(self) -> None:
        """The run is loaded: list the ISRCs found on several of its releases, then drop its claims."""

        def tx() -> tuple[int, list[tuple[str, list[int]]]]:
            with self.engine.begin() as conn:
                found = claims.shared_isrcs(conn, self.schema, self.claim_scope, limit=NOTES_LOGGED)
                claims.forget(conn, self.schema, self.claim_scope)
                return found

        self.shared_isrcs, listed = with_retries(tx, what="closing the run's identifier claims", policy=self.retry)
        for isrc, releases in listed:
            log.warning("shared ISRC: %s is on releases %s (normal for a recording on a single and its album; "
                        "check that it is the same recording)", isrc, ", ".join(map(str, releases)))
        if self.shared_isrcs > len(listed):
            log.warning("shared ISRC: %d more ISRCs are on more than one release of this run",
                        self.shared_isrcs - len(listed))

    def _seen(self) -> int:
        return self.built + self.rejected + self.skipped + self.takedowns + self.unchanged

    # ---- signals

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.signals += 1
        if self.signals == 1:
            log.warning("signal %d: stopping after the chunks in hand; Ctrl-C again to exit at once", signum)
            return
        # Second signal: exit now, best effort to leave the run marked interrupted.
        self.pool.kill()
        with contextlib.suppress(Exception):
            _mark_interrupted_now(self.url, self.schema, self.run.id, _OWN_BACKENDS)
        _hard_exit({"run_id": self.run.id, "job": self.run.job, "mode": self.run.mode})

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old_handlers[sig] = signal.signal(sig, self._on_signal)

    def _restore_signals(self) -> None:
        for sig, old in self._old_handlers.items():
            with contextlib.suppress(Exception):
                signal.signal(sig, old)
        self._old_handlers.clear()

    # ---- the loop

    def execute(self) -> RunReport:
        self._install_signals()
        graceful = False
        status = "failed"
        error: BaseException | None = None
        try:
            self.reporter.start(self.total, self._seen())
            finished = self._loop(self.pool.tasks, self.pool.results)
            if finished:
                if not self._drop_empty_batch():
                    self.loader.finish(resumed=self.resumed or self.run.attempts > 1)
                    self._deliver()
                self._close_claims()
                status = "succeeded"
            else:
                status = "interrupted"
            graceful = True
        except KeyboardInterrupt:  # no handler outside the main thread
            status = "interrupted"
        except BaseException as exc:
            error = exc
            status = "failed"
        finally:
            self.reporter.stop()
            self.pool.stop(graceful=graceful)
        report = self._close(status, error)
        if self.signals and self._old_handlers:
            # Stopped by Ctrl-C / SIGTERM: the run is marked interrupted now, so
            # another one (the "second Ctrl-C", landing while the caller is on
            # its way out) exits at once with the interrupted code, as it would
            # have during the run, instead of raising into the caller's exit.
            for sig in self._old_handlers:
                with contextlib.suppress(Exception):
                    signal.signal(sig, _exit_interrupted)
            self._old_handlers.clear()
        self._restore_signals()
        if status == "interrupted":
            raise _attach(InterruptedRun(
                f"run {self.run.id} of job {self.run.job!r} interrupted after {self.built:,} releases; "
                f"resume with `etl resume {self.run.id}`"
            ), report)
        if error is not None:
            if isinstance(error, EtlError):
                raise _attach(error, report)
            raise _attach(TerminalError(
                f"run {self.run.id} of job {self.run.job!r} failed: {mask(str(error)) or type(error).__name__}; "
                f"resume with `etl resume {self.run.id}`"
            ), report) from error
        return report

    def _loop(self, tasks: Any, results: Any) -> bool:
        """Dispatch and commit until done (True) or stopped by a signal (False)."""
        cap = self.workers
        in_flight: dict[int, _Task] = {}
        pending: dict[int, _ChunkResult] = {}
        next_commit = self.cp.chunks_done
        dispatched = self.cp.chunks_done
        loaded_ahead: dict[int, _Task] = {}  # chunks loaded beyond next_commit, by number
        keys = self._keys(self.cp)
        exhausted = False
        last_paged: _Task | None = None
        # The next chunk's keys, paged while the workers are busy so that a
        # free worker gets its next chunk without waiting for that query.
        # Paged is not handed out: only dispatched chunks count against the cap.
        paged_next: _Task | None = None
        last_beat = time.monotonic()
        drain_deadline: float | None = None
        run_cfg = self.cfg.run

        def page() -> _Task | None:
            nonlocal keys, last_paged

            def next_task() -> _Task | None:
                nonlocal keys
                try:
                    return self._next_key_chunk(keys)
                except TransientError:
                    # The pager is dead; the retry re-opens it after the last chunk it gave.
                    keys = self._keys_after(last_paged)
                    raise

            task = with_retries(
                next_task,
                what="paging release keys",
                policy=self.retry,
            )
            if task is not None:
                last_paged = task
            return task

        while True:
            if self.signals and drain_deadline is None:
                drain_deadline = time.monotonic() + DRAIN_SECONDS
            # Fill every free worker slot.
            while not self.signals and not exhausted and len(in_flight) < cap:
                task, paged_next = (paged_next, None) if paged_next is not None else (page(), None)
                if task is None:
                    exhausted = True
                    break
                dispatched = task.number + 1
                self.lock.execute(
                    lambda c, n=dispatched: state.mark_dispatched(c, self.schema, self.run.id, n),
                    what="recording the chunks handed to workers",
                    policy=self.retry,
                )
                tasks.put(task)
                in_flight[task.number] = task
                log.debug("chunk %d handed to a worker: %d releases (ids %s)", task.number, len(task.release_ids),
                          _id_span(task.release_ids), extra={"fields": {"chunk": task.number}})
            if not in_flight:
                return exhausted or not self.signals
            if drain_deadline is not None and time.monotonic() > drain_deadline:
                log.warning("abandoning %d chunk(s) in hand; they are redone on resume", len(in_flight))
                return False
            if pending:
                # One chunk at a time, refilling in between: the worker that
                # is waiting gets its next chunk before the next commit.
                number = min(pending)
                result = pending.pop(number)
                task = in_flight[number]
                if number == next_commit:
                    # Contiguous: the checkpoint moves past it and past every
                    # chunk already loaded ahead that it now joins up with.
                    through, n = task, number + 1
                    while n in loaded_ahead:
                        through, n = loaded_ahead[n], n + 1
                    joined = n > number + 1
                    left = [_ahead_entry(t) for k, t in sorted(loaded_ahead.items()) if k >= n] if joined else None
                    skip = [r for r in self.skip if not _skip_passed(r, through)]
                    self._commit(task, result, through, left, skip if skip != self.skip else None)
                    for k in range(number + 1, n):
                        del loaded_ahead[k]
                    self.skip = skip
                    next_commit = n
                else:
                    # A later chunk finished first: load it now and record it
                    # as loaded ahead, so its worker can take the next chunk
                    # instead of waiting for the slower one.
                    self._commit(task, result)
                    loaded_ahead[number] = task
                del in_flight[number]
                last_beat = time.monotonic()
                self._check_thresholds(result)
                self.reporter.update(self._seen(), self.rejected)
                continue
            if paged_next is None and not exhausted and not self.signals:
                paged_next = page()
                exhausted = paged_next is None
            try:
                msg = results.get(timeout=0.5)
            except queue.Empty:
                self._check_workers()
                if time.monotonic() - last_beat > HEARTBEAT_SECONDS:
                    self._heartbeat()
                    last_beat = time.monotonic()
                self.reporter.update(self._seen(), self.rejected)
                continue
            if isinstance(msg, _ChunkFailure):
                raise self._worker_failed(msg)
            self.worker_rss[msg.pid] = max(self.worker_rss.get(msg.pid, 0.0), msg.peak_rss_mb)
            pending[msg.number] = msg

    def _keys(self, cp: state.Checkpoint) -> Iterator[Any]:
        return self.key_source(cp)

    def _keys_after(self, last: _Task | None) -> Iterator[Any]:
        if last is None:
            return self.key_source(self.cp)
        resume_at = state.Checkpoint(
            run_id=self.run.id,
            last_key=last.last_key,
            next_offset=last.next_offset,
            chunks_done=last.number + 1,
            chunks_dispatched=last.number + 1,
        )
        return self.key_source(resume_at)

    def _next_key_chunk(self, keys: Iterator[Any]) -> _Task | None:
        try:
            kc = next(keys)
        except StopIteration:
            return None
        except sa.exc.DBAPIError as exc:
            raise map_db_error(exc, "paging release keys") from exc
        ids = tuple(int(i) for i in kc.release_ids)
        if not ids:
            return None
        if self.skip:
            # The chunk still passes through the checkpoint, possibly empty.
            number = int(kc.number)
            if any(isinstance(r, dict) and r["chunk"] == number for r in self.skip):
                ids = ()
            else:
                ranges = [r for r in self.skip if not isinstance(r, dict)]
                ids = tuple(i for i in ids if not any(lo <= i <= hi for lo, hi in ranges))
        return _Task(
            number=int(kc.number),
            release_ids=ids,
            last_key=int(kc.last_key) if kc.last_key is not None else None,
            next_offset=int(getattr(kc, "next_offset", 0) or 0),
            loader=self.loader if isinstance(self.loader, FileLoader) and self.loader.in_worker else None,
            # A retry has no window: only deleted releases become takedowns there.
            takedowns=self.run.mode in ("targeted", "retry")
            or (self.run.mode == "incremental" and self.run.watermark_from is not None),
            ended_before=self.run.watermark_to.date() if self.run.watermark_to is not None else None,
            skip_unchanged=self.run.mode in ("incremental", "targeted") and not self.run.options.get("force"),
            job=self.run.job,
            state_schema=self.schema,
            run_id=int(self.run.id),
            run_started=self.run.started_at,
            claim_scope=self.claim_scope,
            report_missing=self.run.mode == "retry"
            or (self.run.mode == "targeted" and bool(self.run.options.get("release_ids"))),
        )

    def _check_workers(self) -> None:
        for p in self.procs:
            if not p.is_alive():
                raise TerminalError(
                    f"worker process {p.pid} died (exit code {p.exitcode}); the run stops and "
                    f"resumes from its checkpoint with `etl resume {self.run.id}`; if it was killed for "
                    "memory, lower extract.chunk_size or run.workers"
                )

    def _worker_failed(self, f: _ChunkFailure) -> EtlError:
        if f.detail:
            # The CLI prints the error itself once; the worker's traceback is for -vv / --debug.
            log.debug("worker %d failed on chunk %d:\n%s", f.pid, f.number, f.detail)
        text = f"chunk {f.number}: {f.message}"
        if f.output_error:
            from .errors import OutputError

            return OutputError(text)
        if f.retryable:
            return TransientError(text)
        return TerminalError(text if f.kind.endswith("Error") and f.kind != "Exception" else f"{f.kind}: {text}")

    def _heartbeat(self) -> None:
        self.lock.execute(
            lambda c: c.execute(
                sa.text(f"UPDATE {state._t(self.schema, 'runs')} SET heartbeat_at = now() WHERE id = :id"),
                {"id": self.run.id},
            ),
            what="updating the run's heartbeat",
            policy=self.retry,
        )

    def _commit(
        self,
        task: _Task,
        result: _ChunkResult,
        through: _Task | None = None,
        ahead: list[dict[str, Any]] | None = None,
        skip: list[Any] | None = None,
    ) -> None:
        """One transaction: table rows (if any), rejects, delivered checksums, checkpoint, counts.

        ``through``: the checkpoint moves to the end of that chunk (``task``
        itself or a chunk loaded ahead that ``task`` joins up with), and
        ``ahead``/``skip`` replace those lists when given. Without it ``task``
        is recorded as loaded ahead of the checkpoint.
        """
        retry_source = self.run.source_run_id if self.run.mode == "retry" else None
        counts = {
            "built": result.built,
            "rejected": len(result.rejects),
            "skipped": result.skipped,
            "takedowns": result.takedowns,
            "unchanged": result.unchanged,
        }

        def tx() -> None:
            with self.engine.begin() as conn:
                written = result.written
                if result.outputs is not None:
                    written = self.loader.write(result.outputs, conn=conn, run_id=self.run.id)
                if retry_source is not None:
                    state.record_rejects(conn, self.schema, retry_source, result.rejects)
                    state.resolve_rejects(
                        conn, self.schema, retry_source, [w.release_id for w in written], self.run.id
                    )
                else:
                    state.record_rejects(conn, self.schema, self.run.id, result.rejects)
                state.record_delivered(conn, self.schema, self.run.job, self.run.id, result.delivered)
                if through is None:
                    state.record_ahead(conn, self.schema, self.run.id, _ahead_entry(task), **counts)
                else:
                    state.advance(
                        conn,
                        self.schema,
                        self.run.id,
                        last_key=through.last_key,
                        next_offset=through.next_offset,
                        chunks_done=through.number + 1,
                        ahead=ahead,
                        skip=skip,
                        **counts,
                    )

        with_retries(
            tx,
            what=f"loading chunk {task.number}",
            policy=self.retry,
        )
        if isinstance(self.loader, FileLoader):
            # committed: its files no longer need their pending list
            self.loader.settle(result.written, key=task.release_ids[0] if task.release_ids else None)
        log.info(
            "chunk %d loaded: %d releases (ids %s), %d built, %d rejected, %d takedowns, %d unchanged, "
            "%.3f s in worker %d (fetch %.3f, build %.3f, write %.3f)",
            task.number, len(task.release_ids), _id_span(task.release_ids), result.built, len(result.rejects),
            result.takedowns, result.unchanged, result.seconds, result.pid,
            result.fetch_seconds, result.build_seconds, result.write_seconds,
            extra={"fields": {
                "chunk": task.number, "releases": len(task.release_ids), "built": result.built,
                "rejected": len(result.rejects), "takedowns": result.takedowns, "unchanged": result.unchanged,
                "seconds": round(result.seconds, 3), "worker_pid": result.pid,
            }},
        )
        self.stage_seconds["fetch"] += result.fetch_seconds
        self.stage_seconds["build"] += result.build_seconds
        self.stage_seconds["write"] += result.write_seconds
        self.stage_seconds["worker"] += result.seconds
        self.stage_seconds["fetch_cpu"] += result.fetch_cpu
        self.stage_seconds["build_cpu"] += result.build_cpu
        self.stage_seconds["write_cpu"] += result.write_cpu
        self.built += result.built
        self.rejected += len(result.rejects)
        self.skipped += result.skipped
        self.takedowns += result.takedowns
        self.unchanged += result.unchanged
        self.attempt_releases += (
            result.built + len(result.rejects) + result.skipped + result.takedowns + result.unchanged
        )
        for r in result.rejects:
            log.warning("rejected (%s): %s", r.stage, mask(r.message))
        for w in result.warnings:
            self.data_warnings += 1
            # Each once at WARNING while they are few; a catalog full of stray
            # spaces would otherwise bury everything else in the log.
            if self.data_warnings <= NOTES_LOGGED:
                log.warning("data warning: %s", mask(w))
                continue
            if self.data_warnings == NOTES_LOGGED + 1:
                log.warning("more data warnings follow at INFO level (etl -v run shows them)")
            log.info("data warning: %s", mask(w))

    def _check_thresholds(self, result: _ChunkResult) -> None:
        rc = self.cfg.run
        if result.rejects and (rc.fail_fast or not rc.continue_on_error):
            first = result.rejects[0]
            why = "fail_fast" if rc.fail_fast else "continue_on_error = false"
            raise RunFailed(
                f"run {self.run.id} stopped at the first rejected release ({why}): {mask(first.message)}; "
                f"fix the data, then `etl resume {self.run.id}` (or `etl retry-failed {self.run.id}`)"
            )
        if rc.max_errors is not None and self.rejected > rc.max_errors:
            raise RunFailed(
                f"run {self.run.id} stopped: {self.rejected} releases rejected, more than run.max_errors = "
                f"{rc.max_errors}; see `etl errors {self.run.id}`, fix the data or raise max_errors, "
                f"then `etl resume {self.run.id}`"
            )
        seen = self.built + self.rejected
        if rc.max_error_rate is not None and seen and self.rejected / seen > rc.max_error_rate:
            raise RunFailed(
                f"run {self.run.id} stopped: {self.rejected} of {seen} releases rejected "
                f"({100.0 * self.rejected / seen:.1f}%), more than run.max_error_rate = {rc.max_error_rate}; "
                f"see `etl errors {self.run.id}`, then `etl resume {self.run.id}`"
            )

    def peak_memory_mb(self) -> float:
        """Main process peak plus each worker's peak: an upper bound on the run's total RSS."""
        workers = sum(self.worker_rss.values()) if self.worker_rss else children_peak_rss_mb() * len(self.procs)
        return own_peak_rss_mb() + workers

    def _close(self, status: str, error: BaseException | None) -> RunReport:
        seconds = time.monotonic() - self.t0
        message = None
        if error is not None:
            message = mask(str(error)) or type(error).__name__
        if status == "interrupted" and message is None:
            message = "interrupted by a signal"
        peak = self.peak_memory_mb()
        try:
            row = self.lock.execute(
                lambda c: state.finish_run(
                    c, self.schema, self.run.id, status=status, seconds=seconds, peak_memory_mb=peak, error=message
                ),
                what="recording the run's result",
                policy=self.retry,
            )
        except EtlError as exc:
            log.error("could not record the end of run %d: %s", self.run.id, mask(str(exc)))
            row = dataclasses.replace(
                self.run, status=status, built=self.built, rejected=self.rejected, skipped=self.skipped,
                takedowns=self.takedowns, unchanged=self.unchanged,
                seconds=(self.run.seconds or 0) + seconds, peak_memory_mb=peak, error=message,
            )
        total_seconds = row.seconds or seconds
        return RunReport(
            run_id=row.id,
            job=row.job,
            status=status,
            mode=row.mode,
            built=row.built,
            rejected=row.rejected,
            skipped=row.skipped,
            seconds=total_seconds,
            releases_per_second=(row.built + row.rejected + row.skipped) / total_seconds if total_seconds else 0.0,
            peak_memory_mb=peak,
            target=row.target,
            output=row.output,
            batch_id=row.batch_id,
            attempts=row.attempts,
            chunks_redone=row.chunks_redone,
            resumed=self.resumed,
            error=message,
            attempt_releases=self.attempt_releases,
            attempt_seconds=seconds,
            main_peak_mb=own_peak_rss_mb(),
            worker_peak_mb=tuple(round(v, 1) for v in self.worker_rss.values()),
            stage_seconds={k: round(v, 3) for k, v in self.stage_seconds.items()},
            takedowns=row.takedowns,
            unchanged=row.unchanged,
            watermark_from=row.watermark_from,
            watermark_to=row.watermark_to,
            data_warnings=self.data_warnings,
            shared_isrcs=self.shared_isrcs,
            delivery=self.delivery,
        )


def _id_span(ids: tuple[int, ...]) -> str:
    return f"{ids[0]}..{ids[-1]}" if ids else "none"


def _exit_interrupted(signum: int, frame: Any) -> None:
    _hard_exit({})


# Called with what is known just before a second signal ends the process at once
# (``etl run --json`` prints its one JSON object from it); see set_hard_exit_reporter.
_HARD_EXIT_REPORTER: Callable[[dict[str, Any]], None] | None = None


def set_hard_exit_reporter(reporter: Callable[[dict[str, Any]], None] | None) -> None:
    """Have ``reporter(data)`` called when a second Ctrl-C / SIGTERM ends the process without unwinding."""
    global _HARD_EXIT_REPORTER
    _HARD_EXIT_REPORTER = reporter


def _hard_exit(known: dict[str, Any]) -> None:
    if _HARD_EXIT_REPORTER is not None:
        with contextlib.suppress(Exception):
            _HARD_EXIT_REPORTER({
                **known, "status": "interrupted", "exit_code": ExitCode.INTERRUPTED,
                "error": "interrupted by a second signal; the run is resumable (etl resume)",
            })
    os._exit(ExitCode.INTERRUPTED)


def _attach(exc: EtlError, report: RunReport) -> EtlError:
    """Errors leaving a run carry its report (the CLI can print the summary too)."""
    exc.report = report  # type: ignore[attr-defined]
    return exc


def _mark_interrupted_now(url: str, schema: str, run_id: int, own_backends: set[int] | frozenset[int] = frozenset()) -> None:
    """From a signal handler: a fresh short-lived connection, short limits.

    The signal may have stopped this process in the middle of a transaction
    that holds the run's row (a chunk's commit): the update would then wait on
    this very process. So it waits half a second at most, and then ends this
    process's own sessions (``own_backends``; the process is exiting, their
    transactions roll back and are redone on resume) and tries again.
    """
    import psycopg
    from sqlalchemy.engine import make_url

    libpq = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    update = (
        f"UPDATE {state._t(schema, 'runs')} SET status = 'interrupted', finished_at = now(), "
        "error = 'interrupted (second signal)' WHERE id = %s AND status = 'running'"
    )
    with psycopg.connect(libpq, connect_timeout=2, autocommit=True, options="-c statement_timeout=2000 -c lock_timeout=500") as conn:
        try:
            conn.execute(update, (run_id,))
            return
        except psycopg.errors.LockNotAvailable:
            if not own_backends:
                raise
        conn.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (sorted(own_backends),))
        conn.execute(update, (run_id,))


def _track_backends(engine: Engine, into: set[int]) -> None:
    """Keep ``into`` = the server pids of ``engine``'s open connections (see ``_mark_interrupted_now``)."""

    def on_connect(dbapi_conn: Any, record: Any) -> None:
        with contextlib.suppress(Exception):
            into.add(int(dbapi_conn.info.backend_pid))

    def on_close(dbapi_conn: Any, *record: Any) -> None:
        with contextlib.suppress(Exception):
            into.discard(int(dbapi_conn.info.backend_pid))

    sa.event.listen(engine, "connect", on_connect)
    sa.event.listen(engine, "close", on_close)
    sa.event.listen(engine, "close_detached", on_close)


# --------------------------------------------------------------------------- public API


def _count_total(engine: Engine, cfg: Config) -> int | None:
    """How many releases the run will see, if extract can say cheaply (for progress and ETA)."""
    from . import extract

    counter = getattr(extract, "count_releases", None)
    if counter is None:
        return None
    try:
        return int(counter(engine, cfg.extract))
    except Exception as exc:  # progress only: never fail a run over the estimate
        log.debug("could not count releases: %s", mask(str(exc)))
        return None


def _run_key_source(engine: Engine, cfg: Config, run: state.RunRow) -> Callable[[state.Checkpoint], Iterator[Any]]:
    """The keys a full/incremental/targeted run pages, from what its row recorded (so a resume
    covers exactly the same window or id list)."""
    from . import extract

    ids = run.options.get("release_ids")
    if run.mode == "targeted" and ids:
        return lambda cp: extract.iter_id_chunks(
            ids, cfg.extract.chunk_size, after_key=cp.last_key, start_number=cp.chunks_done
        )
    if run.mode in ("incremental", "targeted") and run.watermark_from is not None and run.watermark_to is not None:
        since, until = run.watermark_from, run.watermark_to
        return lambda cp: extract.iter_changed_key_chunks(
            engine, cfg.extract, since=since, until=until, after_key=cp.last_key, start_number=cp.chunks_done
        )
    return _key_source(engine, cfg)


def _run_total(engine: Engine, cfg: Config, run: state.RunRow) -> int | None:
    from . import extract

    ids = run.options.get("release_ids")
    if run.mode == "targeted" and ids:
        return len(set(ids))
    if run.mode in ("incremental", "targeted") and run.watermark_from is not None and run.watermark_to is not None:
        try:
            return extract.count_changed_releases(
                engine, cfg.extract, since=run.watermark_from, until=run.watermark_to
            )
        except Exception as exc:  # progress only
            log.debug("could not count changed releases: %s", mask(str(exc)))
            return None
    return _count_total(engine, cfg)


def _key_source(engine: Engine, cfg: Config) -> Callable[[state.Checkpoint], Iterator[Any]]:
    from . import extract

    def source(cp: state.Checkpoint) -> Iterator[Any]:
        if cfg.extract.mode == "offset":
            return iter(extract.iter_key_chunks(engine, cfg.extract, offset=cp.next_offset, start_number=cp.chunks_done))
        return iter(extract.iter_key_chunks(engine, cfg.extract, after_key=cp.last_key, start_number=cp.chunks_done))

    return source


@dataclass(frozen=True)
class _KeyChunk:
    number: int
    release_ids: tuple[int, ...]
    last_key: int | None
    next_offset: int


def _retry_source(engine: Engine, cfg: Config, source_run_id: int) -> Callable[[state.Checkpoint], Iterator[Any]]:
    """Chunks of a run's unresolved rejects, keyset by release id (so a resume picks up exactly)."""
    schema = cfg.database.state_schema
    size = cfg.extract.chunk_size

    def source(cp: state.Checkpoint) -> Iterator[Any]:
        number = cp.chunks_done
        after = cp.last_key
        while True:
            with engine.connect() as conn:
                ids = [
                    int(r[0])
                    for r in conn.execute(
                        sa.text(
                            f"""SELECT release_id FROM {state._t(schema, 'rejected_releases')}
                            WHERE run_id = :r AND resolved_at IS NULL AND release_id > :after
                            ORDER BY release_id LIMIT :n"""
                        ),
                        {"r": source_run_id, "after": after if after is not None else -(2**63), "n": size},
                    )
                ]
            if not ids:
                return
            yield _KeyChunk(number, tuple(ids), ids[-1], 0)
            number += 1
            after = ids[-1]

    return source


# Server pids of the main process's sessions (the job lock's among them).
_OWN_BACKENDS: set[int] = set()


def _open(cfg: Config) -> tuple[Engine, str]:
    url = database_url(cfg)
    engine = make_engine(url, pool_size=cfg.database.pool_size)
    _track_backends(engine, _OWN_BACKENDS)
    return engine, url


def _committed_releases(engine: Engine, schema: str, run: state.RunRow) -> Callable[[Any], set[int]]:
    """For the files loader: which of some releases a committed chunk of ``run`` delivered."""

    def committed(release_ids: Any) -> set[int]:
        try:
            with engine.connect() as conn:
                found = state.delivered_by_run(conn, schema, run.job, run.id, list(release_ids))
                conn.rollback()
                return found
        except sa.exc.DBAPIError as exc:
            raise map_db_error(exc, f"reading which releases run {run.id} has loaded") from exc

    return committed


def _execute_run(
    cfg: Config,
    *,
    new: bool,
    run_id: int | None,
    progress: bool | None,
    must_exist: bool = False,
    retry_of: int | None = None,
    mode: str | None = None,
    since: dt.datetime | None = None,
    release_ids: tuple[int, ...] = (),
    force: bool = False,
) -> RunReport:
    schema = cfg.database.state_schema
    engine, url = _open(cfg)
    lock: JobLock | None = None
    pool: _Pool | None = None
    loader: Loader | None = None
    selection = Selection()
    try:
        pool = _Pool(url, cfg, cfg.run.workers or os.cpu_count() or 1)
        # The first contact with the server: a nightly job that starts while the server restarts
        # (refused, 57P03) waits with backoff like any other transient fault instead of failing at once.
        with_retries(
            lambda: state.ensure_current(engine, schema),
            what="connecting to PostgreSQL",
            policy=RetryPolicy.of(cfg.run),
        )
        lock = JobLock(engine, schema, cfg.run.job)
        lock.acquire()
        fingerprint = cfg.fingerprint()
        with engine.connect() as conn:
            existing: state.RunRow | None = None
            if run_id is not None:
                existing = state.get_run(conn, schema, run_id)
                if existing is None:
                    raise ConfigError(f"run {run_id} not found; fix: pick a run id from `etl runs`")
                if existing.job != cfg.run.job:
                    raise ConfigError(
                        f"run {run_id} belongs to job {existing.job!r}, not {cfg.run.job!r}; "
                        f"fix: run with job = {existing.job!r} (ETL_JOB={existing.job})"
                    )
                if existing.status == "succeeded":
                    raise ConfigError(f"run {run_id} already succeeded; nothing to resume (start a new one with `etl run`)")
            elif must_exist:
                existing = state.unfinished_run(conn, schema, cfg.run.job)
            elif retry_of is None and since is None and not release_ids:
                selection = select_run(
                    state.unfinished_run(conn, schema, cfg.run.job),
                    mode=mode or cfg.run.mode, fingerprint=fingerprint, new=new,
                )
                existing = selection.resume
            if must_exist and existing is None:
                raise ConfigError(f"job {cfg.run.job!r} has no unfinished run to resume; fix: `etl run` starts one")
            if existing is not None and existing.config_fingerprint != fingerprint:
                raise ConfigError(
                    f"run {existing.id} of job {cfg.run.job!r} was started with another configuration "
                    f"(fingerprint {existing.config_fingerprint}, now {fingerprint}); resuming it would mix outputs; "
                    "fix: restore the configuration it ran with, or start afresh with `etl run --new`"
                )
            cp = state.get_checkpoint(conn, schema, existing.id) if existing is not None else None
            retry_rows: list[state.RejectRow] = []
            if retry_of is not None:
                retry_rows = state.list_rejects(conn, schema, retry_of, unresolved_only=True)
            # The window is frozen now, from the database clock, and recorded in the run row:
            # a resume covers exactly it; the job's watermark moves only when the run succeeds.
            watermark_to = state.database_now(conn, cfg.run.watermark_lag_seconds)
            previous = state.last_success(conn, schema, cfg.run.job)

        if existing is not None:
            batch_id = existing.batch_id
        else:
            batch_id = new_batch_id() if cfg.load.target == "files" and cfg.load.layout == "ddex-batch" else None
        loader = loader_for(cfg, run_id=existing.id if existing is not None else None, batch_id=batch_id)
        loader.check()  # fail on a missing output directory before touching the run rows
        if isinstance(loader, FileLoader) and loader.layout == "ddex-batch" and cfg.load.media_root:
            from .media import check_media_root

            check_media_root(cfg.load.media_root)
        # Another job writing the same folder is refused here, before a run row exists.
        loader.acquire(cfg.run.job, existing.id if existing is not None else None)

        if existing is not None:
            mode = existing.mode
        elif retry_of is not None:
            mode = "retry"
        elif since is not None or release_ids:
            mode = "targeted"
        else:
            mode = mode or cfg.run.mode
        watermark_from: dt.datetime | None = None
        if mode == "incremental":
            watermark_from = previous.watermark_to if previous is not None else None
        elif mode == "targeted":
            watermark_from = since
        options: dict[str, Any] = {"force": bool(force)}
        if release_ids:
            options["release_ids"] = sorted({int(i) for i in release_ids})
        if since is not None:
            options["since"] = since.isoformat()
        with engine.begin() as conn:
            if existing is not None:
                assert cp is not None
                # Handed out, not loaded: neither in the contiguous part nor loaded ahead.
                redone = max(0, cp.chunks_dispatched - cp.chunks_done - len(cp.ahead))
                run = state.reopen_run(conn, schema, existing.id, pid=os.getpid(), host=host(), redone=redone)
                state.carry_ahead(conn, schema, run.id, by_chunk=run.extract_mode == "offset")
                claims.rewind(conn, schema, run.id, cp.chunks_done)
                cp = state.get_checkpoint(conn, schema, run.id)
                resumed = True
            else:
                run = state.create_run(
                    conn,
                    schema,
                    job=cfg.run.job,
                    mode=mode,
                    extract_mode=cfg.extract.mode if mode != "retry" else "keyset",
                    fingerprint=fingerprint,
                    target=cfg.load.target,
                    layout=cfg.load.layout if cfg.load.target == "files" else None,
                    output=loader.describe(),
                    batch_id=batch_id,
                    source_run_id=retry_of,
                    options=options,
                    watermark_from=watermark_from,
                    watermark_to=watermark_to if mode != "retry" else None,
                    pid=os.getpid(),
                    host=host(),
                )
                cp = state.get_checkpoint(conn, schema, run.id)
                resumed = False
                if selection.superseded is not None:
                    state.mark_superseded(conn, schema, selection.superseded.id, by_run=run.id)
        if selection.superseded is not None:
            log.warning("job %s: %s; starting %s run %d", cfg.run.job, selection.describe(), run.mode, run.id)
        # From here the lock guards this run row: losing it stops the run (see joblock).
        lock.run_id = run.id
        ACTIVE_RUNS.add(run.id)
        # The run row did not exist yet to show this runner alive: if the lock
        # connection died before it did, another runner may hold the job now.
        lock.execute(lambda c: c.execute(sa.text("SELECT 1")), what="checking the job lock",
                     policy=RetryPolicy.of(cfg.run))
        # After the run row commits: a crash can never leave a batch folder no run knows about.
        loader.prepare(engine, run_id=run.id, committed=_committed_releases(engine, schema, run))
        if run.mode == "retry":
            assert run.source_run_id is not None
            keys = _retry_source(engine, cfg, run.source_run_id)
            left = [r for r in retry_rows if cp.last_key is None or r.release_id > cp.last_key]
            total: int | None = run.built + run.rejected + run.skipped + len(left) if retry_of is not None else None
        else:
            if force and not run.options.get("force"):
                run = dataclasses.replace(run, options={**run.options, "force": True})
            keys = _run_key_source(engine, cfg, run)
            total = _run_total(engine, cfg, run)
        if total is not None and total != run.total:
            with engine.begin() as conn:
                state.set_total(conn, schema, run.id, total)
        logs.bind(job=cfg.run.job, run=run.id, recipient=cfg.transform.recipient_dpid)
        window = (
            f", window ({run.watermark_from.isoformat() if run.watermark_from else 'the beginning'}, "
            f"{run.watermark_to.isoformat()}]" if run.mode in ("incremental", "targeted") and run.watermark_to else ""
        )
        log.info(
            "%s %s run %d of job %s%s; %s releases to go; output %s",
            "resuming" if resumed else "starting", run.mode, run.id, run.job, window,
            "unknown" if total is None else f"{total:,}", run.output or cfg.load.target,
            extra={"fields": {"mode": run.mode, "resumed": resumed, "total": total}},
        )
        reporter = reporter_for(cfg.run.job, progress, cfg.run.progress_interval)
        runner = _Runner(
            cfg, engine, url, lock, run, cp, loader, reporter, pool, resumed=resumed, key_source=keys, total=total
        )
        try:
            return _with_selection(runner.execute(), selection)
        except EtlError as exc:
            report = getattr(exc, "report", None)
            if report is not None:
                exc.report = _with_selection(report, selection)  # type: ignore[attr-defined]
            raise
    except EtlError:
        raise
    except sa.exc.DBAPIError as exc:
        raise map_db_error(exc, "preparing the run") from exc
    finally:
        logs.bind(run=None)
        if pool is not None:
            pool.stop(graceful=False)  # no-op when the runner stopped it
        if loader is not None:
            loader.close()  # workers are gone: nothing of this run is in flight any more
        if lock is not None:
            if lock.run_id is not None:
                ACTIVE_RUNS.discard(lock.run_id)
            lock.release()
        engine.dispose()


def _with_selection(report: RunReport, selection: Selection) -> RunReport:
    """The report, naming the run this one superseded (if any)."""
    old = selection.superseded
    if old is None:
        return report
    return dataclasses.replace(
        report,
        superseded={"run_id": old.id, "mode": old.mode, "status": old.status, "reason": selection.reason},
    )


def run(
    cfg: Config,
    *,
    new: bool = False,
    run_id: int | None = None,
    progress: bool | None = None,
    mode: str | None = None,
    since: dt.datetime | None = None,
    release_ids: tuple[int, ...] | list[int] = (),
    force: bool = False,
) -> RunReport:
    """Run ``cfg.run.job``: continue its unfinished run (same configuration), or start a new one.

    ``mode`` "full" pages every live release; "incremental" only the releases
    changed since the job's last successful run (window frozen at start from
    the database clock, minus ``run.watermark_lag_seconds``), deleted ones and
    those whose deals all ended becoming takedowns; None uses ``run.mode``.
    ``since`` / ``release_ids`` start a targeted run (mode "targeted") that
    never moves the job's watermark. Incremental and targeted runs skip a
    document identical to the job's last delivery unless ``force``.

    The job's unfinished full/incremental run is continued only when it has
    the same mode and the same configuration; otherwise (or with ``new=True``)
    it is superseded: left as it is, resumable with ``resume(cfg, its_id)``,
    and named in the report's ``superseded``. ``run_id`` continues that run.
    ``progress`` None shows a bar on a terminal and plain log lines otherwise.
    Upgrades the state tables first. Raises LockHeldError when the job is
    already running, InterruptedRun on Ctrl-C/SIGTERM (resumable), RunFailed /
    TransientError / TerminalError / OutputError when the run fails (resumable
    from its checkpoint); each carries ``.report``.

    Workers are separate processes (fork server): a script calling this
    needs the usual ``if __name__ == "__main__":`` guard.
    """
    if mode is not None and mode not in ("full", "incremental"):
        raise ConfigError(f"unknown run mode {mode!r}; fix: use 'full' or 'incremental'")
    return _execute_run(
        cfg, new=new, run_id=run_id, progress=progress, mode=mode, since=since,
        release_ids=tuple(int(i) for i in release_ids), force=force,
    )


def resume(cfg: Config, run_id: int | None = None, *, progress: bool | None = None) -> RunReport:
    """Resume run ``run_id`` (default: the job's unfinished run) from its checkpoint."""
    return _execute_run(cfg, new=False, run_id=run_id, progress=progress, must_exist=True)


def retry_failed(cfg: Config, run_id: int | None = None, *, progress: bool | None = None) -> RunReport:
    """Rebuild only the releases run ``run_id`` rejected (default: the job's latest run with open rejects).

    A new run (mode ``retry``) loads what now builds and marks those rejects
    resolved; releases that still fail count one more attempt. For the
    ddex-batch layout the rebuilt releases form a new batch.
    """
    engine, _ = _open(cfg)
    schema = cfg.database.state_schema
    try:
        if state.current(engine, schema) is None:
            raise ConfigError("no runs recorded yet; fix: `etl run` first")
        with engine.connect() as conn:
            if run_id is None:
                row = conn.execute(
                    sa.text(
                        f"""SELECT r.id FROM {state._t(schema, 'runs')} r
                        WHERE r.job = :job AND r.mode <> 'retry' AND EXISTS (
                            SELECT 1 FROM {state._t(schema, 'rejected_releases')} x
                            WHERE x.run_id = r.id AND x.resolved_at IS NULL)
                        ORDER BY r.id DESC LIMIT 1"""
                    ),
                    {"job": cfg.run.job},
                ).first()
                if row is None:
                    raise ConfigError(f"job {cfg.run.job!r} has no rejected releases left to retry")
                run_id = int(row[0])
            else:
                src = state.get_run(conn, schema, run_id)
                if src is None:
                    raise ConfigError(f"run {run_id} not found; fix: pick a run id from `etl runs`")
                if src.job != cfg.run.job:
                    raise ConfigError(f"run {run_id} belongs to job {src.job!r}, not {cfg.run.job!r}")
            # An interrupted retry of the same source continues instead of starting over.
            pending = conn.execute(
                sa.text(
                    f"""SELECT id FROM {state._t(schema, 'runs')}
                    WHERE source_run_id = :src AND mode = 'retry' AND status <> 'succeeded'
                    ORDER BY id DESC LIMIT 1"""
                ),
                {"src": run_id},
            ).first()
    except sa.exc.DBAPIError as exc:
        raise map_db_error(exc, "finding the rejected releases") from exc
    finally:
        engine.dispose()
    if pending is not None:
        return _execute_run(cfg, new=False, run_id=int(pending[0]), progress=progress)
    return _execute_run(cfg, new=True, run_id=None, progress=progress, retry_of=run_id)


def status(cfg: Config) -> list[JobStatus]:
    """Per job: the newest run, its status and counts, and the newest successful run."""
    engine, _ = _open(cfg)
    schema = cfg.database.state_schema
    try:
        if state.current(engine, schema) is None:
            return []
        with engine.connect() as conn:
            out = []
            for job in state.jobs(conn, schema):
                runs = state.list_runs(conn, schema, job=job, limit=1)
                success = state.last_success(conn, schema, job)
                out.append(
                    JobStatus(
                        job=job,
                        last_run=RunInfo.from_row(runs[0]) if runs else None,
                        last_success=RunInfo.from_row(success) if success else None,
                        note=_stalled_note(conn, runs[0]) if runs and runs[0].status == "running" else None,
                    )
                )
            return out
    except sa.exc.DBAPIError as exc:
        raise map_db_error(exc, "reading run status") from exc
    finally:
        engine.dispose()


def _stalled_note(conn: Connection, run: state.RunRow) -> str | None:
    """Why a ``running`` run is not really running (its runner is gone), or None when it is."""
    now = state.database_now(conn)
    age = (now - run.heartbeat_at).total_seconds() if run.heartbeat_at else None
    if runner_alive(run.id, run.pid, run.host, age):
        return None
    where = f"pid {run.pid} on {run.host}" if run.pid else "its runner"
    beat = f", last heartbeat {age:.0f} s ago" if age is not None else ""
    return (
        f"run {run.id} is recorded as running, but its runner ({where}) is gone{beat}; "
        f"the next `etl run` of job {run.job!r} marks it failed and continues it (or `etl resume {run.id}`)"
    )


def recent_runs(cfg: Config, limit: int = 20) -> list[RunInfo]:
    """The newest runs of every job, newest first."""
    engine, _ = _open(cfg)
    schema = cfg.database.state_schema
    try:
        if state.current(engine, schema) is None:
            return []
        with engine.connect() as conn:
            return [RunInfo.from_row(r) for r in state.list_runs(conn, schema, limit=limit)]
    except sa.exc.DBAPIError as exc:
        raise map_db_error(exc, "listing runs") from exc
    finally:
        engine.dispose()


def rejected(cfg: Config, run_id: int | None = None, *, include_resolved: bool = False) -> list[RejectedRelease]:
    """The releases run ``run_id`` rejected (default: the job's newest full or incremental run)."""
    engine, _ = _open(cfg)
    schema = cfg.database.state_schema
    try:
        if state.current(engine, schema) is None:
            return []
        with engine.connect() as conn:
            if run_id is None:
                latest = state.latest_run(conn, schema, cfg.run.job)
                if latest is None:
                    return []
                run_id = latest.id
            elif state.get_run(conn, schema, run_id) is None:
                raise ConfigError(f"run {run_id} not found; fix: pick a run id from `etl runs`")
            rows = state.list_rejects(conn, schema, run_id, unresolved_only=not include_resolved)
            return [
                RejectedRelease(
                    run_id=r.run_id,
                    release_id=r.release_id,
                    stage=r.stage,
                    error_kind=r.error_kind,
                    message=r.message,
                    retryable=r.retryable,
                    attempts=r.attempts,
                    input=r.input,
                    created_at=r.created_at,
                    resolved_at=r.resolved_at,
                    resolved_by_run=r.resolved_by_run,
                )
                for r in rows
            ]
    except sa.exc.DBAPIError as exc:
        raise map_db_error(exc, "listing rejected releases") from exc
    finally:
        engine.dispose()
