"""The ``etl`` group: global options, output helpers, the one error handler, ``main()``.

The commands live beside this module, one per command group, and
``__init__`` adds them to the group. Each command makes one library call.
Library modules are imported inside the commands so ``etl --help`` stays
fast and never touches a database.

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
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from .. import __version__
from ..errors import ConfigError, EtlError, ExitCode

if TYPE_CHECKING:
    from ..config import Config

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
            from ..config import load_config

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
        from ..config import mask_secrets

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
    from ..config import mask_secrets

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
    from ..logs import setup

    verbosity = -1 if quiet else min(verbose, 2)
    ctx.obj = CliState(config_path=config_path, debug=debug, verbosity=verbosity,
                       json=bool(ctx.meta.get("etl.json")), log_format=log_format)
    setup(2 if debug else verbosity, log_format)


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
