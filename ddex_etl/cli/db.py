"""``etl db``: the connector's state tables (alembic) and the embedded PostgreSQL."""
from __future__ import annotations

from typing import Any

import click

from .app import _echo, _example, _print_json, _say, _state

JSON_HELP = "Print the outcome as one JSON object on stdout."


@click.group(short_help="Manage the state tables and the embedded server.")
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
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.pass_context
def upgrade(ctx: click.Context, revision: str, as_json: bool) -> None:
    """Create or upgrade the state tables (runs, checkpoints, rejects, documents).

    `etl run` does this automatically.
    """
    from .. import state as state_tables

    _migrate(ctx, state_tables.upgrade, revision, as_json)


@db.command(short_help="Downgrade the state tables.", epilog=_example("etl db downgrade", "etl db downgrade --revision base"))
@click.option("--revision", default="-1", show_default=True, help="Target revision (base removes the tables).")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.pass_context
def downgrade(ctx: click.Context, revision: str, as_json: bool) -> None:
    """Downgrade the state tables (default one revision; `base` drops them and their data)."""
    from .. import state as state_tables

    _migrate(ctx, state_tables.downgrade, revision, as_json)


@db.command(short_help="Show the applied state revision.", epilog=_example("etl db current", "etl db current --json"))
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.pass_context
def current(ctx: click.Context, as_json: bool) -> None:
    """Print the applied revision of the state tables and whether it is the newest."""
    from .. import state as state_tables
    from ..db import engine_for

    cfg = _state(ctx).config()
    schema = cfg.database.state_schema
    engine = engine_for(cfg)
    try:
        now = state_tables.current(engine, schema)
    finally:
        engine.dispose()
    head = state_tables.head()
    if as_json:
        _print_json(_revision(schema, now))
        return
    if now is None:
        _echo(f"schema {schema!r}: no state tables yet (head is {head}); `etl db upgrade` or `etl run` creates them")
    else:
        _echo(f"{now}{' (head)' if now == head else f' (head is {head}; run `etl db upgrade`)'}")


@db.command(short_help="Stop the embedded PostgreSQL.", epilog=_example("etl db stop"))
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.pass_context
def stop(ctx: click.Context, as_json: bool) -> None:
    """Stop the embedded PostgreSQL (database.embedded_dir). Its data stays; the
    next command starts it again."""
    from ..db import stop_embedded

    cfg = _state(ctx).config()
    where = cfg.database.embedded_dir.resolve()
    stopped = stop_embedded(where)
    if as_json:
        _print_json({"embedded_dir": str(where), "stopped": stopped})
        return
    if stopped:
        _say(_state(ctx), f"stopped the embedded PostgreSQL in {where}")
    else:
        _say(_state(ctx), f"no embedded PostgreSQL running in {where}")


def _revision(schema: str, now: str | None) -> dict[str, object]:
    """The JSON of `etl db upgrade | downgrade | current --json`: schema, revision (null: no tables), head."""
    from .. import state as state_tables

    head = state_tables.head()
    return {"schema": schema, "revision": now, "head": head, "at_head": now == head}


def _migrate(ctx: click.Context, step: Any, revision: str, as_json: bool) -> None:
    """Move the state tables to ``revision`` with ``step`` (upgrade or downgrade) and say where they are now."""
    from .. import state as state_tables
    from ..db import engine_for

    cfg = _state(ctx).config()
    schema = cfg.database.state_schema
    engine = engine_for(cfg)
    try:
        step(engine, schema, revision)
        now = state_tables.current(engine, schema)
    finally:
        engine.dispose()
    if as_json:
        _print_json(_revision(schema, now))
        return
    _say(_state(ctx), f"state tables in schema {schema!r} at revision {now or '(none)'}")
