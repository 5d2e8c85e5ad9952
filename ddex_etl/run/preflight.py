"""`etl config check --connect`: try what a run will do, before the night it runs.

``etl config check`` alone only reads the file: a wrong password, a query
naming a table that is not there or an output folder nobody may write all
pass it. ``preflight(cfg)`` connects, asks PostgreSQL to plan every catalog
query the configuration names (``EXPLAIN``: parsed, resolved and planned,
never run), looks at the state schema and tries the output, and reports
each problem with its fix. Nothing is written to the catalog.

Then what delivery depends on: the media root (readable, and a sample of
the catalog's media files in it: the first releases' tracks and covers)
and, for each recipient with a target, the target as an upload meets it
(``delivery.target_probe``: credentials present, login and host key, a probe file
written, renamed and deleted in the folder, or the bucket listed).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
import sqlalchemy as sa

from ..config import Config
from ..db import engine_for, map_db_error
from ..errors import ConfigError, EtlError, ExitCode, TransientError


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
    except ConfigError as exc:
        return Check(name, False, "; ".join(exc.problems))
    except EtlError as exc:
        return Check(name, False, str(exc), retryable=isinstance(exc, TransientError))
    except OSError as exc:  # a media root or folder the library could not open
        return Check(name, False, f"{what}: {type(exc).__name__}: {exc}")
    except (sa.exc.SQLAlchemyError, psycopg.Error) as exc:
        err = map_db_error(exc, what)
        return Check(name, False, str(err), retryable=isinstance(err, TransientError))
    return Check(name, True, found or what)


def preflight(cfg: Config) -> PreflightReport:
    """Connect, ``EXPLAIN`` the keys, rows and changed-keys queries, check the state schema and the output."""
    from .. import extract, state
    from ..extract import catalog_read
    from ..load import loader_for, new_batch_id

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

        def output() -> str:
            # A batch id like the run's own (a made-up one is refused as not a DDEX batch id).
            loader = loader_for(cfg, batch_id=new_batch_id() if cfg.load.layout == "ddex-batch" else None)
            if cfg.load.target == "files":
                loader.check()
                return f"output folder {cfg.load.directory.resolve()} is writable"
            return f"output table {cfg.database.state_schema}.{cfg.load.table} (created by `etl run`)"

        checks.append(_attempt("output", "checking the output", output))
        checks.extend(delivery_checks(cfg, engine if connected.ok else None))
    finally:
        engine.dispose()
    return PreflightReport(checks)


def media_roots(cfg: Config) -> dict[str, list[str]]:
    """Each media root a run reads, with the recipients reading it ("" for the [transform] one)."""
    if cfg.load.target != "files" or cfg.load.layout != "ddex-batch":
        return {}
    roots: dict[str, list[str]] = {}
    for r in cfg.recipients or (None,):
        root = (r.media_root if r is not None else None) or cfg.load.media_root
        if root:
            roots.setdefault(root, []).append(r.name if r is not None else "")
    return roots


def delivery_checks(cfg: Config, engine: sa.Engine | None, *, write: bool = True) -> list[Check]:
    """The media roots (with a sample of the catalog's files when ``engine`` is given) and every recipient's target."""
    checks: list[Check] = []
    for root, names in media_roots(cfg).items():
        label = "media root" + (f" ({', '.join(names)})" if any(names) else "")
        checks.append(_attempt(label, f"checking the media root {root}", lambda root=root: _media(cfg, engine, root)))
    for r in cfg.recipients:
        if r.target is None:
            continue
        checks.append(_attempt(f"recipient {r.name}: target", f"checking recipient {r.name}'s target",
                               lambda r=r: target_check(r, write=write)))
    return checks


def target_check(recipient: Any, *, write: bool = True) -> str:
    """``delivery.target_probe.probe_target`` for one recipient, any library fault classified."""
    from ..delivery.target_probe import probe_target

    return probe_target(recipient.target, dict(recipient.target_options), write=write)


SAMPLE_RELEASES = 10  # releases whose media files are looked for in the media root


def _media(cfg: Config, engine: sa.Engine | None, root_url: str) -> str:
    """The media root opens, and the first releases' media files are in it (looked at, never read)."""
    from .. import extract
    from ..delivery.media import check_media_root, with_resource_uris
    from ..delivery.media import media_root as open_media
    from ..delivery.resources import check_resources

    check_media_root(root_url)
    root = open_media(root_url)
    if engine is None:
        return f"media root {root_url} opens (no connection: the catalog's files were not looked for)"
    first = next(iter(extract.iter_key_chunks(engine, dataclasses.replace(cfg.extract, chunk_size=SAMPLE_RELEASES))),
                 None)
    ids = [int(i) for i in first.release_ids] if first is not None else []
    if not ids:
        return f"media root {root_url} opens (the catalog has no releases to look for)"
    with engine.connect() as conn:
        releases, _bad = extract.fetch_releases(conn, cfg.extract, ids)
        conn.rollback()
    files = 0
    problems: list[str] = []
    for release in releases:
        _, planned, _unsafe = with_resource_uris(release)
        files += len({p.item.source for p in planned})
        problems += [str(p) for p in check_resources(planned, root, allow_unverified=True,
                                                     max_bytes=cfg.load.max_media_bytes)]
    if problems:
        raise EtlError(
            f"media root {root_url}: {len(problems)} of the {files} media files of the catalog's first "
            f"{len(releases)} releases cannot be read there (first: {problems[0]}); fix: point load.media_root "
            "(or the recipient's media_root) at the folder or URL the catalog's paths are relative to"
        )
    return f"media root {root_url}: all {files} media files of the catalog's first {len(releases)} releases are there"


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
