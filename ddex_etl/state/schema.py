"""The state schema: its alembic migrations, qualified table names, the database's clock."""
from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

import ddex_etl

from ..db import map_db_error, quote_ident
from ..errors import ConfigError, EtlError


def migrations_dir() -> Path:
    """The repository's ``migrations/`` folder (or the wheel's copy of it)."""
    return ddex_etl.data_dir("migrations")


def _alembic_config(connection: Connection, schema: str) -> Any:
    from alembic.config import Config as AlembicConfig

    where = migrations_dir()
    if not (where / "env.py").is_file():
        raise ConfigError(f"alembic migrations not found at {where}; fix: reinstall ddex-etl from its source tree")
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(where))
    cfg.attributes["connection"] = connection
    cfg.attributes["schema"] = schema
    return cfg


def _migration_lock_key(schema: str) -> int:
    return int.from_bytes(hashlib.sha256(f"ddex_etl:migrate:{schema}".encode()).digest()[:8], "big", signed=True)


def upgrade(engine: Engine, schema: str, revision: str = "head") -> None:
    """Create or upgrade the state tables in ``schema`` to ``revision``.

    Safe to call from several processes at once: a transaction-level advisory
    lock serialises them, and the second finds nothing left to do.
    """
    from alembic import command

    q = quote_ident(schema)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _migration_lock_key(schema)})
            conn.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {q}"))
            command.upgrade(_alembic_config(conn, schema), revision)
    except EtlError:
        raise
    except sa.exc.DBAPIError as exc:
        raise map_db_error(exc, f"upgrading the state tables in schema {schema!r}") from exc
    except Exception as exc:  # alembic reports unknown revisions with its own exceptions
        raise ConfigError(f"cannot upgrade schema {schema!r} to revision {revision!r}: {exc}") from exc


def downgrade(engine: Engine, schema: str, revision: str = "-1") -> None:
    """Downgrade the state tables in ``schema`` (default: one revision back; ``base`` removes them)."""
    from alembic import command

    try:
        with engine.begin() as conn:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _migration_lock_key(schema)})
            if _current(conn, schema) is None:
                raise ConfigError(f"schema {schema!r} has no state tables to downgrade; fix: `etl db upgrade` first")
            command.downgrade(_alembic_config(conn, schema), revision)
    except EtlError:
        raise
    except sa.exc.DBAPIError as exc:
        raise map_db_error(exc, f"downgrading the state tables in schema {schema!r}") from exc
    except Exception as exc:
        raise ConfigError(f"cannot downgrade schema {schema!r} to revision {revision!r}: {exc}") from exc


def current(engine: Engine, schema: str) -> str | None:
    """The applied revision in ``schema``, or None when the state tables do not exist."""
    try:
        with engine.connect() as conn:
            return _current(conn, schema)
    except sa.exc.DBAPIError as exc:
        raise map_db_error(exc, f"reading the state revision in schema {schema!r}") from exc


def _current(conn: Connection, schema: str) -> str | None:
    exists = conn.execute(
        sa.text("SELECT to_regclass(:t) IS NOT NULL"), {"t": f"{quote_ident(schema)}.alembic_version"}
    ).scalar()
    if not exists:
        return None
    rev = conn.execute(sa.text(f"SELECT version_num FROM {quote_ident(schema)}.alembic_version")).scalar()
    return str(rev) if rev is not None else None


# The newest revision under migrations/versions. Every run compares the
# schema with it; asking alembic instead costs ~0.1 s of imports and script
# parsing per run. tests/state/test_state.py checks it against alembic's head.
HEAD = "0006"


def head() -> str:
    """The newest revision the migration scripts define (alembic's own answer)."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(migrations_dir()))
    h = script.get_current_head()
    assert h is not None
    return h


def ensure_current(engine: Engine, schema: str) -> None:
    """Upgrade to head if needed (``etl run`` does this automatically)."""
    if current(engine, schema) != HEAD:
        upgrade(engine, schema)


def _t(schema: str, table: str) -> str:
    return f"{quote_ident(schema)}.{quote_ident(table)}"


def database_now(conn: Connection, lag_seconds: float = 0.0) -> dt.datetime:
    """The database clock minus ``lag_seconds`` (watermarks never trust the runner's clock)."""
    return conn.execute(
        sa.text("SELECT now() - make_interval(secs => :lag)"), {"lag": float(lag_seconds)}
    ).scalar_one()
