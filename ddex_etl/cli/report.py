"""What the runs left behind: ``etl status``, ``etl runs``, ``etl errors``."""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import click

from ..errors import printable
from .app import _console, _echo, _example, _print_json, _state


def _when(value: dt.datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _num(value: float | int | None, fmt: str = ",.0f") -> str:
    return "-" if value is None else format(value, fmt)


@click.command(
    short_help="Show each job's latest run and latest success.",
    epilog=_example("etl status", "etl status --json"),
)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Show, per job, the newest run (status, counts) and the newest successful run."""
    from rich.table import Table

    from .. import run as run_api

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


@click.command(
    short_help="List recent runs in a table.",
    epilog=_example("etl runs", "etl runs --limit 5"),
)
@click.option("--limit", "-n", type=click.IntRange(min=1), default=20, show_default=True, help="How many runs.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def runs(ctx: click.Context, limit: int, as_json: bool) -> None:
    """List the most recent runs of every job, newest first."""
    from rich.table import Table

    from .. import run as run_api

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
    for r in rows:
        if r.note:
            _echo(f"run {r.run_id}: {r.note}")


@click.command(
    short_help="List the releases a run rejected, with the reason and the fix.",
    epilog=_example("etl errors", "etl errors 42 --json"),
)
@click.argument("run_id", type=int, required=False)
@click.option("--all", "include_resolved", is_flag=True, help="Include rejects a later retry resolved.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON (with the input needed to reproduce).")
@click.pass_context
def errors(ctx: click.Context, run_id: int | None, include_resolved: bool, as_json: bool) -> None:
    """List the releases RUN_ID rejected (default: the job's newest run, full,
    incremental or targeted; with [[recipients]], each recipient's newest run;
    what a retry still rejects stays with the run it retried), and the
    releases the stores rejected in their acknowledgements (read by `etl acks`
    and `etl run`). A store rejection delivered again since shows as
    "re-delivered, awaiting acknowledgement" until the store answers; an
    acceptance clears it.
    """
    from .. import run as run_api

    cfg = _state(ctx).config()
    if cfg.recipients:
        from ..run import recipients

        found = recipients.rejected(cfg, run_id, include_resolved=include_resolved)
        if as_json:
            _print_json([
                {"recipient": name, "rejected": [r.as_dict() for r in rows],
                 "store_rejected": [a.as_dict() for a in acks]}
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
    # Store rejections delivered again since: one line each, until the store answers the new delivery.
    waiting = [r for r in acks if r.redelivered_by_run is not None]
    for r in waiting:
        a = r.ack
        what = f"release {a.release_id}" if a.release_id is not None else f"release folder {a.release!r}"
        _echo(f"{indent}{what} (batch {a.batch_id}, run {a.run_id}, rejected by the store): "
              f"re-delivered by run {r.redelivered_by_run}, awaiting acknowledgement")
    acks = [r.ack for r in acks if r.redelivered_by_run is None]
    for a in acks:
        # The store's text (status, error, proposed action, names) is shown escaped: one line each, always.
        what = f"release {a.release_id}" if a.release_id is not None else f"release folder {printable(a.release)}"
        action = f"; the store proposes: {printable(a.proposed_action)}" if a.proposed_action else ""
        manual = "; manual check required before re-delivery" if a.manual_check_required else ""
        _echo(f"{indent}{what} (batch {a.batch_id}, run {a.run_id}, rejected by the store: "
              f"{printable(a.status)}){action}{manual}")
        _echo(f"{indent}  {printable(a.error_text or 'no error text')} ({printable(a.message_file)}); fix what the "
              "store names, then `etl run --release-id ID --force` delivers it again")
    for r in rows:
        retry = "a retry may help" if r.retryable else "fix the data, then `etl retry-failed`"
        resolved = f", resolved by run {r.resolved_by_run}" if r.resolved_at else ""
        _echo(f"{indent}release {r.release_id} (run {r.run_id}, {r.stage}, {r.error_kind}, "
              f"attempts {r.attempts}{resolved}): {retry}")
        _echo(f"{indent}  {r.message}")
    store = f", {len(acks):,} rejected by the store" if acks else ""
    store += f", {len(waiting):,} re-delivered and awaiting the store's acknowledgement" if waiting else ""
    _echo(f"{indent}{len(rows):,} rejected release{'s' if len(rows) != 1 else ''}{store}")
