"""``etl run``, ``etl resume``, ``etl retry-failed`` and the options and endings they share."""
from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any

import click

from ..errors import ConfigError, EtlError, ExitCode
from .app import CliState, _echo, _example, _print_json_once, _say, _state, _to_stderr

if TYPE_CHECKING:
    from ..config import Config
    from ..run import RunReport


def _run_options(func: Any) -> Any:
    func = click.option(
        "--recipient", "recipient_names", multiple=True, metavar="NAME",
        help="Only this [[recipients]] entry (repeatable); default: every recipient, in file order.",
    )(func)
    func = click.option("--json", "as_json", is_flag=True, help="Print the run's summary as JSON on stdout.")(func)
    func = click.option("--no-progress", is_flag=True, help="No progress bar or progress lines.")(func)
    func = click.option(
        "--scheduler", metavar="ADDRESS",
        help="Dask scheduler address, e.g. tcp://10.0.0.5:8786 (default: run.scheduler); implies --executor dask.",
    )(func)
    func = click.option(
        "--executor", type=click.Choice(["local", "dask"]),
        help="Where chunks are built: local worker processes or a Dask cluster (default: run.executor).",
    )(func)
    func = click.option("--workers", type=click.IntRange(min=0), help="Worker processes (0: one per core).")(func)
    func = click.option("--job", help="Job name (default: run.job); each job has its own runs and lock.")(func)
    return func


def _with_run_overrides(
    cfg: Config, job: str | None, workers: int | None, executor: str | None = None, scheduler: str | None = None,
) -> Config:
    from ..config import job_problem, scheduler_problem

    run: dict[str, Any] = {}
    if job is not None:
        problem = job_problem("--job", job)
        if problem is not None:
            raise ConfigError(problem)
        run["job"] = job
    if workers is not None:
        run["workers"] = workers
    if scheduler is not None:
        problem = scheduler_problem("--scheduler", scheduler)
        if problem is not None:
            raise ConfigError(problem)
        if executor == "local":
            raise ConfigError("--scheduler: only the Dask executor has a scheduler; "
                              "fix: leave out --scheduler, or use --executor dask")
        # An address only means something to Dask: asking for one asks for Dask.
        run["scheduler"] = scheduler
        executor = executor or "dask"
    if executor is not None:
        run["executor"] = executor
    return cfg.with_overrides(run=run) if run else cfg


def _check_recipient_names(cfg: Config, names: tuple[str, ...]) -> None:
    if names and not cfg.recipients:
        raise ConfigError("--recipient: etl.toml has no [[recipients]] (the [transform] keys are the one recipient); "
                          "fix: leave out --recipient, or list the stores as [[recipients]]")


def _finish_recipients(ctx: click.Context, call: Any, as_json: bool, cfg: Config | None = None) -> None:
    """Several recipients: each one's summary, then exit with the worst code (see ddex_etl.run.recipients)."""
    state = _state(ctx)
    if as_json:
        _report_hard_exit_as_json(state)
    report = call()
    _write_metrics(state, report, cfg)
    if as_json:
        _print_json_once(state, report.as_dict())
    elif report.exit_code == ExitCode.OK:
        _say(state, report.summary())
    elif not state.quiet:
        _echo(report.summary())
    _recipient_problems_to_stderr(state, report, cfg or state.config())
    ctx.exit(report.exit_code)


def _recipient_problems_to_stderr(state: CliState, report: Any, cfg: Config) -> None:
    """One line per recipient that did not succeed, on stderr, whatever stdout holds (--json, -q).

    A scheduler keeps stderr (``2>> nightly.log``): each line names the
    recipient, what went wrong and the next step, so the log alone says what
    to do in the morning.
    """
    from .. import logs

    dpids = {r.name: r.dpid for r in cfg.recipients}
    for o in report.outcomes:
        line = recipient_problem(o)
        if line is None:
            continue
        level = logging.WARNING if o.exit_code in (ExitCode.REJECTED, ExitCode.LOCKED) else logging.ERROR
        logs.bind(job=o.job, run=o.report.run_id if o.report is not None else None, recipient=o.recipient,
                  recipient_dpid=dpids.get(o.recipient))
        try:
            _to_stderr(state, f"etl: recipient {o.recipient}: {line}", level=level)
        finally:
            logs.bind(run=None, recipient=None, recipient_dpid=None)


def recipient_problem(o: Any) -> str | None:
    """What went wrong for one recipient and the next step, in one line (None: nothing went wrong)."""
    from ..config import mask_secrets

    if o.exit_code == ExitCode.OK:
        return None
    run = o.report.run_id if o.report is not None else None
    where = f"run {run} " if run is not None else ""
    error = " ".join((o.error or "").split())
    if o.exit_code == ExitCode.REJECTED:
        rejected = o.report.rejected if o.report is not None else 0
        store = len((o.acks or {}).get("rejected") or [])
        what = ", ".join(part for part in (
            f"{rejected:,} release(s) rejected by the run" if rejected else "",
            f"{store:,} release(s) rejected by the store" if store else "",
        ) if part) or "releases rejected"
        return f"{where}finished with {what}; fix: `etl errors{f' {run}' if run is not None else ''}` names each " \
               "release and the fix, then `etl retry-failed` (the store's: `etl run --release-id ID --force`)"
    if o.exit_code == ExitCode.LOCKED:
        return f"not started: {error or 'another run of its job holds the lock'}; nothing to do if that run is " \
               "still going (`etl status`)"
    if o.exit_code == ExitCode.INTERRUPTED:
        return f"{where}{o.status}: {error or 'interrupted'}; fix: `etl resume` continues it"
    if o.exit_code == ExitCode.USAGE:
        fix = "" if "fix:" in error else "; fix: correct etl.toml (`etl config check --connect`)"
        return mask_secrets(f"{o.status}: {error or 'configuration error'}{fix}")
    resume = "" if "etl resume" in error or run is None else f"; then `etl resume {run}` (or the next `etl run`) continues it"
    fix = "" if "fix:" in error else "; fix: what the error names"
    return mask_secrets(f"{where}{o.status}: {error or o.error_kind or 'failed'}{fix}{resume}")


def _report_hard_exit_as_json(state: CliState) -> None:
    """A second Ctrl-C ends the process without unwinding: print the one JSON object from there."""
    from .. import run as run_api

    def report(data: dict[str, Any]) -> None:
        _print_json_once(state, {**state.known, **data})
        sys.stdout.flush()

    run_api.set_hard_exit_reporter(report)


def _finish_run(ctx: click.Context, call: Any, as_json: bool, cfg: Config | None = None) -> None:
    """Run ``call()``; print its summary (also when it fails); exit with the report's code.

    A failure's message is printed once, by the error handler: the summary
    printed here leaves it out.
    """
    state = _state(ctx)
    if as_json:
        _report_hard_exit_as_json(state)
    try:
        report: RunReport = call()
    except EtlError as exc:
        failed: RunReport | None = getattr(exc, "report", None)
        if failed is not None:
            _write_metrics(state, failed, cfg)
            if as_json:
                _print_json_once(state, failed.as_dict())
            elif not state.quiet:
                _to_stderr(state, failed.summary(with_error=False), level=logging.WARNING)
        raise
    _write_metrics(state, report, cfg)
    if as_json:
        _print_json_once(state, report.as_dict())
    else:
        _say(state, report.summary())
    ctx.exit(report.exit_code)


def _write_metrics(state: CliState, report: Any, cfg: Config | None) -> None:
    """``run.metrics_file``, when set: the Prometheus textfile of what the run(s) did (never fails the run)."""
    cfg = cfg or state.config()
    if cfg.run.metrics_file is not None:
        from ..run.metrics import write_metrics_file

        write_metrics_file(cfg, report)


@click.command(
    short_help="Run the job: extract, build ERN messages, load, checkpoint.",
    epilog=_example(
        "etl run",
        "etl run --new --workers 2",
        "etl run --incremental --no-progress --json",
        "etl run --since 2026-11-01T00:00:00Z",
        "etl run --release-id 42 --release-id 43 --force",
    ),
)
@click.option("--new", is_flag=True, help="Start a new run even if the job has an unfinished one of the same kind.")
@click.option(
    "--incremental", "mode", flag_value="incremental",
    help="Only releases changed since the job's last successful run; takedowns for deleted ones.",
)
@click.option("--full", "mode", flag_value="full", help="Rebuild every live release (default unless run.mode says otherwise).")
@click.option(
    "--since", "since", metavar="TIMESTAMP",
    help="Targeted: releases changed after TIMESTAMP (ISO 8601); does not move the job's watermark.",
)
@click.option(
    "--release-id", "release_ids", type=int, multiple=True, metavar="ID",
    help="Targeted: rebuild these releases (repeatable); deleted ones become takedowns.",
)
@click.option("--force", is_flag=True, help="Deliver documents even when identical to the last delivery.")
@click.option(
    "--dry-run", is_flag=True,
    help="Only report, per recipient, what would be built, taken down, skipped as unchanged or rejected; "
    "writes and uploads nothing.",
)
@_run_options
@click.pass_context
def run(
    ctx: click.Context,
    new: bool,
    mode: str | None,
    since: str | None,
    release_ids: tuple[int, ...],
    force: bool,
    dry_run: bool,
    job: str | None,
    workers: int | None,
    executor: str | None,
    scheduler: str | None,
    no_progress: bool,
    as_json: bool,
    recipient_names: tuple[str, ...],
) -> None:
    """Run the job: page releases out of PostgreSQL, build one ERN message per
    release in worker processes, load them to files or a table.

    Continues the job's unfinished run only when it is the same kind of run
    (full or incremental) with the same configuration; otherwise (and with
    --new) that run is superseded: kept for `etl resume RUN_ID`, named in the
    summary, and the requested run starts. Upgrades the state tables first. Exit code 3 means some releases were
    rejected: list them with `etl errors`, fix the data, `etl retry-failed`.
    """
    from .. import run as run_api

    state = _state(ctx)
    targeted = since is not None or bool(release_ids)
    state.known.update(command="run", job=job, mode="targeted" if targeted else mode, run_id=None)
    cfg = _with_run_overrides(state.config(), job, workers, executor, scheduler)
    state.known.update(job=cfg.run.job, mode="targeted" if targeted else (mode or cfg.run.mode))
    since_at = _parse_since(since) if since is not None else None
    _check_recipient_names(cfg, recipient_names)
    if dry_run:
        from ..run.dry_run import dry_run as plan

        report = plan(cfg, recipients=recipient_names, mode=mode, since=since_at, release_ids=release_ids,
                      force=force)
        if as_json:
            _print_json_once(state, report.as_dict())
        else:
            _say(state, report.summary())
        ctx.exit(report.exit_code)
    if cfg.recipients:
        from ..run import recipients

        _finish_recipients(ctx, lambda: recipients.run(
            cfg, recipients=recipient_names, new=new, progress=state.progress(no_progress), mode=mode,
            since=since_at, release_ids=release_ids, force=force,
        ), as_json, cfg)
        return
    _finish_run(
        ctx,
        lambda: run_api.run(
            cfg, new=new, progress=state.progress(no_progress), mode=mode, since=since_at,
            release_ids=release_ids, force=force,
        ),
        as_json,
        cfg,
    )


def _parse_since(text: str) -> Any:
    """An ISO 8601 timestamp; without a zone it is UTC."""
    import datetime as dt

    try:
        when = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"--since: {text!r} is not a timestamp; fix: ISO 8601, e.g. 2026-11-01T00:00:00Z or 2026-11-01"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.timezone.utc)


@click.command(
    short_help="Resume an interrupted or failed run from its checkpoint.",
    epilog=_example("etl resume", "etl resume 42"),
)
@click.argument("run_id", type=int, required=False)
@_run_options
@click.pass_context
def resume(
    ctx: click.Context, run_id: int | None, job: str | None, workers: int | None, executor: str | None,
    scheduler: str | None, no_progress: bool, as_json: bool, recipient_names: tuple[str, ...],
) -> None:
    """Resume RUN_ID (default: the job's unfinished run) from its last checkpoint.

    The configuration must be the one the run started with.
    """
    from .. import run as run_api

    state = _state(ctx)
    state.known.update(command="resume", job=job, run_id=run_id)
    cfg = _with_run_overrides(state.config(), job, workers, executor, scheduler)
    state.known.update(job=cfg.run.job)
    _check_recipient_names(cfg, recipient_names)
    if cfg.recipients:
        from ..run import recipients

        _finish_recipients(ctx, lambda: recipients.resume(
            cfg, run_id, recipients=recipient_names, progress=state.progress(no_progress)), as_json, cfg)
        return
    _finish_run(ctx, lambda: run_api.resume(cfg, run_id, progress=state.progress(no_progress)), as_json, cfg)


@click.command(
    "retry-failed",
    short_help="Rebuild only the releases a run rejected (after fixing the data).",
    epilog=_example("etl retry-failed", "etl retry-failed 42"),
)
@click.argument("run_id", type=int, required=False)
@_run_options
@click.pass_context
def retry_failed(
    ctx: click.Context, run_id: int | None, job: str | None, workers: int | None, executor: str | None,
    scheduler: str | None, no_progress: bool, as_json: bool, recipient_names: tuple[str, ...],
) -> None:
    """Rebuild the releases RUN_ID rejected (default: the job's latest run with
    open rejects); the ones that now build are loaded and cleared.
    """
    from .. import run as run_api

    state = _state(ctx)
    state.known.update(command="retry-failed", job=job, mode="retry", source_run_id=run_id, run_id=None)
    cfg = _with_run_overrides(state.config(), job, workers, executor, scheduler)
    state.known.update(job=cfg.run.job)
    _check_recipient_names(cfg, recipient_names)
    if cfg.recipients:
        from ..run import recipients

        _finish_recipients(ctx, lambda: recipients.retry_failed(
            cfg, run_id, recipients=recipient_names, progress=state.progress(no_progress)), as_json, cfg)
        return
    _finish_run(ctx, lambda: run_api.retry_failed(cfg, run_id, progress=state.progress(no_progress)), as_json, cfg)
