"""One job run, start to end: open, lock, pick or create the run row, build the loader, run the loop.

``run`` / ``resume`` / ``retry_failed`` are the library calls behind ``etl
run``, ``etl resume`` and ``etl retry-failed``. The executor starts first,
before migrations and the lock (see ``executors.executor_for``); the run row,
its checkpoint and the loader are then handed to the ``Runner``.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import uuid
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .. import logs, state
from ..config import Config
from ..db import database_url, make_engine, map_db_error, worker_database_url
from ..errors import ConfigError, EtlError
from ..load import FileLoader, Loader, loader_for, new_batch_id
from ..progress import reporter_for
from ..retry import RetryPolicy, one_budget, with_retries
from ..state import claims
from ..state.joblock import ACTIVE_RUNS, JobLock, host
from ..state.run_selection import CONFIG_KEYS, ConfigPrint, Selection, select_run
from .chunks import WorkerSpec
from .executors import ChunkExecutor, executor_for
from .keys import retry_source, run_key_source, run_total
from .loop import OWN_BACKENDS, Runner, track_backends
from .reporting import RunReport

# The run's modules log under the name they always had ("pipeline" in log lines).
log = logging.getLogger("ddex_etl.pipeline")


def _open(cfg: Config) -> tuple[Engine, str]:
    url = database_url(cfg)
    engine = make_engine(url, pool_size=cfg.database.pool_size)
    track_backends(engine, OWN_BACKENDS)
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


def execute_run(cfg: Config, **options: Any) -> RunReport:
    """Open, lock, pick or create the run row, run it (``options`` as for ``_execute_run``).

    Every retry loop of the run shares one outage clock (``retry.one_budget``): an unreachable
    database costs ``run.retry_for`` once per run, not once per phase.
    """
    with one_budget():
        return _execute_run(cfg, **options)


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
    executor: ChunkExecutor | None = None
    loader: Loader | None = None
    selection = Selection()
    try:
        spec = WorkerSpec(url=worker_database_url(cfg, url), cfg=cfg, main_pid=os.getpid(), retry=RetryPolicy.of(cfg.run))
        executor = executor_for(cfg, spec)
        # The first contact with the server: a nightly job that starts while the server restarts
        # (refused, 57P03) waits with backoff like any other transient fault instead of failing at once.
        with_retries(
            lambda: state.ensure_current(engine, schema),
            what="connecting to PostgreSQL",
            policy=RetryPolicy.of(cfg.run),
        )
        lock = JobLock(engine, schema, cfg.run.job)
        lock.acquire()
        printed = ConfigPrint.of(cfg)
        fingerprint = printed.fingerprint
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
                    mode=mode or cfg.run.mode, fingerprint=printed, new=new,
                )
                existing = selection.resume
            if must_exist and existing is None:
                raise ConfigError(_nothing_to_resume(conn, cfg))
            if existing is not None and not printed.matches(existing):
                raise ConfigError(
                    f"run {existing.id} of job {cfg.run.job!r} was started with {printed.difference(existing)}; "
                    f"resuming it would mix outputs; fix: {printed.restore_hint(existing)}; or leave it as it "
                    "stands: `etl run` starts a new run and supersedes it"
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
            from ..delivery.media import check_media_root

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
        # What makes this run's MessageIds unique for ever (``RunRow.delivery_id``):
        # run ids restart with a fresh state schema, on a second machine or
        # from a restored backup; a random id of the run does not.
        options: dict[str, Any] = {"force": bool(force), "delivery_uid": uuid.uuid4().hex,
                                  CONFIG_KEYS: dict(printed.keys)}
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
            keys = retry_source(engine, cfg, run.source_run_id)
            left = [r for r in retry_rows if cp.last_key is None or r.release_id > cp.last_key]
            total: int | None = run.built + run.rejected + run.skipped + len(left) if retry_of is not None else None
        else:
            if force and not run.options.get("force"):
                run = dataclasses.replace(run, options={**run.options, "force": True})
            keys = run_key_source(engine, cfg, run)
            total = run_total(engine, cfg, run)
        if total is not None and total != run.total:
            with engine.begin() as conn:
                state.set_total(conn, schema, run.id, total)
        # `recipient` is always a name (the [[recipients]] entry's, else transform.recipient_name); the DPID beside it
        logs.bind(job=cfg.run.job, run=run.id, recipient=cfg.recipient.name if cfg.recipient else cfg.transform.recipient_name,
                  recipient_dpid=cfg.transform.recipient_dpid)
        if run.mode == "incremental":
            _warn_outdated_triggers(engine)
        window = (
            f", window ({run.watermark_from.isoformat() if run.watermark_from else 'the beginning'}, "
            f"{run.watermark_to.isoformat()}]" if run.mode in ("incremental", "targeted") and run.watermark_to else ""
        )
        log.info(
            "%s %s run %d of job %s%s; %s releases to go; output %s; executor %s (%d workers)",
            "resuming" if resumed else "starting", run.mode, run.id, run.job, window,
            "unknown" if total is None else f"{total:,}", run.output or cfg.load.target,
            executor.name, executor.worker_count(),
            extra={"fields": {"mode": run.mode, "resumed": resumed, "total": total, "executor": executor.name}},
        )
        reporter = reporter_for(cfg.run.job, progress, cfg.run.progress_interval)
        runner = Runner(
            cfg, engine, url, lock, run, cp, loader, reporter, executor, resumed=resumed, key_source=keys, total=total
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
        if executor is not None:
            executor.shutdown(graceful=False)  # no-op when the runner shut it down
        if loader is not None:
            loader.close()  # workers are gone: nothing of this run is in flight any more
        if lock is not None:
            if lock.run_id is not None:
                ACTIVE_RUNS.discard(lock.run_id)
            lock.release()
        engine.dispose()


def _nothing_to_resume(conn: sa.Connection, cfg: Config) -> str:
    """`etl resume` found no unfinished run of the job; without [[recipients]], name those of recipients it had."""
    text = f"job {cfg.run.job!r} has no unfinished run to resume; fix: `etl run` starts one"
    if cfg.recipient is not None:
        return text
    left = state.unfinished_runs_under(conn, cfg.database.state_schema, f"{cfg.run.job}/")
    if not left:
        return text
    runs = ", ".join(f"run {r.id} ({r.mode}, {r.status}) of {r.job!r}" for r in left)
    return (
        f"job {cfg.run.job!r} has no unfinished run to resume, but recipients etl.toml no longer lists have: "
        f"{runs}; fix: put their [[recipients]] entries back as those runs started with them and `etl resume`"
    )


def _warn_outdated_triggers(engine: Engine) -> None:
    """An incremental run over a catalog whose ddex-etl triggers are an older version misses changes: say so."""
    from ..extract.catalog_triggers import trigger_status

    try:
        with engine.connect() as conn:
            status = trigger_status(conn)
            conn.rollback()
    except sa.exc.DBAPIError as exc:  # advice only: never fail a run over it
        log.debug("could not look at the catalog's triggers: %s", exc)
        return
    if status.outdated and status.message() not in _WARNED:
        _WARNED.add(status.message())  # once per process, not once per recipient
        log.warning("%s", status.message())


_WARNED: set[str] = set()


def _with_selection(report: RunReport, selection: Selection) -> RunReport:
    """The report, naming the run this one superseded (if any)."""
    old = selection.superseded
    if old is None:
        return report
    return dataclasses.replace(
        report,
        superseded={"run_id": old.id, "mode": old.mode, "status": old.status, "reason": selection.reason,
                    "next_step": selection.next_step or f"resume it with `etl resume {old.id}`"},
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
    return execute_run(
        cfg, new=new, run_id=run_id, progress=progress, mode=mode, since=since,
        release_ids=tuple(int(i) for i in release_ids), force=force,
    )


def resume(cfg: Config, run_id: int | None = None, *, progress: bool | None = None) -> RunReport:
    """Resume run ``run_id`` (default: the job's unfinished run) from its checkpoint."""
    return execute_run(cfg, new=False, run_id=run_id, progress=progress, must_exist=True)


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
        return execute_run(cfg, new=False, run_id=int(pending[0]), progress=progress)
    return execute_run(cfg, new=True, run_id=None, progress=progress, retry_of=run_id)
