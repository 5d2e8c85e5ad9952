"""``etl config``: validate the configuration, print it masked, and with --connect try it."""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import TYPE_CHECKING, Any

import click

from .app import _echo, _example, _state, _to_stderr

if TYPE_CHECKING:
    from ..config import Config


@click.group("config", short_help="Check the configuration.")
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
    help="Also connect, EXPLAIN the keys, rows and changed-keys queries, try the output, the media root "
    "and every recipient's target.",
)
@click.pass_context
def check(ctx: click.Context, connect: bool) -> None:
    """Validate etl.toml plus ETL_* overrides and print the resolved
    configuration, with any password masked. Exit code 2 lists every problem.

    With --connect it also tries what a run will do: connects, has PostgreSQL
    plan every catalog query (EXPLAIN, nothing runs), looks at the state
    schema, writes a probe file to the output folder, looks for the first
    releases' media files in the media root, and tries each recipient's
    target (credentials, login, host key, a probe file written, renamed and
    deleted; a bucket listed). Reports each problem with its fix (exit 2; 1
    when only a server or store was unreachable).
    """
    from ..config import ENV_OVERRIDES, mask_url, unused_scheduler_notice

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
    from ..config import mask_secrets
    from ..run.preflight import preflight

    report = preflight(cfg)
    for c in report.checks:
        _echo(f"{'ok' if c.ok else 'FAILED':>6}  {c.name}: {mask_secrets(c.detail)}")
    failed = sum(not c.ok for c in report.checks)
    _echo("configuration OK: connected, every query plans, the output, media and targets are ready" if report.ok
          else f"{failed} problem{'s' if failed != 1 else ''} found")
    ctx.exit(report.exit_code)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)
