"""What runs did, for people and schedulers: the run report, run listings, job status, rejects.

``RunReport`` is what one run returns (``summary()`` for the terminal,
``as_dict()`` for ``--json``); ``status``, ``recent_runs`` and ``rejected``
read the state tables for ``etl status``, ``etl runs`` and ``etl errors``.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from .. import state
from ..config import Config
from ..db import database_url, make_engine, map_db_error
from ..errors import ConfigError, ExitCode
from ..state.joblock import runner_alive


def _open(cfg: Config) -> Engine:
    return make_engine(database_url(cfg), pool_size=cfg.database.pool_size)




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
    # the upload of the batch to the recipient's target (see ddex_etl.delivery.deliver), when it has one
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
                f"{old.get('next_step') or 'resume it with `etl resume ' + str(old['run_id']) + '`'}"
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
    # Why a run recorded as running is shown as "stalled": its runner is gone (see ``_stalled_note``)
    note: str | None = None

    @classmethod
    def read(cls, conn: Connection, r: state.RunRow) -> RunInfo:
        """The run as ``etl runs`` and ``etl status`` show it: one recorded "running" whose runner is gone is "stalled"."""
        info = cls.from_row(r)
        note = _stalled_note(conn, r) if r.status == "running" else None
        return dataclasses.replace(info, status="stalled", note=note) if note else info

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


# One type for a rejected release, read or listed: ``rejected()`` returns the state rows.
RejectedRelease = state.RejectRow


def status(cfg: Config) -> list[JobStatus]:
    """Per job: the newest run, its status and counts, and the newest successful run."""
    engine = _open(cfg)
    schema = cfg.database.state_schema
    try:
        if state.current(engine, schema) is None:
            return []
        with engine.connect() as conn:
            out = []
            for job in state.jobs(conn, schema):
                runs = state.list_runs(conn, schema, job=job, limit=1)
                success = state.last_success(conn, schema, job)
                last = RunInfo.read(conn, runs[0]) if runs else None
                out.append(
                    JobStatus(
                        job=job,
                        last_run=last,
                        last_success=RunInfo.from_row(success) if success else None,
                        note=last.note if last is not None else None,
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
    engine = _open(cfg)
    schema = cfg.database.state_schema
    try:
        if state.current(engine, schema) is None:
            return []
        with engine.connect() as conn:
            return [RunInfo.read(conn, r) for r in state.list_runs(conn, schema, limit=limit)]
    except sa.exc.DBAPIError as exc:
        raise map_db_error(exc, "listing runs") from exc
    finally:
        engine.dispose()


# The runs `etl errors` means by "the newest run": every kind but a retry (whose rejects stay with its source run).
NEWEST_RUN_MODES = ("full", "incremental", "targeted")


def rejected(cfg: Config, run_id: int | None = None, *, include_resolved: bool = False) -> list[state.RejectRow]:
    """The releases run ``run_id`` rejected (default: the job's newest run).

    A retry run (``etl retry-failed``) records what still fails under the run
    it retries, so the newest run here is the newest full, incremental or
    targeted (``--release-id``, ``--since``) one.
    """
    engine = _open(cfg)
    schema = cfg.database.state_schema
    try:
        if state.current(engine, schema) is None:
            return []
        with engine.connect() as conn:
            if run_id is None:
                latest = state.latest_run(conn, schema, cfg.run.job, modes=NEWEST_RUN_MODES)
                if latest is None:
                    return []
                run_id = latest.id
            elif state.get_run(conn, schema, run_id) is None:
                raise ConfigError(f"run {run_id} not found; fix: pick a run id from `etl runs`")
            return state.list_rejects(conn, schema, run_id, unresolved_only=not include_resolved)
    except sa.exc.DBAPIError as exc:
        raise map_db_error(exc, "listing rejected releases") from exc
    finally:
        engine.dispose()


@dataclass(frozen=True)
class StoreRejection:
    """A release a store rejected in its newest acknowledgement, and whether it was delivered again since."""

    ack: state.StoreAck
    # a later run of the job delivered the release again (its batch is complete on the target): the store's
    # answer to that delivery is awaited; an acceptance clears the rejection, another rejection replaces it
    redelivered_by_run: int | None = None

    @property
    def state(self) -> str:
        return "re-delivered, awaiting acknowledgement" if self.redelivered_by_run is not None else "rejected"

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self.ack), "state": self.state, "redelivered_by_run": self.redelivered_by_run}


def store_rejections(conn: Connection, cfg: Config, run_id: int | None = None) -> list[StoreRejection]:
    """The job's releases whose newest acknowledgement is a rejection, each marked when delivered again since.

    Delivered again: the state's ``delivered`` row for the release names a
    later run than the rejected batch's, and that run succeeded (a run
    succeeds only once its batch is on the target).
    """
    schema, job = cfg.database.state_schema, cfg.run.job
    acks = state.store_rejections(conn, schema, job, run_id)
    sent = state.last_sent(conn, schema, job, sorted({a.release_id for a in acks if a.release_id is not None}))
    succeeded: dict[int, bool] = {}
    out = []
    for a in acks:
        later = sent.get(a.release_id) if a.release_id is not None else None
        by: int | None = None
        if later is not None and a.run_id is not None and later.run_id > a.run_id:
            if later.run_id not in succeeded:
                row = state.get_run(conn, schema, later.run_id)
                succeeded[later.run_id] = row is not None and row.status == "succeeded"
            by = later.run_id if succeeded[later.run_id] else None
        out.append(StoreRejection(a, by))
    return out
