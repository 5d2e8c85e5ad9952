"""``etl config``: validate the configuration, print it masked, and with --connect try it."""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import TYPE_CHECKING, Any

import click

from .app import _echo, _example, _print_json, _state, _to_stderr

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
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object: ok, exit_code and the resolved configuration (with --connect: checks).")
@click.pass_context
def check(ctx: click.Context, connect: bool, as_json: bool) -> None:
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

    _state(ctx).known.update(command="config check", ok=False)
    cfg = _state(ctx).config()
    notice = unused_scheduler_notice(cfg)
    if notice is not None:
        _to_stderr(_state(ctx), f"warning: {notice}", level=logging.WARNING)
    if connect:
        _connect_check(ctx, cfg, as_json)
        return
    if as_json:
        _print_json({"ok": True, "exit_code": 0, "source": str(cfg.source.resolve()) if cfg.source else None,
                     "environment_overrides": [name for name in ENV_OVERRIDES if os.environ.get(name)],
                     **resolved(cfg)})
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
            if f.name == "target" and value and "://" in value:
                value = mask_url(value)
            if f.name == "party_name" and not value:
                _echo(f"# party_name: not set (MessageRecipient's name is the recipient's name, {_toml_value(r.name)})")
                continue
            if value is None:
                _echo(f"# {f.name}: not set (from [transform] / [load])")
            elif isinstance(value, dict):
                _echo(f"{f.name} = {{{', '.join(f'{k} = {_toml_value(v)}' for k, v in value.items())}}}")
            elif isinstance(value, tuple):
                _echo(f"{f.name} = [{', '.join(_toml_value(v) for v in value)}]")
            else:
                _echo(f"{f.name} = {_toml_value(value)}")


def resolved(cfg: Config) -> dict[str, Any]:
    """The configuration as `config check --json` prints it: one object per section, then ``recipients``.

    Keys are the etl.toml keys; unset values are null; the database URL and
    targets have their password masked; a recipient's ``party_name`` is the
    name its messages carry (its ``name`` when not set).
    """
    from ..config import mask_url

    def plain(value: Any) -> Any:
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        return str(value)

    out: dict[str, Any] = {}
    for section in ("database", "extract", "transform", "load", "run"):
        obj = getattr(cfg, section)
        values = {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
        if section == "database" and values.get("url"):
            values["url"] = mask_url(values["url"])
        out[section] = values
    recipients = []
    for r in cfg.recipients:
        values = {f.name: plain(getattr(r, f.name)) for f in dataclasses.fields(r)}
        if values.get("target") and "://" in values["target"]:
            values["target"] = mask_url(values["target"])
        values["party_name"] = r.party_name or r.name
        recipients.append(values)
    out["recipients"] = recipients
    return out


def _connect_check(ctx: click.Context, cfg: Config, as_json: bool = False) -> None:
    from ..config import mask_secrets
    from ..run.preflight import preflight

    report = preflight(cfg)
    if as_json:
        _print_json({"ok": report.ok, "exit_code": report.exit_code,
                     "checks": [{"name": c.name, "ok": c.ok, "detail": mask_secrets(c.detail)} for c in report.checks]})
        ctx.exit(report.exit_code)
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
