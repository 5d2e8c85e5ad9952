"""The ``etl`` command: parse arguments, call the library, turn errors into exit codes.

Each command makes one library call. Library modules are imported inside the
commands so ``etl --help`` stays fast and never touches a database.

Errors are handled in ONE place, ``EtlGroup.invoke``: an ``EtlError`` becomes
a short message on stderr and its own exit code (a ``ConfigError`` lists every
problem); anything unexpected becomes a one-line message pointing at
``--debug``, exit code 1. Click's own usage errors keep click's exit code 2.
Nothing printed here ever shows a password: URLs go through ``mask_url``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import sys
import traceback
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from . import __version__
from .errors import ConfigError, EtlError, ExitCode

if TYPE_CHECKING:
    from .config import Config
    from .run import RunReport

EXIT_CODES_HELP = f"""\b
Exit codes:
  {ExitCode.OK:<3}  success
  {ExitCode.FAILED:<3}  failed (the run is resumable from its last checkpoint)
  {ExitCode.USAGE:<3}  usage or configuration error
  {ExitCode.REJECTED:<3}  finished, but some releases were rejected (see `etl errors`)
  {ExitCode.LOCKED:<3}  another run of the same job holds the lock
  {ExitCode.INTERRUPTED:<3}  interrupted by Ctrl-C / SIGTERM (resume with `etl resume`)

\b
Configuration: --config PATH, else ETL_CONFIG, else ./etl.toml, else defaults
(an embedded PostgreSQL in .etl/pgdata). ETL_DATABASE_URL overrides
database.url so a password never has to live in the file.
"""

log = logging.getLogger("ddex_etl.cli")


def _example(*lines: str) -> str:
    """An epilog with examples; ``\\b`` stops click from re-wrapping the lines."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


# --------------------------------------------------------------------------- state and output


@dataclass
class CliState:
    """What the global options decided, shared with every command through ``ctx.obj``."""

    config_path: Path | None = None
    debug: bool = False
    verbosity: int = 0  # -1 quiet, 0 normal, 1 -v, 2 -vv
    _config: Config | None = field(default=None, repr=False)
    # --json was given: every exit path prints exactly one JSON object on stdout
    json: bool = False
    json_printed: bool = False
    log_format: str = "auto"
    # what is known about the command so far, for that object when it fails early
    known: dict[str, Any] = field(default_factory=dict)

    @property
    def quiet(self) -> bool:
        return self.verbosity < 0

    def config(self) -> Config:
        """The validated configuration, loaded once (a ConfigError lists every problem)."""
        if self._config is None:
            from .config import load_config

            self._config = load_config(self.config_path)
        return self._config

    def progress(self, no_progress: bool = False) -> bool | None:
        """None: a bar on a terminal, plain lines otherwise; False: nothing."""
        return False if (no_progress or self.quiet) else None


def _state(ctx: click.Context) -> CliState:
    obj = ctx.find_root().obj
    if not isinstance(obj, CliState):  # a command invoked on its own (tests, embedding)
        obj = CliState()
        ctx.find_root().obj = obj
    return obj


def _echo(text: str = "", *, err: bool = False) -> None:
    click.echo(text, err=err)


def _say(state: CliState, text: str) -> None:
    """Informational output: suppressed by -q."""
    if not state.quiet:
        click.echo(text)


def _console(err: bool = False) -> Any:
    """A rich console on the current stdout/stderr; wide when piped so tables do not wrap."""
    from rich.console import Console

    stream = sys.stderr if err else sys.stdout
    tty = stream.isatty()
    return Console(file=stream, width=None if tty else 200, highlight=False, soft_wrap=not tty)


def _json_default(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return str(value)


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=_json_default))


def _print_json_once(state: CliState, data: Any) -> None:
    """The command's one JSON object on stdout (--json); later calls print nothing."""
    if not state.json_printed:
        state.json_printed = True
        _print_json(data)


# --------------------------------------------------------------------------- error handling (the one place)


def _report_error(state: CliState, exc: BaseException) -> int:
    """Print ``exc`` for a human (and, with --json, as one JSON object) and return the exit code."""
    code = _print_error(state, exc)
    if state.json and not state.json_printed:
        from .config import mask_secrets

        text = str(exc).strip() or type(exc).__name__
        if isinstance(exc, KeyboardInterrupt):
            text = "interrupted"
        _print_json_once(state, {
            **state.known,
            "status": "not started",
            "exit_code": code,
            "error": mask_secrets(text),
            "error_kind": type(exc).__name__,
            "retryable": bool(getattr(exc, "retryable", False)),
        })
    return code


def _print_error(state: CliState, exc: BaseException) -> int:
    from .config import mask_secrets

    if state.debug:
        traceback.print_exception(exc, file=sys.stderr)
    if isinstance(exc, ConfigError):
        where = f" ({state.config_path})" if state.config_path else ""
        _to_stderr(state, f"etl: error{where}: {mask_secrets(str(exc))}", exc, exc.exit_code)
        return exc.exit_code
    if isinstance(exc, EtlError):
        _to_stderr(state, f"etl: error: {mask_secrets(str(exc))}", exc, exc.exit_code)
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        _to_stderr(state, "etl: interrupted", exc, ExitCode.INTERRUPTED)
        return ExitCode.INTERRUPTED
    if isinstance(exc, BrokenPipeError):
        # The reader went away (`etl runs | head`): not an error worth a message.
        # Point stdout at /dev/null so the interpreter's final flush stays quiet.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return ExitCode.FAILED
    text = mask_secrets(str(exc).strip().splitlines()[0]) if str(exc).strip() else ""
    detail = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    hint = "" if state.debug else "; rerun with --debug to see the traceback"
    _to_stderr(state, f"etl: unexpected error: {detail}{hint}", exc, ExitCode.FAILED)
    return ExitCode.FAILED


def _to_stderr(state: CliState, text: str, exc: BaseException | None = None, code: int | None = None,
               level: int = logging.ERROR) -> None:
    """A message for stderr: plain text, or with --log-format json a log record like every other line."""
    if state.log_format != "json":
        _echo(text, err=True)
        return
    fields: dict[str, Any] = {}
    if exc is not None:
        fields = {"exit_code": code, "error_kind": type(exc).__name__}
        text = text.removeprefix("etl: ")
    log.log(level, "%s", text, extra={"fields": fields})


class EtlGroup(click.Group):
    """The top-level group: every command's errors pass through ``invoke`` here."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # Known before any parsing can fail, so even a usage error answers --json in JSON.
        ctx.meta["etl.json"] = "--json" in args and "--help" not in args and "-h" not in args
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.exceptions.ClickException as exc:
            state = _state(ctx)
            if ctx.meta.get("etl.json") and not state.json_printed:
                _print_json_once(state, {**state.known, "status": "not started", "exit_code": exc.exit_code,
                                         "error": exc.format_message(), "error_kind": "UsageError",
                                         "retryable": False})
            raise  # click's own: usage errors exit 2
        except (click.exceptions.Exit, click.exceptions.Abort):
            raise  # --help/--version exit 0
        except (Exception, KeyboardInterrupt) as exc:
            ctx.exit(_report_error(_state(ctx), exc))


# --------------------------------------------------------------------------- the group


@click.group(
    cls=EtlGroup,
    epilog=EXIT_CODES_HELP,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="ETL_CONFIG",
    help="Configuration file (default: ./etl.toml if present).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug logs).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors: no progress, no summaries.")
@click.option(
    "--log-format",
    type=click.Choice(["auto", "text", "json"]),
    default="auto",
    show_default=True,
    envvar="ETL_LOG_FORMAT",
    help="Log lines on stderr: auto (timestamps when not a terminal), text (always timestamps), "
    "json (one object per line: time, level, job, run, recipient, message, fields).",
)
@click.version_option(__version__, prog_name="etl")
@click.pass_context
def cli(
    ctx: click.Context, config_path: Path | None, debug: bool, verbose: int, quiet: bool, log_format: str
) -> None:
    """ddex-etl: turn a PostgreSQL music catalog into schema-valid DDEX ERN messages.

    \b
    Quick start (embedded PostgreSQL, documents in ./out):
      etl seed --releases 1000 && etl run
    """
    from .logs import setup

    verbosity = -1 if quiet else min(verbose, 2)
    ctx.obj = CliState(config_path=config_path, debug=debug, verbosity=verbosity,
                       json=bool(ctx.meta.get("etl.json")), log_format=log_format)
    setup(2 if debug else verbosity, log_format)


# --------------------------------------------------------------------------- seed


@cli.command(
    short_help="Fill the reference catalog with deterministic demo releases.",
    epilog=_example("etl seed --releases 1000", "etl seed --releases 50000 --seed 7 --reset",
                    "ETL_DATABASE_URL=postgresql://me@localhost/scratch etl seed --releases 100 --yes"),
)
@click.option("--releases", "-n", type=click.IntRange(min=0), required=True, help="How many releases to add.")
@click.option("--seed", "seed", type=int, default=1, show_default=True, help="Random seed: same seed, same rows.")
@click.option("--reset", is_flag=True, help="Empty the catalog first (otherwise releases are appended).")
@click.option(
    "--yes", is_flag=True,
    help="Write even to a database that holds more than the demo catalog (it refuses otherwise).",
)
@click.option(
    "--media-dir", type=click.Path(file_okay=False, path_type=Path),
    help="Where to write the demo audio and cover files (default: load.media_root when it is a folder, "
    "else ./media beside etl.toml).",
)
@click.pass_context
def seed(ctx: click.Context, releases: int, seed: int, reset: bool, yes: bool, media_dir: Path | None) -> None:
    """Create the reference catalog (sql/catalog.sql) if missing and add demo releases.

    Albums, singles, EPs, multi-disc sets and compilations with featured
    artists, composers, several deals and non-ASCII titles. Deterministic for
    a given --seed and starting catalog.

    It refuses (exit 2, nothing touched) a database that holds anything but
    its own demo catalog (other tables, or catalog rows it did not write)
    unless --yes. --reset names the database and what it deletes.

    The tracks' audio and the covers are real files (a few dozen small ones,
    shared by position and kind) written to --media-dir, with their MD5s in
    the catalog: a ddex-batch run with that folder as load.media_root ships them.
    """
    from .config import mask_url
    from .db import engine_for
    from .demo.seed import check_target, seed_catalog

    state = _state(ctx)
    cfg = state.config()
    if media_dir is None:
        root = cfg.load.media_root
        if root and "://" not in root:
            media_dir = Path(root)
        else:
            media_dir = (cfg.source.resolve().parent if cfg.source else Path.cwd()) / "media"
    engine = engine_for(cfg)
    ignore = (cfg.database.state_schema,)
    try:
        if reset:
            target = check_target(engine, ignore_schemas=ignore, reset=True)
            if target.only_demo or yes:
                _echo(f"etl seed --reset: deleting every row of the catalog in {target.database}: "
                      f"{target.contents()}", err=True)
        with _SeedProgress(state, releases) as progress:
            report = seed_catalog(engine, releases, seed=seed, reset=reset, progress=progress,
                                  only_demo=not yes, ignore_schemas=ignore, media_dir=media_dir)
    finally:
        engine.dispose()
    _say(
        state,
        f"seeded {report.releases:,} releases (ids {report.first_release_id}..{report.last_release_id}), "
        f"{report.tracks:,} tracks, {report.artists:,} artists, {report.deals:,} deals "
        f"in {report.seconds:,.1f} s ({report.releases_per_second:,.0f} releases/s)\n"
        f"  database: {mask_url(cfg.database.url) if cfg.database.url else f'embedded PostgreSQL in {cfg.database.embedded_dir}'}\n"
        f"  media: {len(report.media):,} demo audio and cover files in {media_dir} ({report.media_written:,} written now)",
    )


class _SeedProgress:
    """A rich bar for ``etl seed`` on a terminal; nothing otherwise."""

    def __init__(self, state: CliState, total: int) -> None:
        self.enabled = not state.quiet and sys.stderr.isatty() and total > 0
        self.total = total
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Any:
        if not self.enabled:
            return None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(TextColumn("seeding"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                             console=_console(err=True), transient=True)
        self._bar.start()
        self._task = self._bar.add_task("seed", total=self.total)
        return lambda done: self._bar.update(self._task, completed=done)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


# --------------------------------------------------------------------------- run, resume, retry-failed


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
    from .config import job_problem, scheduler_problem

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


def _finish_recipients(ctx: click.Context, call: Any, as_json: bool) -> None:
    """Several recipients: each one's summary, then exit with the worst code (see ddex_etl.run.recipients)."""
    state = _state(ctx)
    if as_json:
        _report_hard_exit_as_json(state)
    report = call()
    if as_json:
        _print_json_once(state, report.as_dict())
    elif report.exit_code == ExitCode.OK:
        _say(state, report.summary())
    elif not state.quiet:
        _echo(report.summary())
    ctx.exit(report.exit_code)


def _report_hard_exit_as_json(state: CliState) -> None:
    """A second Ctrl-C ends the process without unwinding: print the one JSON object from there."""
    from . import run as run_api

    def report(data: dict[str, Any]) -> None:
        _print_json_once(state, {**state.known, **data})
        sys.stdout.flush()

    run_api.set_hard_exit_reporter(report)


def _finish_run(ctx: click.Context, call: Any, as_json: bool) -> None:
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
            if as_json:
                _print_json_once(state, failed.as_dict())
            elif not state.quiet:
                _to_stderr(state, failed.summary(with_error=False), level=logging.WARNING)
        raise
    if as_json:
        _print_json_once(state, report.as_dict())
    else:
        _say(state, report.summary())
    ctx.exit(report.exit_code)


@cli.command(
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
    from . import run as run_api

    state = _state(ctx)
    targeted = since is not None or bool(release_ids)
    state.known.update(command="run", job=job, mode="targeted" if targeted else mode, run_id=None)
    cfg = _with_run_overrides(state.config(), job, workers, executor, scheduler)
    state.known.update(job=cfg.run.job, mode="targeted" if targeted else (mode or cfg.run.mode))
    since_at = _parse_since(since) if since is not None else None
    _check_recipient_names(cfg, recipient_names)
    if dry_run:
        from .run.dry_run import dry_run as plan

        report = plan(cfg, recipients=recipient_names, mode=mode, since=since_at, release_ids=release_ids,
                      force=force)
        if as_json:
            _print_json_once(state, report.as_dict())
        else:
            _say(state, report.summary())
        ctx.exit(report.exit_code)
    if cfg.recipients:
        from .run import recipients

        _finish_recipients(ctx, lambda: recipients.run(
            cfg, recipients=recipient_names, new=new, progress=state.progress(no_progress), mode=mode,
            since=since_at, release_ids=release_ids, force=force,
        ), as_json)
        return
    _finish_run(
        ctx,
        lambda: run_api.run(
            cfg, new=new, progress=state.progress(no_progress), mode=mode, since=since_at,
            release_ids=release_ids, force=force,
        ),
        as_json,
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


@cli.command(
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
    from . import run as run_api

    state = _state(ctx)
    state.known.update(command="resume", job=job, run_id=run_id)
    cfg = _with_run_overrides(state.config(), job, workers, executor, scheduler)
    state.known.update(job=cfg.run.job)
    _check_recipient_names(cfg, recipient_names)
    if cfg.recipients:
        from .run import recipients

        _finish_recipients(ctx, lambda: recipients.resume(
            cfg, run_id, recipients=recipient_names, progress=state.progress(no_progress)), as_json)
        return
    _finish_run(ctx, lambda: run_api.resume(cfg, run_id, progress=state.progress(no_progress)), as_json)


@cli.command(
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
    from . import run as run_api

    state = _state(ctx)
    state.known.update(command="retry-failed", job=job, mode="retry", source_run_id=run_id, run_id=None)
    cfg = _with_run_overrides(state.config(), job, workers, executor, scheduler)
    state.known.update(job=cfg.run.job)
    _check_recipient_names(cfg, recipient_names)
    if cfg.recipients:
        from .run import recipients

        _finish_recipients(ctx, lambda: recipients.retry_failed(
            cfg, run_id, recipients=recipient_names, progress=state.progress(no_progress)), as_json)
        return
    _finish_run(ctx, lambda: run_api.retry_failed(cfg, run_id, progress=state.progress(no_progress)), as_json)


# --------------------------------------------------------------------------- status, runs, errors


def _when(value: dt.datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _num(value: float | int | None, fmt: str = ",.0f") -> str:
    return "-" if value is None else format(value, fmt)


@cli.command(
    short_help="Show each job's latest run and latest success.",
    epilog=_example("etl status", "etl status --json"),
)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Show, per job, the newest run (status, counts) and the newest successful run."""
    from rich.table import Table

    from . import run as run_api

    state = _state(ctx)
    jobs = run_api.status(state.config())
    if as_json:
        _print_json([{"job": j.job, "status": j.status, "last_run": j.last_run, "last_success": j.last_success,
                      "watermark": j.last_success.watermark_to if j.last_success else None, "note": j.note}
                     for j in jobs])
        return
    if not jobs:
        _echo("no runs yet; start one with `etl run`")
        return
    table = Table("job", "status", "last run", "started", "built", "rejected", "last success", "watermark", title=None)
    for j in jobs:
        last, ok = j.last_run, j.last_success
        table.add_row(
            j.job,
            j.status,
            str(last.run_id) if last else "-",
            _when(last.started_at) if last else "-",
            _num(last.built) if last else "-",
            _num(last.rejected) if last else "-",
            f"run {ok.run_id} at {_when(ok.finished_at)}" if ok else "never",
            _when(ok.watermark_to) if ok and ok.watermark_to else "-",
        )
    _console().print(table)
    for j in jobs:
        if j.note:
            _echo(f"job {j.job!r}: {j.note}")


@cli.command(
    short_help="List recent runs in a table.",
    epilog=_example("etl runs", "etl runs --limit 5"),
)
@click.option("--limit", "-n", type=click.IntRange(min=1), default=20, show_default=True, help="How many runs.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def runs(ctx: click.Context, limit: int, as_json: bool) -> None:
    """List the most recent runs of every job, newest first."""
    from rich.table import Table

    from . import run as run_api

    rows = run_api.recent_runs(_state(ctx).config(), limit=limit)
    if as_json:
        _print_json(rows)
        return
    if not rows:
        _echo("no runs yet; start one with `etl run`")
        return
    table = Table("run", "job", "status", "mode", "started", "seconds", "built", "rejected", "rel/s", "peak MB",
                  "output")
    for r in rows:
        table.add_row(
            str(r.run_id), r.job, r.status, r.mode, _when(r.started_at), _num(r.seconds, ",.1f"), _num(r.built),
            _num(r.rejected), _num(r.releases_per_second), _num(r.peak_memory_mb), r.output or "-",
        )
    _console().print(table)


@cli.command(
    short_help="List the releases a run rejected, with the reason and the fix.",
    epilog=_example("etl errors", "etl errors 42 --json"),
)
@click.argument("run_id", type=int, required=False)
@click.option("--all", "include_resolved", is_flag=True, help="Include rejects a later retry resolved.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON (with the input needed to reproduce).")
@click.pass_context
def errors(ctx: click.Context, run_id: int | None, include_resolved: bool, as_json: bool) -> None:
    """List the releases RUN_ID rejected (default: the job's newest run; with
    [[recipients]], each recipient's newest run), and the releases the stores
    rejected in their acknowledgements (read by `etl acks` and `etl run`).
    """
    from . import run as run_api

    cfg = _state(ctx).config()
    if cfg.recipients:
        from .run import recipients

        found = recipients.rejected(cfg, run_id, include_resolved=include_resolved)
        if as_json:
            _print_json([
                {"recipient": name, "rejected": [r.as_dict() for r in rows], "store_rejected": acks}
                for name, rows, acks in found
            ])
            return
        for name, rows, acks in found:
            _echo(f"recipient {name}:")
            _print_rejects(rows, acks, indent="  ")
        return
    rows = run_api.rejected(cfg, run_id, include_resolved=include_resolved)
    if as_json:
        _print_json([r.as_dict() for r in rows])
        return
    _print_rejects(rows, [])


def _print_rejects(rows: Sequence[Any], acks: Sequence[Any], indent: str = "") -> None:
    if not rows and not acks:
        _echo(f"{indent}no rejected releases")
        return
    for a in acks:
        what = f"release {a.release_id}" if a.release_id is not None else f"release folder {a.release}"
        action = f"; the store proposes: {a.proposed_action}" if a.proposed_action else ""
        manual = "; manual check required before re-delivery" if a.manual_check_required else ""
        _echo(f"{indent}{what} (batch {a.batch_id}, run {a.run_id}, rejected by the store: {a.status}){action}{manual}")
        _echo(f"{indent}  {a.error_text or 'no error text'} ({a.message_file}); fix what the store names, then "
              "`etl run --release-id ID --force` delivers it again")
    for r in rows:
        retry = "a retry may help" if r.retryable else "fix the data, then `etl retry-failed`"
        resolved = f", resolved by run {r.resolved_by_run}" if r.resolved_at else ""
        _echo(f"{indent}release {r.release_id} (run {r.run_id}, {r.stage}, {r.error_kind}, "
              f"attempts {r.attempts}{resolved}): {retry}")
        _echo(f"{indent}  {r.message}")
    store = f", {len(acks):,} rejected by the store" if acks else ""
    _echo(f"{indent}{len(rows):,} rejected release{'s' if len(rows) != 1 else ''}{store}")


@cli.command(
    short_help="Read the stores' acknowledgements of delivered batches and record them.",
    epilog=_example("etl acks", "etl acks --recipient store-a --json"),
)
@click.option("--recipient", "recipient_names", multiple=True, metavar="NAME", help="Only this recipient (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def acks(ctx: click.Context, recipient_names: tuple[str, ...], as_json: bool) -> None:
    """Read the ACK_*.xml files each recipient's store left beside the messages
    of its newest batches, and record per release whether the store accepted
    or rejected it and why (`etl errors` lists the rejections). Exit code 3
    when a store rejected a release; 1 when a target could not be read.
    """
    from .delivery.store_acks import read_store_acks
    from .run import recipients

    state = _state(ctx)
    cfg = state.config()
    _check_recipient_names(cfg, recipient_names)
    chosen = [r for r in recipients.selected(cfg, recipient_names) if r.target is not None]
    if not chosen:
        raise ConfigError("no recipient has a delivery target; fix: set target in a [[recipients]] entry")
    results: list[dict[str, Any]] = []
    codes: list[int] = []
    for r in chosen:
        try:
            summary = read_store_acks(cfg.for_recipient(r))
        except EtlError as exc:
            results.append({"recipient": r.name, "error": str(exc), "error_kind": type(exc).__name__})
            codes.append(exc.exit_code)
            if not as_json:
                _to_stderr(state, f"etl: recipient {r.name}: {exc}")
            continue
        results.append(summary.as_dict())
        codes.append(ExitCode.REJECTED if summary.rejected else ExitCode.OK)
        if not as_json:
            _say(state, f"recipient {r.name} ({summary.target}): {summary.read} acknowledgements in "
                        f"{summary.batches} batches ({summary.new} new): {summary.accepted} accepted, "
                        f"{len(summary.rejected)} releases rejected" +
                        (f", {len(summary.problems)} unreadable" if summary.problems else ""))
            for a in summary.rejected:
                _say(state, f"  {a.release or a.message_file} (release {a.release_id}): {a.status}: "
                            f"{a.error_text or 'no error text'}")
    code = recipients.worst_exit_code(codes)
    if as_json:
        _print_json({"exit_code": code, "recipients": results})
    ctx.exit(code)


# --------------------------------------------------------------------------- validate


def _xml_files(paths: Sequence[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(q for q in p.rglob("*.xml") if q.is_file() and not q.name.startswith("BatchComplete_")))
        else:
            out.append(p)
    return out


@cli.command(
    short_help="Validate ERN files against DDEX's XSDs and release-profile rules (which you download).",
    epilog=_example(
        "etl validate out/ --schema-dir ~/ddex/schemas",
        "ETL_SCHEMA_DIR=~/ddex/schemas etl validate out/1.xml out/2.xml",
        "etl validate out/ --profile --rules-dir ~/ddex/schematron",
    ),
)
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--schema-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder holding ern/43, ern/42, ern/382 (default: transform.schema_dir / ETL_SCHEMA_DIR).",
)
@click.option(
    "--profile",
    is_flag=True,
    help="Also check DDEX's release-profile rules (what a store checks beyond the XSD); needs --rules-dir.",
)
@click.option(
    "--rules-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder with DDEX's compiled profile rules, ern4/*.xsl and ern382/*.xsl "
    "(default: transform.rules_dir / ETL_RULES_DIR).",
)
@click.option("--max-errors", type=click.IntRange(min=1), default=5, show_default=True, help="Issues shown per file.")
@click.option("--no-progress", is_flag=True, help="No progress bar while checking profile rules.")
@click.pass_context
def validate(
    ctx: click.Context,
    paths: tuple[Path, ...],
    schema_dir: Path | None,
    profile: bool,
    rules_dir: Path | None,
    max_errors: int,
    no_progress: bool,
) -> None:
    """Validate ERN documents (files, or folders searched for *.xml).

    The ERN version is read from each document's namespace. Prints the first
    errors of each invalid file with line numbers; exit code 1 if any file
    is invalid. DDEX's XSDs are not shipped: download them from ddex.net
    into a folder with ern/43, ern/42 and ern/382 subfolders.

    With --profile, each file is also checked against DDEX's release-profile
    rules (Schematron compiled to XSLT 2.0, from DDEX's validator; not
    shipped either), chosen by the message's ReleaseProfileVersionId. Fatal
    Error and Error rules make a file fail; Conditional rules and warnings
    are counted as advice. Without --schema-dir (and no transform.schema_dir),
    --profile checks the rules only.
    """
    from .ern.validate import validate_paths

    state = _state(ctx)
    tc = state.config().transform
    if schema_dir is None:
        schema_dir = tc.schema_dir
    if schema_dir is None and not profile:
        raise ConfigError(
            "no schema folder: pass --schema-dir, or set transform.schema_dir in etl.toml or ETL_SCHEMA_DIR; "
            "download the ERN XSDs from https://ddex.net (folders ern/43, ern/42, ern/382)"
        )
    if profile:
        rules_dir = rules_dir or tc.rules_dir
        if rules_dir is None:
            raise ConfigError(
                "no rules folder: pass --rules-dir, or set transform.rules_dir in etl.toml or ETL_RULES_DIR; "
                "it holds DDEX's release-profile rules compiled to XSLT (ern4/Audio.xsl, ern382/AudioAlbumMusicOnly.xsl, ...), "
                "from DDEX's ern-validator"
            )
    elif rules_dir is not None:
        raise ConfigError("--rules-dir needs --profile; fix: add --profile to check DDEX's release-profile rules")
    files = _xml_files(paths)
    if not files:
        raise ConfigError(f"no .xml files found in {', '.join(str(p) for p in paths)}")
    bad: set[Path] = set()
    if schema_dir is not None:
        reports = validate_paths(files, schema_dir, max_errors=max_errors)
        for r in reports:
            version = f"ERN {r.ern_version}" if r.ern_version else "ERN version unknown"
            if r.ok:
                if state.verbosity > 0 or len(reports) == 1:
                    _echo(f"{r.path}: valid ({version})")
                continue
            bad.add(r.path)
            _echo(f"{r.path}: INVALID ({version})")
            for issue in r.issues:
                _echo(f"  line {issue.line}: {issue.message}")
    if profile:
        assert rules_dir is not None
        _profile_check(state, files, rules_dir, max_errors, no_progress, bad)
    _echo(f"{len(files):,} file{'s' if len(files) != 1 else ''}: {len(files) - len(bad):,} valid, {len(bad):,} invalid")
    if bad:
        ctx.exit(ExitCode.FAILED)


def _profile_check(state: Any, files: list[Path], rules_dir: Path, max_errors: int, no_progress: bool, bad: set[Path]) -> None:
    """Run DDEX's profile rules over ``files``; print each failing file's rules; add them to ``bad``."""
    from collections import Counter

    from .ern.profile import check_paths
    from .progress import reporter_for

    # A bar only where it helps: a large folder on a terminal.
    reporter = reporter_for("profile rules", False if no_progress or len(files) < 50 else None, 2.0)
    reporter.start(len(files))
    counts = {"done": 0, "failing": 0}

    def tick(report: Any) -> None:
        counts["done"] += 1
        counts["failing"] += 0 if report.ok else 1
        reporter.update(counts["done"], counts["failing"])

    try:
        reports = check_paths(files, rules_dir, on_file=tick)
    finally:
        reporter.stop()
    advice: Counter[str] = Counter()
    for r in reports:
        advice.update(f.role for f in r.failures if not f.counted)
        if r.ok:
            if state.verbosity > 0 or len(reports) == 1:
                _echo(f"{r.path}: passes DDEX's profile rules ({', '.join(r.rule_sets)})")
            continue
        bad.add(r.path)
        if r.error:
            _echo(f"{r.path}: NOT CHECKED: {r.error}")
            continue
        failed = r.counted
        _echo(f"{r.path}: FAILS {len(failed)} profile rule{'s' if len(failed) != 1 else ''} ({', '.join(r.rule_sets)})")
        for f in failed[:max_errors]:
            _echo(f"  [{f.role}] {f.text}")
            _echo(f"    at {f.location}")
        if len(failed) > max_errors:
            _echo(f"  ... and {len(failed) - max_errors} more")
    if advice:
        _echo("advice (not counted): " + ", ".join(f"{n:,} {role}" for role, n in sorted(advice.items())))


# --------------------------------------------------------------------------- db


@cli.group(short_help="Manage the state tables and the embedded server.")
def db() -> None:
    """Manage the connector's state tables (alembic migrations in their own
    schema) and the embedded PostgreSQL.

    \b
    Examples:
      etl db upgrade
      etl db current
      etl db downgrade --revision base
      etl db stop
    """


@db.command(short_help="Create or upgrade the state tables.", epilog=_example("etl db upgrade"))
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@click.pass_context
def upgrade(ctx: click.Context, revision: str) -> None:
    """Create or upgrade the state tables (runs, checkpoints, rejects, documents).

    `etl run` does this automatically.
    """
    from . import state as state_tables
    from .db import engine_for

    cfg = _state(ctx).config()
    schema = cfg.database.state_schema
    engine = engine_for(cfg)
    try:
        state_tables.upgrade(engine, schema, revision)
        now = state_tables.current(engine, schema)
    finally:
        engine.dispose()
    _say(_state(ctx), f"state tables in schema {schema!r} at revision {now}")


@db.command(short_help="Downgrade the state tables.", epilog=_example("etl db downgrade", "etl db downgrade --revision base"))
@click.option("--revision", default="-1", show_default=True, help="Target revision (base removes the tables).")
@click.pass_context
def downgrade(ctx: click.Context, revision: str) -> None:
    """Downgrade the state tables (default one revision; `base` drops them and their data)."""
    from . import state as state_tables
    from .db import engine_for

    cfg = _state(ctx).config()
    schema = cfg.database.state_schema
    engine = engine_for(cfg)
    try:
        state_tables.downgrade(engine, schema, revision)
        now = state_tables.current(engine, schema)
    finally:
        engine.dispose()
    _say(_state(ctx), f"state tables in schema {schema!r} at revision {now or '(none)'}")


@db.command(short_help="Show the applied state revision.", epilog=_example("etl db current"))
@click.pass_context
def current(ctx: click.Context) -> None:
    """Print the applied revision of the state tables and whether it is the newest."""
    from . import state as state_tables
    from .db import engine_for

    cfg = _state(ctx).config()
    schema = cfg.database.state_schema
    engine = engine_for(cfg)
    try:
        now = state_tables.current(engine, schema)
    finally:
        engine.dispose()
    head = state_tables.head()
    if now is None:
        _echo(f"schema {schema!r}: no state tables yet (head is {head}); `etl db upgrade` or `etl run` creates them")
    else:
        _echo(f"{now}{' (head)' if now == head else f' (head is {head}; run `etl db upgrade`)'}")


@db.command(short_help="Stop the embedded PostgreSQL.", epilog=_example("etl db stop"))
@click.pass_context
def stop(ctx: click.Context) -> None:
    """Stop the embedded PostgreSQL (database.embedded_dir). Its data stays; the
    next command starts it again."""
    from .db import stop_embedded

    cfg = _state(ctx).config()
    where = cfg.database.embedded_dir.resolve()
    if stop_embedded(where):
        _say(_state(ctx), f"stopped the embedded PostgreSQL in {where}")
    else:
        _say(_state(ctx), f"no embedded PostgreSQL running in {where}")


# --------------------------------------------------------------------------- config


@cli.group("config", short_help="Check the configuration.")
def config_group() -> None:
    """Inspect the configuration.

    \b
    Examples:
      etl config check
      etl --config prod.toml config check
    """


@config_group.command(
    short_help="Validate the configuration and print it (password masked).",
    epilog=_example("etl config check", "ETL_DATABASE_URL=postgresql://etl@db/catalog etl config check"),
)
@click.option(
    "--connect", is_flag=True,
    help="Also connect, EXPLAIN the keys, rows and changed-keys queries, and try the output.",
)
@click.pass_context
def check(ctx: click.Context, connect: bool) -> None:
    """Validate etl.toml plus ETL_* overrides and print the resolved
    configuration, with any password masked. Exit code 2 lists every problem.

    With --connect it also tries what a run will do: connects, has PostgreSQL
    plan every catalog query (EXPLAIN, nothing runs), looks at the state
    schema and writes a probe file to the output folder, and reports each
    problem with its fix (exit 2; 1 when only the server was unreachable).
    """
    from .config import ENV_OVERRIDES, mask_url, unused_scheduler_notice

    cfg = _state(ctx).config()
    notice = unused_scheduler_notice(cfg)
    if notice is not None:
        _to_stderr(_state(ctx), f"warning: {notice}", level=logging.WARNING)
    if connect:
        _connect_check(ctx, cfg)
        return
    source = str(cfg.source) if cfg.source else "(no etl.toml: defaults)"
    _echo(f"# configuration OK; read from {source}")
    _echo("# (the file only: `etl config check --connect` also tries the server, the queries and the output)")
    applied = [name for name in ENV_OVERRIDES if os.environ.get(name)]
    if applied:
        _echo(f"# environment overrides: {', '.join(applied)}")
    for section in ("database", "extract", "transform", "load", "run"):
        _echo(f"\n[{section}]")
        obj = getattr(cfg, section)
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if section == "database" and f.name == "url":
                if value:
                    _echo(f"url = {json.dumps(mask_url(value))}")
                else:
                    _echo("# url not set: the embedded PostgreSQL in embedded_dir is used")
                continue
            if value is None:
                _echo(f"# {f.name}: not set")
                continue
            _echo(f"{f.name} = {_toml_value(value)}")
    for r in cfg.recipients:
        _echo("\n[[recipients]]")
        for f in dataclasses.fields(r):
            value = getattr(r, f.name)
            if f.name == "target" and value:
                value = mask_url(value)
            if value is None:
                _echo(f"# {f.name}: not set (from [transform] / [load])")
            elif isinstance(value, dict):
                _echo(f"{f.name} = {{{', '.join(f'{k} = {_toml_value(v)}' for k, v in value.items())}}}")
            elif isinstance(value, tuple):
                _echo(f"{f.name} = [{', '.join(_toml_value(v) for v in value)}]")
            else:
                _echo(f"{f.name} = {_toml_value(value)}")


def _connect_check(ctx: click.Context, cfg: Config) -> None:
    from .config import mask_secrets
    from .run.preflight import preflight

    report = preflight(cfg)
    for c in report.checks:
        _echo(f"{'ok' if c.ok else 'FAILED':>6}  {c.name}: {mask_secrets(c.detail)}")
    failed = sum(not c.ok for c in report.checks)
    _echo("configuration OK: connected, every query plans, the output is writable" if report.ok
          else f"{failed} problem{'s' if failed != 1 else ''} found")
    ctx.exit(report.exit_code)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)


# --------------------------------------------------------------------------- entry point


def main(argv: Iterable[str] | None = None) -> NoReturn:
    """The ``etl`` console script (and ``python -m ddex_etl``)."""
    # pgserver's platformdirs warns when XDG_RUNTIME_DIR is unset (cron, CI,
    # containers): harmless, and noise in a scheduler's log.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="etl")
    except KeyboardInterrupt:
        # A Ctrl-C that lands after the command's own handling (the second of
        # two, say): the run is marked interrupted by then.
        exit_process(ExitCode.INTERRUPTED)
    except SystemExit as done:
        if done.code is None or isinstance(done.code, int):
            exit_process(done.code or 0)
        raise  # a message: the interpreter prints it
    sys.exit(0)  # pragma: no cover - click's standalone mode always exits


def exit_process(code: int) -> NoReturn:
    """Exit with ``code``; an interrupted run leaves at once.

    After an interrupt the run is already marked interrupted in the database,
    and interpreter shutdown would reset the signal handlers to the default
    first: a second Ctrl-C landing then would kill the process by SIGINT
    instead of giving the documented exit code. So that exit skips shutdown
    (output flushed first).
    """
    if code == ExitCode.INTERRUPTED:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)
    sys.exit(code)
