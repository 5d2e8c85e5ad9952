"""Crash safety: SIGKILL a running `etl run` at several points, resume, compare with an uninterrupted run.

The run under test is a real subprocess (``run_api.run`` from a tiny script,
the same call ``etl run`` makes), killed with SIGKILL once its checkpoint shows
k chunks, resumed, killed again further on, and finally resumed to the end.
Each case runs with the local executor and with the Dask one (a LocalCluster
of two single-thread worker processes, which must die with the run).
"""
from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest
import sqlalchemy as sa
from messages import header, without_header
from sqlalchemy.engine import make_url

from ddex_etl import run as run_api
from ddex_etl.config import Config, DatabaseConfig
from ddex_etl.db import make_engine
from ddex_etl.demo.seed import seed_catalog
from ddex_etl.errors import ExitCode, LockHeldError
from ddex_etl.load import TMP_SUFFIX

pytestmark = pytest.mark.slow

RELEASES = 1200
CHUNK = 40
WORKERS = 2
KILL_AT = (3, 11, 20)  # chunks committed when the SIGKILL lands (of 30)
EXECUTORS = ["local", pytest.param("dask", marks=pytest.mark.skipif(
    importlib.util.find_spec("distributed") is None, reason="needs ddex-etl[dask]"))]
# Chunks handed out beyond the checkpoint at most (ChunkExecutor.slots): one per
# local worker process; two per Dask worker thread (the next one queued on it).
IN_FLIGHT = {"local": WORKERS, "dask": 2 * WORKERS}

RUNNER = """
import sys
from ddex_etl import run as run_api
from ddex_etl.config import load_config
from ddex_etl.errors import EtlError

from ddex_etl.cli import exit_process

cfg = load_config(sys.argv[1], env={})
try:
    report = run_api.run(cfg, progress=False)
except EtlError as exc:
    print(exc, file=sys.stderr)
    exit_process(exc.exit_code)  # as `etl run` exits
exit_process(report.exit_code)
"""


@pytest.fixture()
def engine(db_url: str) -> Iterator[sa.Engine]:
    eng = make_engine(db_url, pool_size=2)
    seed_catalog(eng, RELEASES, seed=11)
    yield eng
    eng.dispose()


def write_toml(
    path: Path, db_url: str, target: str, layout: str, out: Path, schema: str = "ddex_etl", executor: str = "local"
) -> Path:
    path.write_text(
        f"""
[database]
url = "{db_url}"
state_schema = "{schema}"
pool_size = 2

[extract]
chunk_size = {CHUNK}

[load]
target = "{target}"
layout = "{layout}"
directory = "{out}"

[run]
workers = {WORKERS}
retry_delay = 0.05
executor = "{executor}"
""",
        encoding="utf-8",
    )
    return path


# Every process a started run makes carries this in its environment (Dask's
# worker processes too), so a test can find the ones that outlive it.
TAG = "ETL_TEST_RUN_TAG"


def start(toml: Path, tag: str = "") -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(toml)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env={**os.environ, TAG: tag},
    )


def tagged(tag: str) -> set[int]:
    """Live processes (zombies aside) whose environment carries ``tag``."""
    found = set()
    for p in psutil.process_iter():
        try:
            if p.status() != psutil.STATUS_ZOMBIE and p.environ().get(TAG) == tag:
                found.add(p.pid)
        except psutil.Error:
            pass
    return found


def survivors(tag: str, within: float = 15.0) -> set[int]:
    """Processes of a killed run still alive after ``within`` s (its workers must follow it)."""
    deadline = time.monotonic() + within
    while (left := tagged(tag)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def _libpq(db_url: str) -> str:
    return make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)


def progress_of(conn: psycopg.Connection, schema: str = "ddex_etl") -> tuple[int, str, int] | None:
    """(run id, status, chunks done) of the newest run, or None before the first run row exists."""
    try:
        row = conn.execute(
            f"""SELECT r.id, r.status, c.chunks_done FROM "{schema}".runs r
            JOIN "{schema}".checkpoints c ON c.run_id = r.id ORDER BY r.id DESC LIMIT 1"""
        ).fetchone()
    except psycopg.errors.UndefinedTable:
        return None
    return (int(row[0]), str(row[1]), int(row[2])) if row else None


def wait_for_chunks(proc: subprocess.Popen[bytes], db_url: str, at_least: int, timeout: float = 120.0) -> tuple[int, str, int]:
    """Poll the checkpoint until it shows ``at_least`` chunks (the process must still be running)."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(_libpq(db_url), autocommit=True) as conn:
        while time.monotonic() < deadline:
            seen = progress_of(conn)
            if seen is not None and seen[1] == "running" and seen[2] >= at_least:
                return seen
            if proc.poll() is not None:
                _, err = proc.communicate()
                raise AssertionError(f"run ended (exit {proc.returncode}) before chunk {at_least}: {err.decode()[-2000:]}")
            time.sleep(0.005)
        sessions = conn.execute(
            "SELECT pid, state, wait_event_type, wait_event, now() - xact_start, left(query, 120) "
            "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    proc.kill()
    _, err = proc.communicate()
    err = b"\n".join(str(s).encode() for s in sessions) + b"\n" + (err or b"")
    raise AssertionError(f"no checkpoint at {at_least} chunks within {timeout} s; the run said: "
                         f"{(err or b'').decode(errors='replace')[-3000:]}")


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(TMP_SUFFIX)]


def batch_complete_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("BatchComplete_*")]


def documents(engine: sa.Engine, schema: str) -> dict[int, bytes]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f'SELECT release_id, document FROM "{schema}".documents')).all()
    return {int(r[0]): bytes(r[1]) for r in rows}


def run_uid(docs: dict[Any, bytes]) -> str:
    """The uuid that ends the MessageIds of these documents (one per run)."""
    return header(next(iter(docs.values())))["MessageId"].rsplit("-", 1)[1]


def same_run_headers(docs: dict[Any, bytes], run_id: int) -> dict[Any, bytes]:
    """Check that every message names ``run_id`` and one creation time; return them without headers.

    The reference is another run (other message ids, another start time), so
    contents are compared without the header; the headers themselves must be
    exactly what one uninterrupted run would write, before and after each kill.
    """
    heads = [header(x) for x in docs.values()]
    # <sender>-<release>-run<id>-<the run's uuid>: one run id and one uuid, kills and resumes included
    assert {tuple(h["MessageId"].rsplit("-", 2)[1:]) for h in heads} == {(f"run{run_id}", run_uid(docs))}
    assert len({h["MessageCreatedDateTime"] for h in heads}) == 1
    return {k: without_header(x) for k, x in docs.items()}


def batch_contents(out: Path) -> tuple[str, dict[str, bytes]]:
    """The only batch folder under ``out`` and its files without the BatchComplete marker."""
    [batch] = [p for p in out.iterdir() if p.is_dir()]
    files = tree(batch)
    assert files.pop(f"BatchComplete_{batch.name}.xml") == b""  # present, zero bytes, named after its batch
    return batch.name, files


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize(("target", "layout"), [("table", "flat"), ("files", "flat"), ("files", "ddex-batch")])
def test_sigkill_and_resume_gives_byte_identical_output(
    engine: sa.Engine, db_url: str, tmp_path: Path, target: str, layout: str, executor: str
) -> None:
    # The uninterrupted reference, in its own state schema and folder.
    ref_out, out = tmp_path / "ref", tmp_path / "out"
    ref_cfg = Config(database=DatabaseConfig(url=db_url, state_schema="ref", pool_size=2)).with_overrides(
        extract={"chunk_size": CHUNK}, load={"target": target, "layout": layout, "directory": ref_out},
        run={"workers": WORKERS},
    )
    reference = run_api.run(ref_cfg, progress=False)
    assert reference.built == RELEASES

    toml = write_toml(tmp_path / "etl.toml", db_url, target, layout, out, executor=executor)
    run_ids = set()
    for k in KILL_AT:
        tag = uuid.uuid4().hex
        proc = start(toml, tag)
        run_id, _, done = wait_for_chunks(proc, db_url, k)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        # its worker processes end with it: none goes on writing into the next attempt's output
        assert survivors(tag) == set()
        run_ids.add(run_id)
        assert done < RELEASES // CHUNK
        if target == "files":
            assert batch_complete_files(out) == []  # never a partial batch marked complete

    proc = start(toml)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == ExitCode.OK, err.decode()[-3000:]

    engine_state = make_engine(db_url, pool_size=1)
    try:
        with engine_state.connect() as conn:
            row = conn.execute(
                sa.text("SELECT id, status, attempts, built, rejected, chunks_redone FROM ddex_etl.runs")
            ).all()
    finally:
        engine_state.dispose()
    [(run_id, status, attempts, built, rejected, redone)] = row  # one run, continued each time
    assert run_ids == {run_id}
    assert (status, attempts, built, rejected) == ("succeeded", len(KILL_AT) + 1, RELEASES, 0)
    # at most the executor's slots were handed out beyond the checkpoint at each kill
    assert 0 <= redone <= IN_FLIGHT[executor] * len(KILL_AT)

    if target == "table":
        got, want = documents(engine, "ddex_etl"), documents(engine, "ref")
        assert len(got) == RELEASES and same_run_headers(got, run_id) == {k: without_header(x) for k, x in want.items()}
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM ddex_etl.documents")).scalar() == RELEASES
    elif layout == "flat":
        assert temp_files(out) == []
        want = {k: without_header(x) for k, x in tree(ref_out).items()}
        assert same_run_headers(tree(out), run_id) == want
    else:
        assert temp_files(out) == []
        got_batch, got = batch_contents(out)
        ref_batch, want = batch_contents(ref_out)
        assert len(got) == RELEASES and same_run_headers(got, run_id) == {k: without_header(x) for k, x in want.items()}
        assert got_batch != ref_batch  # batch ids are per run; contents are what must match


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("signals", [[signal.SIGTERM], [signal.SIGINT], [signal.SIGINT, signal.SIGINT]])
def test_signals_interrupt_cleanly_and_resume_completes(
    engine: sa.Engine, db_url: str, tmp_path: Path, signals: list[int], executor: str
) -> None:
    out = tmp_path / "out"
    toml = write_toml(tmp_path / "etl.toml", db_url, "files", "ddex-batch", out, executor=executor)
    tag = uuid.uuid4().hex
    proc = start(toml, tag)
    run_id, _, _ = wait_for_chunks(proc, db_url, 2)

    # While it runs, a second run of the same job is refused and names the holder.
    cfg = Config(database=DatabaseConfig(url=db_url, pool_size=2)).with_overrides(
        extract={"chunk_size": CHUNK}, load={"layout": "ddex-batch", "directory": out},
        run={"workers": WORKERS, "executor": executor},
    )
    # (with local workers, which start faster than a LocalCluster: the lock is the executor's business either way)
    with pytest.raises(LockHeldError, match=rf"run {run_id}, pid {proc.pid}"):
        run_api.run(cfg.with_overrides(run={"executor": "local"}), progress=False)

    for sig in signals:
        os.kill(proc.pid, sig)
        time.sleep(0.02)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == ExitCode.INTERRUPTED, err.decode()[-3000:]
    assert survivors(tag) == set()
    with psycopg.connect(_libpq(db_url), autocommit=True) as conn:
        seen = progress_of(conn)
    assert seen is not None and seen[:2] == (run_id, "interrupted")
    assert batch_complete_files(out) == []

    report = run_api.resume(cfg, progress=False)
    assert (report.run_id, report.status, report.built, report.resumed) == (run_id, "succeeded", RELEASES, True)
    assert temp_files(out) == []
    _, files = batch_contents(out)
    assert len(files) == RELEASES


def test_backends_killed_under_the_run_are_retried(engine: sa.Engine, db_url: str, tmp_path: Path) -> None:
    """pg_terminate_backend on every connection of the run, twice: retried with backoff, nothing lost."""
    out = tmp_path / "out"
    toml = write_toml(tmp_path / "etl.toml", db_url, "table", "flat", out)
    proc = start(toml)
    killed = 0
    with psycopg.connect(_libpq(db_url), autocommit=True) as conn:
        for at in (3, 12):
            wait_for_chunks(proc, db_url, at)
            killed += len(conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchall())
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == ExitCode.OK, err.decode()[-3000:]
    assert killed >= 2 * WORKERS  # the workers' connections and the lock's at least
    assert "retry" in err.decode()  # the retries were logged
    docs = documents(engine, "ddex_etl")
    with engine.connect() as conn:
        ids = {int(r[0]) for r in conn.execute(sa.text("SELECT release_id FROM releases"))}
        [(status, attempts, built)] = conn.execute(sa.text("SELECT status, attempts, built FROM ddex_etl.runs")).all()
    assert set(docs) == ids and (status, attempts, built) == ("succeeded", 1, RELEASES)
