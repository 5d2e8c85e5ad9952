"""``etl db``: the connector's state tables (alembic) and the embedded PostgreSQL."""
from __future__ import annotations

import click

from .app import _echo, _example, _say, _state


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
@click.pass_context
def upgrade(ctx: click.Context, revision: str) -> None:
    """Create or upgrade the state tables (runs, checkpoints, rejects, documents).

    `etl run` does this automatically.
    """
    from .. import state as state_tables
    from ..db import engine_for

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
    from .. import state as state_tables
    from ..db import engine_for

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
    if now is None:
        _echo(f"schema {schema!r}: no state tables yet (head is {head}); `etl db upgrade` or `etl run` creates them")
    else:
        _echo(f"{now}{' (head)' if now == head else f' (head is {head}; run `etl db upgrade`)'}")


@db.command(short_help="Stop the embedded PostgreSQL.", epilog=_example("etl db stop"))
@click.pass_context
def stop(ctx: click.Context) -> None:
    """Stop the embedded PostgreSQL (database.embedded_dir). Its data stays; the
    next command starts it again."""
    from ..db import stop_embedded

    cfg = _state(ctx).config()
    where = cfg.database.embedded_dir.resolve()
    if stop_embedded(where):
        _say(_state(ctx), f"stopped the embedded PostgreSQL in {where}")
    else:
        _say(_state(ctx), f"no embedded PostgreSQL running in {where}")
