"""`etl config check --connect`: try what a run will do, before the night it runs.

``etl config check`` alone only reads the file: a wrong password, a query
naming a table that is not there or an output folder nobody may write all
pass it. ``preflight(cfg)`` connects, asks PostgreSQL to plan every catalog
query the configuration names (``EXPLAIN``: parsed, resolved and planned,
never run), looks at the state schema and tries the output, and reports
each problem with its fix. Nothing is written to the catalog.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
import sqlalchemy as sa

from ..config import Config
from ..db import engine_for, map_db_error
from ..errors import EtlError, ExitCode, TransientError


@dataclass(frozen=True)
class Check:
    """One thing tried: ``ok``, and what was found (or what is wrong and the fix)."""

    name: str
    ok: bool
    detail: str
    retryable: bool = False  # the server was unreachable: the same check may pass later


@dataclass(frozen=True)
class PreflightReport:
    """Every check, in the order a run meets them."""

    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def exit_code(self) -> int:
        """0 all passed; 1 only an unreachable server failed (try later); 2 a setting needs a fix."""
        failed = [c for c in self.checks if not c.ok]
        if not failed:
            return ExitCode.OK
        return ExitCode.FAILED if all(c.retryable for c in failed) else ExitCode.USAGE


def _explain(conn: sa.Connection, text: str, params: dict[str, Any]) -> None:
    conn.execute(sa.text("EXPLAIN " + text), params)


def _attempt(name: str, what: str, fn: Callable[[], str | None]) -> Check:
    try:
        found = fn()
    except EtlError as exc:
        return Check(name, False, str(exc), retryable=isinstance(exc, TransientError))
    except (sa.exc.SQLAlchemyError, psycopg.Error) as exc:
        err = map_db_error(exc, what)
        return Check(name, False, str(err), retryable=isinstance(err, TransientError))
    return Check(name, True, found or what)


def preflight(cfg: Config) -> PreflightReport:
    """Connect, ``EXPLAIN`` the keys, rows and changed-keys queries, check the state schema and the output."""
    from .. import extract, state
    from ..extract import catalog_read
    from ..load import loader_for

    checks: list[Check] = []
    engine = engine_for(cfg)
    try:
        def connect() -> str:
            with engine.connect() as conn:
                version = conn.execute(sa.text("SHOW server_version")).scalar_one()
                who = conn.execute(sa.text("SELECT current_user || ' on database ' || current_database()")).scalar_one()
            return f"connected as {who} (PostgreSQL {version})"

        connected = _attempt("connection", "connecting to PostgreSQL", connect)
        checks.append(connected)
        if connected.ok:
            checks.extend(_query_checks(engine, cfg, extract, catalog_read))
            checks.append(_attempt("catalog triggers", "looking at the catalog's triggers", lambda: _triggers(engine)))
            checks.append(_attempt("state schema", "looking at the state schema", lambda: _state_schema(engine, cfg, state)))
        else:
            checks.append(Check("catalog queries", False, "not checked: no connection (fix the connection first)",
                                retryable=connected.retryable))
    finally:
        engine.dispose()

    def output() -> str:
        loader = loader_for(cfg, batch_id="preflight" if cfg.load.layout == "ddex-batch" else None)
        if cfg.load.target == "files":
            loader.check()
            return f"output folder {cfg.load.directory.resolve()} is writable"
        return f"output table {cfg.database.state_schema}.{cfg.load.table} (created by `etl run`)"

    checks.append(_attempt("output", "checking the output", output))
    return PreflightReport(checks)


def _query_checks(engine: sa.Engine, cfg: Config, extract: Any, catalog_read: Any) -> list[Check]:
    ex = cfg.extract
    now = dt.datetime.now(dt.timezone.utc)
    out: list[Check] = []

    def plan(label: str, load: Callable[[], Any], params: dict[str, Any]) -> Check:
        def run() -> str:
            query = load()  # an unreadable or empty file fails here, with its own message
            try:
                with engine.connect() as conn:
                    _explain(conn, query.text, params)
                    conn.rollback()
            except (sa.exc.SQLAlchemyError, psycopg.Error) as exc:
                raise map_db_error(exc, f"planning the {label} {query.path}") from exc
            return f"{query.path} plans"

        return _attempt(label, f"planning the {label}", run)

    keys_params: dict[str, Any] = (
        {"offset": 0, "limit": ex.chunk_size} if ex.mode == "offset" else {"after": extract.MIN_KEY, "limit": ex.chunk_size}
    )
    out.append(plan("keys query", lambda: extract.keys_query(ex), keys_params))
    if ex.rows_query is not None:
        out.append(plan("rows query", lambda: extract.rows_query(ex), {"release_ids": []}))
    else:

        def pieces() -> str:
            with engine.connect() as conn:
                dbapi = conn.connection.driver_connection
                for name, text in catalog_read.chunk_queries().items():
                    dbapi.execute("EXPLAIN " + text, {"release_ids": [], "artist_ids": []})  # type: ignore[union-attr]
                conn.rollback()
            return f"rows queries {catalog_read.CHUNK_SQL_DIR} (the reference catalog) plan"

        out.append(_attempt("rows query", f"planning the reference catalog's queries in {catalog_read.CHUNK_SQL_DIR}", pieces))
    changed = {"since": now - dt.timedelta(days=1), "until": now, "after": extract.MIN_KEY, "limit": ex.chunk_size}
    out.append(plan("changed-keys query", lambda: extract.changed_keys_query(ex), changed))
    return out


def _triggers(engine: sa.Engine) -> str:
    """The optional sql/catalog_triggers.sql: absent is fine, an older version is a problem (it misses changes)."""
    from ..extract.catalog_triggers import TRIGGERS_SQL, trigger_status

    with engine.connect() as conn:
        status = trigger_status(conn)
        conn.rollback()
    if status.outdated:
        raise EtlError(status.message())
    if status.installed:
        return f"the triggers of {TRIGGERS_SQL.name} are installed and current"
    return f"{TRIGGERS_SQL.name} not installed (optional: the catalog keeps updated_at itself)"


def _state_schema(engine: sa.Engine, cfg: Config, state: Any) -> str:
    schema = cfg.database.state_schema
    revision = state.current(engine, schema)
    if revision is not None:
        return f"state tables in schema {schema!r} at revision {revision}"
    with engine.connect() as conn:
        exists = conn.execute(
            sa.text("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = :s)"), {"s": schema}
        ).scalar_one()
        may = conn.execute(
            sa.text(
                "SELECT CASE WHEN :exists THEN has_schema_privilege(:s, 'CREATE') "
                "ELSE has_database_privilege(current_database(), 'CREATE') END"
            ),
            {"s": schema, "exists": exists},
        ).scalar_one()
    if not may:
        where = f"schema {schema!r}" if exists else "this database"
        raise EtlError(
            f"the state tables do not exist yet and this user may not create them in {where}; "
            f"fix: GRANT CREATE ON {'SCHEMA ' + schema if exists else 'DATABASE ' + 'the catalog'} to it, "
            "or set database.state_schema to a schema it owns"
        )
    return f"no state tables in schema {schema!r} yet; `etl run` creates them (this user may)"
