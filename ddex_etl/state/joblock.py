"""One runner per job: a PostgreSQL session advisory lock, backed by the run row's pid and heartbeat.

The advisory lock lives on one dedicated connection: PostgreSQL releases it
when that connection closes, so a killed runner never leaves a stale lock.
But a connection can also close under a runner that is still alive (a
``pg_terminate_backend``, a proxy timeout, a server restart). So the lock
alone does not decide; the run row does too:

* Taking the lock, a runner looks for a ``running`` run of the job whose
  runner is alive: on this host, its pid exists; elsewhere, its heartbeat is
  younger than ``STALE_AFTER``. If there is one, the lock is given back and
  the new runner is refused (exit 4): two runners never share a job.
  ``running`` runs whose runner is gone are marked ``failed`` on the spot,
  so a crash that could not record its own end (the database was down at
  that moment) never leaves a run that looks alive.
* A runner whose lock connection dies reconnects and takes the lock again
  (a restart is routine) only if its run row is still its own; if another
  process holds the lock, or took the run over, it stops with
  ``LostLockError`` (exit 1, resumable) instead of writing beside it.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from .. import state
from ..db import map_db_error
from ..errors import LockHeldError, LostLockError, TransientError
from ..procs import pid_alive
from ..retry import RetryPolicy, with_retries

log = logging.getLogger("ddex_etl.joblock")

T = TypeVar("T")

# How long to wait for PostgreSQL to notice that a runner of this host died
# (its lock is still held for a moment), or for a refused runner to give
# back the lock it briefly took while we reconnect.
STALE_LOCK_WAIT = 10.0
# A runner on another host is presumed gone when its run row's heartbeat is
# older than this (a run beats every few seconds and on every chunk).
STALE_AFTER = 120.0
# Run ids this process is executing now: a row with our own pid is alive
# only if it is one of these.
ACTIVE_RUNS: set[int] = set()


def host() -> str:
    return socket.gethostname()


def job_lock_key(job: str) -> int:
    """The advisory lock key of a job: first 8 bytes of sha256, as a signed bigint."""
    return int.from_bytes(hashlib.sha256(f"ddex_etl:job:{job}".encode()).digest()[:8], "big", signed=True)


def runner_alive(run_id: int, pid: int | None, on_host: str | None, heartbeat_age: float | None) -> bool:
    """Whether the process running run ``run_id`` (recorded as ``running``) is still there."""
    if pid and on_host == host():
        if pid == os.getpid():
            return run_id in ACTIVE_RUNS
        return pid_alive(pid)
    return heartbeat_age is not None and heartbeat_age < STALE_AFTER


class JobLock:
    """The job's advisory lock on a dedicated autocommit connection (which also carries small state updates)."""

    def __init__(self, engine: Engine, schema: str, job: str) -> None:
        self.engine = engine
        self.schema = schema
        self.job = job
        self.key = job_lock_key(job)
        self.conn: Connection | None = None
        self.run_id: int | None = None  # set once the run row exists: the lock then guards it

    # ---- taking the lock

    def acquire(self) -> None:
        """Take the job's lock or raise LockHeldError naming the holder."""
        conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        deadline = time.monotonic() + STALE_LOCK_WAIT
        try:
            while True:
                if self._try_lock(conn):
                    live = self._live_runner(conn)
                    if live is None:
                        self._mark_gone_runs(conn)
                        self.conn = conn
                        return
                    # Free lock, live runner: its lock connection died under it. Give the
                    # lock back at once so it can take it again.
                    self._unlock(conn)
                    raise LockHeldError(
                        f"job {self.job!r} is already running ({_describe(live)}); its connection holding the "
                        "job lock was lost, but that runner is alive; fix: wait for it to finish, "
                        "or stop it (Ctrl-C or kill its pid) and run `etl resume`"
                    )
                # Held: maybe by a runner of this host that just died (PostgreSQL may
                # not have noticed its closed connection yet).
                if time.monotonic() > deadline or not self._holder_is_dead(conn):
                    break
                time.sleep(0.2)
            holder = self._holder(conn)
        except BaseException:
            conn.close()
            raise
        conn.close()
        raise LockHeldError(
            f"job {self.job!r} is already running{holder}; fix: wait for it to finish, "
            "or stop it (Ctrl-C or kill its pid) and run `etl resume`"
        )

    def _reacquire(self) -> None:
        """After the lock connection died: take the lock again if the run is still ours, else stop."""
        assert self.run_id is not None
        conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        deadline = time.monotonic() + STALE_LOCK_WAIT
        try:
            while True:
                if self._try_lock(conn):
                    row = _run_row(conn, self.schema, self.run_id)
                    if row is not None and row.status == "running" and row.pid == os.getpid() and row.host == host():
                        log.warning("the connection holding job %r's lock was lost; the lock is taken again", self.job)
                        self.conn = conn
                        return
                    self._unlock(conn)
                    who = f" ({_describe(row)})" if row is not None else ""
                    raise LostLockError(self._lost(f"run {self.run_id} was taken over by another runner{who}"))
                row = _run_row(conn, self.schema, self.run_id)
                if row is not None and not (row.status == "running" and row.pid == os.getpid() and row.host == host()):
                    # Held by another, and the run row no longer names us: taken over; no point waiting.
                    raise LostLockError(self._lost(f"run {self.run_id} was taken over by another runner ({_describe(row)})"))
                if time.monotonic() > deadline:
                    raise LostLockError(self._lost(f"another process holds the lock now{self._holder(conn)}"))
                time.sleep(0.2)
        except BaseException:
            conn.close()
            raise

    def _lost(self, why: str) -> str:
        return (
            f"run {self.run_id} of job {self.job!r} lost the job lock (its connection to PostgreSQL was "
            f"closed) and {why}; this run stops here so that two runners never write beside each other; "
            f"fix: let the other runner finish, then `etl resume {self.run_id}` if it is still unfinished"
        )

    def _try_lock(self, conn: Connection) -> bool:
        got = bool(conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}).scalar())
        conn.commit()
        return got

    def _unlock(self, conn: Connection) -> None:
        conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
        conn.commit()

    def _running_rows(self, conn: Connection) -> list[Any]:
        try:
            rows = conn.execute(
                sa.text(
                    f"""SELECT id, pid, host, heartbeat_at, EXTRACT(EPOCH FROM now() - heartbeat_at) AS age
                    FROM {state._t(self.schema, 'runs')} WHERE job = :job AND status = 'running' ORDER BY id"""
                ),
                {"job": self.job},
            ).all()
            conn.commit()
        except sa.exc.DBAPIError:  # no state tables yet: nobody can be running
            with contextlib.suppress(Exception):
                conn.rollback()
            return []
        return list(rows)

    def _live_runner(self, conn: Connection) -> Any | None:
        for r in reversed(self._running_rows(conn)):
            if runner_alive(int(r.id), r.pid, r.host, None if r.age is None else float(r.age)):
                return r
        return None

    def _mark_gone_runs(self, conn: Connection) -> None:
        """``running`` runs of the job whose runner is gone: recorded as failed (resumable), with why."""
        for row in self._running_rows(conn):
            where = f"pid {row.pid} on {row.host}" if row.pid else "its runner"
            beat = f"; last heartbeat {row.heartbeat_at:%Y-%m-%d %H:%M:%S %Z}" if row.heartbeat_at else ""
            conn.execute(
                sa.text(
                    f"""UPDATE {state._t(self.schema, 'runs')}
                    SET status = 'failed', finished_at = COALESCE(heartbeat_at, now()), error = :e
                    WHERE id = :id AND status = 'running'"""
                ),
                {"id": row.id, "e": f"the runner ({where}) stopped without recording the end of the run{beat}; "
                                   f"resume with `etl resume {row.id}`"},
            )
            conn.commit()
            log.warning("run %d of job %r was left running by a runner that is gone (%s); marked failed",
                        row.id, self.job, where)

    def _holder_is_dead(self, conn: Connection) -> bool:
        """True when the job's running run belongs to a process of this host that no longer exists."""
        rows = self._running_rows(conn)
        if not rows:
            return False
        row = rows[-1]
        return bool(row.pid and row.host == host() and row.pid != os.getpid() and not pid_alive(row.pid))

    def _holder(self, conn: Connection) -> str:
        parts: list[str] = []
        try:
            rows = self._running_rows(conn)
            if rows:
                parts.append(_describe(rows[-1]))
            unsigned = self.key & 0xFFFFFFFFFFFFFFFF
            backend = conn.execute(
                sa.text(
                    """SELECT l.pid FROM pg_locks l
                    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
                      AND l.classid::bigint = :hi AND l.objid::bigint = :lo AND l.database = (
                          SELECT oid FROM pg_database WHERE datname = current_database())"""
                ),
                {"hi": unsigned >> 32, "lo": unsigned & 0xFFFFFFFF},
            ).scalar()
            conn.commit()
            if backend is not None:
                parts.append(f"PostgreSQL backend pid {backend}")
        except sa.exc.DBAPIError:
            pass
        return f" ({', '.join(parts)})" if parts else ""

    # ---- using it

    def _reset(self) -> None:
        """Drop a broken lock connection (PostgreSQL has released the lock with it)."""
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.invalidate()
            with contextlib.suppress(Exception):
                self.conn.close()
        self.conn = None

    def execute(self, fn: Callable[[Connection], T], *, what: str, policy: RetryPolicy) -> T:
        """Run a small autocommit statement on the lock connection.

        If the connection was lost (pg_terminate_backend, a server restart),
        the lock went with it: reconnect and take it again before retrying,
        or stop with LostLockError if the run is no longer this runner's.
        """

        def attempt() -> T:
            try:
                if self.conn is None:
                    if self.run_id is None:
                        self.acquire()
                    else:
                        self._reacquire()
                assert self.conn is not None
                result = fn(self.conn)
                self.conn.commit()  # ends SQLAlchemy's bookkeeping transaction (autocommit underneath)
                return result
            except sa.exc.DBAPIError as exc:
                err = map_db_error(exc, what)
                if isinstance(err, TransientError):
                    self._reset()
                elif self.conn is not None:
                    with contextlib.suppress(Exception):
                        self.conn.rollback()
                raise err from exc
            except sa.exc.PendingRollbackError as exc:
                self._reset()
                raise TransientError(f"{what}: the connection was lost; will retry") from exc

        return with_retries(attempt, what=what, policy=policy)

    def release(self) -> None:
        if self.conn is None:
            return
        with contextlib.suppress(Exception):
            self.conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
        with contextlib.suppress(Exception):
            self.conn.close()
        self.conn = None


def _run_row(conn: Connection, schema: str, run_id: int) -> Any | None:
    row = conn.execute(
        sa.text(
            f"""SELECT id, status, pid, host, heartbeat_at, EXTRACT(EPOCH FROM now() - heartbeat_at) AS age
            FROM {state._t(schema, 'runs')} WHERE id = :id"""
        ),
        {"id": run_id},
    ).first()
    conn.commit()
    return row


def _describe(row: Any) -> str:
    parts = [f"run {row.id}"]
    if row.pid:
        parts.append(f"pid {row.pid}" + (f" on {row.host}" if row.host else ""))
    if row.heartbeat_at is not None:
        age = float(row.age) if row.age is not None else None
        parts.append(f"heartbeat {age:.0f} s ago" if age is not None else f"heartbeat {row.heartbeat_at}")
    return ", ".join(parts)
