"""What crosses between the run loop and whatever runs its chunks: plain picklable records.

A ``Task`` goes out (keys only, never rows); a ``ChunkResult`` or a
``ChunkFailure`` comes back. ``WorkerSpec`` is everything a worker needs to
set itself up once (see ``ddex_etl.run.worker``). The same records travel to
a local worker process or a Dask worker.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field

from ..config import Config
from ..load import FileLoader, Output, Written
from ..masking import mask_url
from ..retry import RetryPolicy
from ..state import RejectRecord


@dataclass(frozen=True)
class Task:
    """One chunk of release keys to fetch, build and (files target) write."""

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
    delivery_id: str | None = None  # the run's RunRow.delivery_id: MessageIds end with it
    # identifiers are claimed per run, in chunk order (see ddex_etl.state.claims); a
    # retry run claims in the scope of the run it retries
    claim_scope: int = 0
    # ids asked for by name (--release-id, a retry): one the catalog does not have is a reject
    report_missing: bool = False
    # The run's attempt (runs.attempts) that handed the chunk out; 0: unchecked.
    # A Dask task outlives its coordinator (a running task cannot be cancelled):
    # such a zombie finds a later attempt in the run row and writes nothing.
    attempt: int = 0


@dataclass
class ChunkResult:
    """A chunk done: documents (table target) or what the worker wrote (files), rejects, counts, timings."""

    number: int
    outputs: list[Output] | None  # documents, when the main process loads them (table)
    written: list[Written]  # what the worker wrote itself (files)
    rejects: list[RejectRecord]
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
class ChunkFailure:
    """A chunk the worker could not finish; the run loop turns it into the run's error."""

    number: int
    kind: str
    message: str  # masked
    retryable: bool
    output_error: bool
    pid: int
    detail: str = ""  # masked traceback, for an error that is not one of ours


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker sets itself up from, once per process (engine, builder context, retry policy)."""

    url: str
    cfg: Config
    main_pid: int
    retry: RetryPolicy

    @property
    def key(self) -> str:
        """Which cached worker context this spec needs: the same run set-up gives the same key.

        A digest, so the key never carries the database password.
        """
        raw = f"{self.main_pid}\0{self.url}\0{self.cfg!r}\0{self.retry!r}"
        return hashlib.sha256(raw.encode()).hexdigest()

    def __repr__(self) -> str:
        # The spec travels inside every Dask task, and Dask logs a failed task's
        # arguments: the URL's password must never be in that text.
        return f"WorkerSpec(url={mask_url(self.url)!r}, main_pid={self.main_pid}, retry={self.retry!r})"
