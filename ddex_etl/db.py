"""Engine, pool, the embedded server, and driver errors mapped to ours.

Helpers here take a connection and never commit: whoever opens a transaction
(``with engine.begin()``) commits it.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from .errors import ConfigError, EtlError, TerminalError, TransientError

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


class _DroppedConnectionCleanup(logging.Filter):
    """Drop psycopg's "error ignored terminating <Pipeline/Copy>" records.

    psycopg logs them when it cannot end a pipeline or COPY on a connection
    that has already died, while the error that killed it propagates; that
    error is the one we map and report (with its retry or its fix). With no
    handler on the "psycopg" logger, Python's last-resort handler would print
    the record on stderr as a second, rawer account of the same fault.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("error ignored terminating")


logging.getLogger("psycopg").addFilter(_DroppedConnectionCleanup())


def quote_ident(name: str) -> str:
    """Validate a config-supplied identifier and return it double-quoted."""
    if not _IDENT.fullmatch(name):
        raise TerminalError(f"{name!r} is not a valid SQL identifier; use letters, digits and _ only")
    return '"' + name + '"'


def embedded_url(data_dir: str | Path) -> str:
    """Start (or reuse) the embedded PostgreSQL whose data lives in ``data_dir``; return its URL.

    The server keeps running after this process exits so the next `etl` call
    reuses it in about a second; `etl db stop` stops it.
    """
    import pgserver  # imported lazily: only the embedded path needs it

    path = Path(data_dir).resolve()
    path.mkdir(parents=True, exist_ok=True)
    try:
        server = pgserver.get_server(path, cleanup_mode=None)
    except Exception as exc:  # pgserver raises plain exceptions with the server log
        raise TerminalError(
            f"could not start the embedded PostgreSQL in {path}: {exc}; "
            "fix: delete that folder to start afresh, or set ETL_DATABASE_URL to a server"
        ) from exc
    return to_sqlalchemy_url(server.get_uri())


def to_sqlalchemy_url(url: str) -> str:
    """Make any postgres URL use the psycopg 3 driver."""
    for prefix in ("postgresql+psycopg://", "postgresql+psycopg2://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def make_engine(url: str, pool_size: int = 5, **kwargs: Any) -> sa.Engine:
    """A pooled engine with pre-ping, on psycopg 3."""
    return sa.create_engine(
        to_sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_timeout=30,
        **kwargs,
    )


# SQLSTATE classes that a retry can fix.
_TRANSIENT_SQLSTATES = {
    "40001",  # serialization_failure
    "40P01",  # deadlock_detected
    "55P03",  # lock_not_available
    "57P01",  # admin_shutdown (pg_terminate_backend, server restart)
    "57P02",  # crash_shutdown
    "57P03",  # cannot_connect_now (server starting up)
    "53300",  # too_many_connections
}
_TERMINAL_HINTS = {
    "28P01": "check the user name and password (set them in ETL_DATABASE_URL)",
    "28000": "check the user name and the server's pg_hba.conf",
    "3D000": "check the database name in the URL",
    "42P01": (
        "check that the table exists; for a catalog of your own, point extract.keys_query, extract.rows_query "
        "and extract.changed_keys_query at queries over your tables (docs/column-contract.md); "
        "for the connector's own tables, `etl db upgrade`"
    ),
    "42703": "check the column names: your query must return the documented columns",
    "42601": "check the SQL syntax of your extract query",
    "42501": "grant the connector's user the privileges it needs",
    "3F000": "check the schema name",
}


# libpq's own words for a connection string it cannot use (lower case).
_BAD_OPTIONS = (
    "invalid sslmode value",
    "invalid connection option",
    "invalid integer value",
    "invalid port number",
    "invalid value for parameter",
    "invalid target_session_attrs value",
    "invalid channel_binding value",
    "invalid gssencmode value",
    "invalid uri query parameter",
)


# Where a server-side limit comes from, and how the connector's role gets a larger one.
_SETTING_FIX = (
    "raise it for the connector's role (ALTER ROLE <user> SET {name} = '30min', or 0 for no limit; it may also "
    "come from ALTER DATABASE, postgresql.conf or options=-c {name}=... in the database URL)"
)


def _server_timeout(sqlstate: str | None, first_line: str, doing: str) -> EtlError | None:
    """A statement the server stopped on a limit or on request: which limit, and whether a retry can help.

    psycopg raises QueryCanceled (57014) as an OperationalError, so without
    this a statement_timeout read as a lost server and was retried for
    ``run.retry_for`` seconds, each retry hitting the same limit. PostgreSQL
    gives one SQLSTATE for a timeout and for a cancel: only its message says
    which (in the server's lc_messages; English is matched, anything else
    stays transient as before).
    """
    text = first_line.lower()
    if sqlstate == "57014":  # query_canceled
        if "statement timeout" in text:
            return TerminalError(
                f"{doing}: {first_line} (SQLSTATE 57014): the server's statement_timeout stopped the statement; "
                "a retry would hit the same limit; fix: " + _SETTING_FIX.format(name="statement_timeout")
                + ", or make the query cheaper (a smaller extract.chunk_size; indexes for your extract queries)"
            )
        return TransientError(
            f"{doing}: {first_line} (SQLSTATE 57014): cancelled by another session (pg_cancel_backend) or an "
            "operator; transient: a retry runs it again"
        )
    if sqlstate == "25P04":  # transaction_timeout (PostgreSQL 17)
        return TerminalError(
            f"{doing}: {first_line} (SQLSTATE 25P04): the server's transaction_timeout ended the transaction; "
            "a retry would hit the same limit; fix: " + _SETTING_FIX.format(name="transaction_timeout")
            + ", or lower extract.chunk_size (one chunk is one transaction)"
        )
    if sqlstate == "55P03" and "lock timeout" in text:
        return TransientError(
            f"{doing}: {first_line} (SQLSTATE 55P03): another session held a lock this statement needed for longer "
            "than lock_timeout allows; transient: a retry usually gets it; if it keeps happening, see who holds it "
            "(pg_locks, pg_stat_activity) or " + _SETTING_FIX.format(name="lock_timeout")
        )
    if sqlstate == "25P03":  # idle_in_transaction_session_timeout
        return TransientError(
            f"{doing}: {first_line} (SQLSTATE 25P03): the server closed a session that sat idle in a transaction "
            "longer than idle_in_transaction_session_timeout; transient: a retry opens a new one; if it keeps "
            "happening, " + _SETTING_FIX.format(name="idle_in_transaction_session_timeout")
        )
    return None


# How libpq and psycopg say that a host name does not resolve (getaddrinfo's EAI_NONAME, EAI_AGAIN, ...).
_UNRESOLVED = re.compile(
    r".*?(?:failed to resolve host|could not translate host name) [\"'](?P<host>[^\"']*)[\"'].*", re.S
)
_RESOLVER_WORDS = ("name or service not known", "nodename nor servname", "no address associated with hostname",
                   "temporary failure in name resolution", "name does not resolve")


def _unresolved_host(first_line: str) -> str | None:
    """The host name a connection failure could not resolve, or None when the failure is another one."""
    m = _UNRESOLVED.fullmatch(first_line)
    if m is not None:
        return repr(m["host"])
    text = first_line.lower()
    if any(words in text for words in _RESOLVER_WORDS):
        return "the database host"
    return None


def map_db_error(exc: BaseException, doing: str = "talking to PostgreSQL") -> EtlError:
    """Turn a driver error into a TransientError or TerminalError naming cause and fix."""
    if isinstance(exc, EtlError):
        return exc
    orig = getattr(exc, "orig", None) or exc
    sqlstate = getattr(orig, "sqlstate", None)
    first_line = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    if isinstance(exc, sa_exc.TimeoutError):
        return TransientError(f"{doing}: connection pool timed out; the server may be overloaded")
    timeout = _server_timeout(sqlstate, first_line, doing)
    if timeout is not None:
        return timeout
    if sqlstate in _TRANSIENT_SQLSTATES:
        return TransientError(f"{doing}: {first_line} (SQLSTATE {sqlstate}, transient: a retry usually clears it)")
    if sqlstate in _TERMINAL_HINTS:
        return TerminalError(f"{doing}: {first_line}; fix: {_TERMINAL_HINTS[sqlstate]}")
    if isinstance(orig, psycopg.OperationalError) or getattr(exc, "connection_invalidated", False):
        text = first_line.lower()
        if "no password supplied" in text:
            # A setting that is missing, not a fault that passes: a retry would only wait.
            return ConfigError(
                f"database.url: {doing}: the server asks for a password and none was given ({first_line}); "
                "fix: put it in ETL_DATABASE_URL (postgresql://user:PASSWORD@host:5432/db), PGPASSWORD or ~/.pgpass"
            )
        if "password authentication failed" in text or "authentication failed" in text:
            return TerminalError(f"{doing}: {first_line}; fix: check the credentials in ETL_DATABASE_URL")
        if any(bad in text for bad in _BAD_OPTIONS):
            # libpq refused the URL's own options before contacting anyone: no retry can help.
            return ConfigError(
                f"database.url: {doing}: {first_line}; fix: correct the connection options in the URL "
                "(ETL_DATABASE_URL or database.url; sslmode is one of disable, allow, prefer, require, "
                "verify-ca, verify-full)"
            )
        unresolved = _unresolved_host(first_line)
        if unresolved is not None:
            # A mistyped host never starts resolving while we wait: fail at once instead of retrying for
            # run.retry_for (per recipient, per phase) as if the server were restarting.
            return TerminalError(
                f"{doing}: host not found: {unresolved} ({first_line}); fix: check the host name in "
                "ETL_DATABASE_URL or database.url (and the machine's DNS settings)"
            )
        # Connection failures carry no SQLSTATE, so the text tells a missing role from a missing database.
        if text.rstrip().endswith("does not exist") and "role " in text:
            return TerminalError(
                f"{doing}: {first_line}; fix: check the user name in ETL_DATABASE_URL (or create that role)"
            )
        if "does not exist" in text:
            return TerminalError(f"{doing}: {first_line}; fix: check the database name in the URL")
        return TransientError(f"{doing}: {first_line} (transient: check that the server is up and reachable)")
    if isinstance(orig, (psycopg.InterfaceError,)) or isinstance(exc, sa_exc.DisconnectionError):
        return TransientError(f"{doing}: {first_line} (transient: the connection was lost)")
    return TerminalError(f"{doing}: {first_line}")


def database_url(cfg: Any) -> str:
    """The configured server's URL, or the embedded server's (started if needed)."""
    if cfg.database.url:
        return to_sqlalchemy_url(cfg.database.url)
    return embedded_url(cfg.database.embedded_dir)


def worker_database_url(cfg: Any, url: str) -> str:
    """What worker processes connect with: ``database.worker_url`` (a pooler, say), else the run's ``url``."""
    return to_sqlalchemy_url(cfg.database.worker_url) if cfg.database.worker_url else url


def engine_for(cfg: Any) -> sa.Engine:
    """A pooled engine for the configured database (embedded when none is configured)."""
    return make_engine(database_url(cfg), pool_size=cfg.database.pool_size)


def stop_embedded(data_dir: str | Path, timeout: float = 30.0) -> bool:
    """Stop the embedded PostgreSQL whose data lives in ``data_dir``; False if none was running.

    Sends the postmaster SIGINT (PostgreSQL's "fast" shutdown: open sessions
    are rolled back, nothing committed is lost) and waits until it has gone.
    Never starts a server, so `etl db stop` is safe to call at any time.
    """
    import os
    import signal
    import sys
    import time

    path = Path(data_dir).resolve()
    pid_file = path / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return False
    if not _is_postgres(pid):
        return False  # a stale pid file left by a crash (or a reused pid): nothing to stop
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:
        return False
    except PermissionError as exc:
        raise TerminalError(
            f"cannot stop the embedded PostgreSQL in {path} (pid {pid}): permission denied; "
            "fix: run `etl db stop` as the user that started it"
        ) from exc
    deadline = time.monotonic() + timeout
    # The postmaster removes its pid file as the last step of a clean shutdown.
    while pid_file.exists() and _is_postgres(pid):
        if time.monotonic() > deadline:
            raise TerminalError(
                f"the embedded PostgreSQL in {path} (pid {pid}) did not stop within {timeout:.0f} s; "
                "fix: wait for its sessions to end and run `etl db stop` again"
            )
        time.sleep(0.1)
    # This process may hold a handle from embedded_url(); drop it so a later
    # call in the same process starts the server again instead of reusing it.
    module = sys.modules.get("pgserver.postgres_server")
    if module is not None:
        module.PostgresServer._instances.pop(path, None)
    return True


def _is_postgres(pid: int) -> bool:
    """Whether ``pid`` is a live PostgreSQL server process (not a zombie, not a reused pid)."""
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by another user (pgserver runs the server as "pgserver" under root)
    proc = Path(f"/proc/{pid}")
    if not proc.exists():
        return True  # no /proc (macOS): trust the pid file
    try:
        status = (proc / "status").read_text()
        cmdline = (proc / "cmdline").read_bytes()
    except OSError:
        return False
    if "\nState:\tZ" in status:
        return False
    return b"postgres" in cmdline
