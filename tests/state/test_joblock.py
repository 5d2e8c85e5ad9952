"""The job lock: a runner that loses its lock connection is never joined by a second one.

Real `etl` processes against the real server. A run is held still
deterministically: another session locks the catalog's tracks table, so
the first chunk's rows query waits while the run holds its job lock.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from ddex_etl.errors import ExitCode
from ddex_etl.state.joblock import job_lock_key

RELEASES = 60


def _libpq(db_url: str) -> str:
    return make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)


def _etl(args: list[str], cwd: Path, db_url: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ddex_etl", *args], cwd=cwd, env=_env(db_url),
                          capture_output=True, text=True, timeout=kw.pop("timeout", 120), **kw)  # type: ignore[call-overload]


def _env(db_url: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("ETL_")}, "ETL_DATABASE_URL": db_url}


def _wait_for(predicate: Callable[[], object], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _lock_backend(conn: psycopg.Connection, job: str = "default") -> int | None:
    unsigned = job_lock_key(job) & 0xFFFFFFFFFFFFFFFF
    row = conn.execute(
        """SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1
           AND classid::bigint = %s AND objid::bigint = %s
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())""",
        (unsigned >> 32, unsigned & 0xFFFFFFFF),
    ).fetchone()
    return int(row[0]) if row else None


def _running(conn: psycopg.Connection) -> bool:
    exists = conn.execute("SELECT to_regclass('ddex_etl.runs') IS NOT NULL").fetchone()
    return bool(exists and exists[0] and conn.execute(
        "SELECT count(*) FROM ddex_etl.runs WHERE status = 'running'").fetchone()[0])


@pytest.fixture()
def held(db_url: str, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], psycopg.Connection, psycopg.Connection]]:
    """A first `etl run`, under way and held still; yields (process, watcher, locker)."""
    (tmp_path / "etl.toml").write_text("[extract]\nchunk_size = 20\n[run]\nworkers = 1\nretry_delay = 0.1\n")
    assert _etl(["seed", "--releases", str(RELEASES)], tmp_path, db_url).returncode == 0
    with psycopg.connect(_libpq(db_url), autocommit=True) as watcher, psycopg.connect(_libpq(db_url)) as locker:
        locker.execute("LOCK TABLE tracks IN ACCESS EXCLUSIVE MODE")
        first = subprocess.Popen([sys.executable, "-m", "ddex_etl", "run", "--no-progress", "--json"], cwd=tmp_path,
                                 env=_env(db_url), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            _wait_for(lambda: _lock_backend(watcher) is not None and _running(watcher), "the first run to start")
            yield first, watcher, locker
        finally:
            if first.poll() is None:
                first.kill()
                first.communicate()


def test_a_runner_whose_lock_connection_dies_keeps_its_job(db_url: str, tmp_path: Path, held) -> None:  # type: ignore[no-untyped-def]
    first, watcher, locker = held
    # Paused, the first runner cannot take its lock back before the second one looks.
    os.kill(first.pid, signal.SIGSTOP)
    try:
        backend = _lock_backend(watcher)
        watcher.execute("SELECT pg_terminate_backend(%s)", (backend,))
        _wait_for(lambda: _lock_backend(watcher) is None, "the lock to be free")

        second = _etl(["run", "--no-progress"], tmp_path, db_url, timeout=60)
        assert second.returncode == ExitCode.LOCKED, second.stderr
        assert f"already running (run 1, pid {first.pid}" in second.stderr
        assert "its connection holding the job lock was lost, but that runner is alive" in second.stderr
    finally:
        os.kill(first.pid, signal.SIGCONT)

    locker.rollback()  # let the first run go on
    out, err = first.communicate(timeout=120)
    assert first.returncode == ExitCode.OK, err
    report = json.loads(out)
    assert (report["built"], report["attempts"]) == (RELEASES, 1)  # nobody reopened it
    assert "lock is taken again" in err


def test_a_runner_that_really_lost_its_lock_stops_and_resumes_later(db_url: str, tmp_path: Path, held) -> None:  # type: ignore[no-untyped-def]
    first, watcher, locker = held
    backend = _lock_backend(watcher)
    with psycopg.connect(_libpq(db_url), autocommit=True) as thief:
        watcher.execute("SELECT pg_terminate_backend(%s)", (backend,))
        # Someone else takes the job's lock the moment it is free.
        _wait_for(lambda: thief.execute("SELECT pg_try_advisory_lock(%s)", (job_lock_key("default"),)).fetchone()[0],
                  "the lock to be free")
        out, err = first.communicate(timeout=120)
        assert first.returncode == ExitCode.FAILED, err
        assert "lost the job lock" in err and "another process holds the lock now" in err
        assert json.loads(out)["status"] == "failed"
    locker.rollback()
    resumed = _etl(["resume", "--no-progress", "--json"], tmp_path, db_url)
    assert resumed.returncode == ExitCode.OK, resumed.stderr
    assert json.loads(resumed.stdout)["built"] == RELEASES
    assert len(list((tmp_path / "out").iterdir())) == RELEASES


def test_a_run_left_running_by_a_dead_runner_is_shown_stalled_then_marked_and_continued(
    db_url: str, tmp_path: Path
) -> None:
    (tmp_path / "etl.toml").write_text("[extract]\nchunk_size = 20\n[run]\nworkers = 1\n")
    assert _etl(["seed", "--releases", str(RELEASES)], tmp_path, db_url).returncode == 0
    first = subprocess.Popen([sys.executable, "-m", "ddex_etl", "run", "--no-progress"], cwd=tmp_path,
                             env=_env(db_url), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with psycopg.connect(_libpq(db_url), autocommit=True) as watcher, psycopg.connect(_libpq(db_url)) as locker:
        locker.execute("LOCK TABLE tracks IN ACCESS EXCLUSIVE MODE")
        _wait_for(lambda: _lock_backend(watcher) is not None and _running(watcher), "the run to start")
        first.kill()  # no chance to record anything: what a crash during a database outage leaves
        first.wait()
        locker.rollback()
        _wait_for(lambda: _lock_backend(watcher) is None, "PostgreSQL to drop the dead runner's lock")
        assert watcher.execute("SELECT status FROM ddex_etl.runs").fetchone()[0] == "running"

    shown = _etl(["status", "--json"], tmp_path, db_url)
    [job] = json.loads(shown.stdout)
    assert job["status"] == "stalled" and f"pid {first.pid}" in job["note"] and "is gone" in job["note"]
    assert "marks it failed and continues it" in _etl(["status"], tmp_path, db_url).stdout

    again = _etl(["run", "--no-progress", "--json"], tmp_path, db_url)
    assert again.returncode == ExitCode.OK, again.stderr
    assert "was left running by a runner that is gone" in again.stderr
    summary = json.loads(again.stdout)
    assert (summary["run_id"], summary["attempts"], summary["built"]) == (1, 2, RELEASES)
