"""`etl run` on a real Dask cluster, end to end: workers killed, the scheduler lost or absent, chunks given up on.

A `dask scheduler` and two `dask worker --nworkers 1 --nthreads 1` run as
subprocesses on 127.0.0.1 (tests/dask_servers.py); `etl run --scheduler ...`
is a real subprocess too. Whatever happens to the cluster, the run ends with
the output a local run gives for the same catalog, byte for byte (the header
aside, which names the run), each release once, no temp file left: chunks
may run twice, their results are loaded once (exactly-once lives in
PostgreSQL, in the coordinator's transactions).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest
import sqlalchemy as sa

pytest.importorskip("distributed")

from dask_servers import DaskCluster, dask_cluster, free_port  # noqa: E402
from messages import without_header  # noqa: E402
from test_run_kill import (  # noqa: E402  (tests/run is on sys.path: rootdir-relative imports)
    _libpq,
    batch_contents,
    documents,
    progress_of,
    same_run_headers,
    temp_files,
    tree,
    wait_for_chunks,
)

from ddex_etl import run as run_api  # noqa: E402
from ddex_etl.config import Config, DatabaseConfig  # noqa: E402
from ddex_etl.db import make_engine  # noqa: E402
from ddex_etl.demo.seed import seed_catalog  # noqa: E402
from ddex_etl.errors import ExitCode  # noqa: E402

RELEASES = 300
CHUNK = 20  # 15 chunks
ETL = Path(sys.executable).with_name("etl")
TARGETS = [("table", "flat"), ("files", "flat"), ("files", "ddex-batch")]


@pytest.fixture()
def engine(db_url: str) -> Iterator[sa.Engine]:
    eng = make_engine(db_url, pool_size=2)
    seed_catalog(eng, RELEASES, seed=16)
    yield eng
    eng.dispose()


def write_toml(tmp_path: Path, db_url: str, target: str, layout: str) -> Path:
    path = tmp_path / "etl.toml"
    path.write_text(
        f"""
[database]
url = "{db_url}"
pool_size = 2

[extract]
chunk_size = {CHUNK}

[load]
target = "{target}"
layout = "{layout}"
directory = "{tmp_path / 'out'}"

[run]
executor = "dask"
retry_delay = 0.05
""",
        encoding="utf-8",
    )
    return path


def etl(toml: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(ETL), "--config", str(toml), *args, "--no-progress"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
    )


def finish(proc: subprocess.Popen[bytes], timeout: float = 120) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err.decode(errors="replace")


def reference(db_url: str, tmp_path: Path, target: str, layout: str) -> Path:
    """The same catalog through the local executor, in its own state schema and folder."""
    out = tmp_path / "ref"
    cfg = Config(database=DatabaseConfig(url=db_url, state_schema="ref", pool_size=2)).with_overrides(
        extract={"chunk_size": CHUNK}, load={"target": target, "layout": layout, "directory": out},
        run={"workers": 2, "executor": "local"},
    )
    assert run_api.run(cfg, progress=False).built == RELEASES
    return out


def the_run(engine: sa.Engine) -> tuple[int, str, int, int]:
    with engine.connect() as conn:
        [(run_id, status, attempts, built)] = conn.execute(
            sa.text("SELECT id, status, attempts, built FROM ddex_etl.runs")
        ).all()
    return int(run_id), str(status), int(attempts), int(built)


def assert_same_output(engine: sa.Engine, tmp_path: Path, target: str, layout: str, ref: Path) -> None:
    """What the Dask run left equals the local reference, each release once, no temp file."""
    run_id, status, _, built = the_run(engine)
    assert (status, built) == ("succeeded", RELEASES)
    out = tmp_path / "out"
    if target == "table":
        got, want = documents(engine, "ddex_etl"), documents(engine, "ref")
        assert len(got) == RELEASES
        assert same_run_headers(got, run_id) == {k: without_header(x) for k, x in want.items()}
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT count(*), count(DISTINCT release_id) FROM ddex_etl.documents")).one()
        assert tuple(rows) == (RELEASES, RELEASES)
        return
    assert temp_files(out) == []
    if layout == "flat":
        assert same_run_headers(tree(out), run_id) == {k: without_header(x) for k, x in tree(ref).items()}
    else:
        _, got = batch_contents(out)
        _, want = batch_contents(ref)
        assert len(got) == RELEASES
        assert same_run_headers(got, run_id) == {k: without_header(x) for k, x in want.items()}
        assert not [p for p in out.rglob("*") if p.name.endswith(".etl-pending")]


def worker_process(nanny: subprocess.Popen[bytes], within: float = 30) -> psutil.Process:
    """The process a `dask worker` (its nanny) runs the worker in: its child, once it is up."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        kids = [p for p in psutil.Process(nanny.pid).children() if "resource_tracker" not in " ".join(_cmd(p))]
        if kids:
            return kids[0]
        time.sleep(0.05)
    raise AssertionError(f"the nanny {nanny.pid} has no worker process")


def _cmd(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except psutil.Error:
        return []


def kill_worker(cluster: DaskCluster, i: int) -> int:
    """SIGKILL worker ``i``'s worker process (not its nanny, which starts a new one)."""
    proc = worker_process(cluster.workers[i])
    proc.send_signal(signal.SIGKILL)
    return proc.pid


# --------------------------------------------------------------------------- a. workers killed mid-run


@pytest.mark.slow
@pytest.mark.parametrize(("target", "layout"), TARGETS)
def test_workers_killed_mid_run_leave_the_output_of_a_local_run(
    engine: sa.Engine, db_url: str, tmp_path: Path, target: str, layout: str
) -> None:
    ref = reference(db_url, tmp_path, target, layout)
    toml = write_toml(tmp_path, db_url, target, layout)
    killed = []
    with dask_cluster(tmp_path, workers=2) as cluster:
        proc = etl(toml, "run", "--scheduler", cluster.address)
        for chunks, worker in ((1, 0), (3, 1), (6, 0)):  # 3 deaths: within Dask's allowed-failures
            wait_for_chunks(proc, db_url, chunks)
            killed.append(kill_worker(cluster, worker))
        code, err = finish(proc)
        if code != ExitCode.OK:  # Dask gave up on a chunk after all: the run must resume
            assert code == ExitCode.FAILED and "etl resume" in err, err[-3000:]
            code, err = finish(etl(toml, "resume", "--scheduler", cluster.address))
        assert code == ExitCode.OK, err[-3000:]
    assert len(set(killed)) == 3
    assert_same_output(engine, tmp_path, target, layout, ref)


# --------------------------------------------------------------------------- b. the scheduler lost mid-run


@pytest.mark.slow
def test_a_scheduler_lost_mid_run_fails_resumably_and_a_new_cluster_finishes(
    engine: sa.Engine, db_url: str, tmp_path: Path
) -> None:
    target, layout = "files", "ddex-batch"
    ref = reference(db_url, tmp_path, target, layout)
    toml = write_toml(tmp_path, db_url, target, layout)
    with dask_cluster(tmp_path, workers=2) as first:
        proc = etl(toml, "run", "--scheduler", first.address)
        run_id, _, _ = wait_for_chunks(proc, db_url, 2)
        first.kill_scheduler()
        code, err = finish(proc, timeout=60)
    assert code == ExitCode.FAILED, err[-3000:]
    assert f"lost the connection to the Dask scheduler at {first.address}" in err
    assert "etl resume" in err
    _, status, _, built = the_run(engine)
    assert status == "failed" and built < RELEASES
    with dask_cluster(tmp_path, workers=2) as second:
        code, err = finish(etl(toml, "resume", "--scheduler", second.address))
    assert code == ExitCode.OK, err[-3000:]
    assert the_run(engine)[:3] == (run_id, "succeeded", 2)
    assert_same_output(engine, tmp_path, target, layout, ref)


# --------------------------------------------------------------------------- c. no scheduler at start


def test_an_unreachable_scheduler_fails_at_start_and_leaves_no_run(
    engine: sa.Engine, db_url: str, tmp_path: Path
) -> None:
    toml = write_toml(tmp_path, db_url, "files", "flat")
    address = f"tcp://127.0.0.1:{free_port()}"
    code, err = finish(etl(toml, "run", "--scheduler", address), timeout=60)
    assert code == ExitCode.FAILED, err[-3000:]
    assert address in err and "fix: start it (`dask scheduler`)" in err
    assert "Traceback" not in err
    with psycopg.connect(_libpq(db_url), autocommit=True) as conn:
        assert progress_of(conn) is None  # no run row (the state tables may not even exist)
    status = subprocess.run([str(ETL), "--config", str(toml), "status"], capture_output=True, timeout=60)
    assert status.returncode == ExitCode.OK, status.stderr.decode()[-2000:]
    assert b"no runs yet" in status.stdout
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


# --------------------------------------------------------------------------- d. Dask gives up on a chunk


@pytest.mark.slow
def test_a_chunk_dask_gives_up_on_fails_the_run_resumably(engine: sa.Engine, db_url: str, tmp_path: Path) -> None:
    target, layout = "files", "flat"
    ref = reference(db_url, tmp_path, target, layout)
    toml = write_toml(tmp_path, db_url, target, layout)
    # allowed-failures = 0: the first death of a worker holding a chunk is one too many
    with dask_cluster(tmp_path, workers=2, allowed_failures=0) as cluster:
        proc = etl(toml, "run", "--scheduler", cluster.address)
        run_id, _, _ = wait_for_chunks(proc, db_url, 2)
        kill_worker(cluster, 0)
        code, err = finish(proc, timeout=60)
        assert code == ExitCode.FAILED, err[-3000:]
        assert "Dask gave up on it" in err and "etl resume" in err
        _, status, _, built = the_run(engine)
        assert status == "failed" and built < RELEASES
        code, err = finish(etl(toml, "resume", "--scheduler", cluster.address))
        assert code == ExitCode.OK, err[-3000:]
    assert the_run(engine)[:3] == (run_id, "succeeded", 2)
    assert_same_output(engine, tmp_path, target, layout, ref)


# --------------------------------------------------------------------------- e. late duplicate results


class Echoing:
    """A ChunkExecutor around the real one that hands every result back twice: once at once, once late.

    The late copy comes after the chunk was committed (a zombie attempt
    finishing after Dask ran the chunk again elsewhere), or while its first
    copy still waits for an earlier chunk; the run loop must load each once.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.slots = inner.slots
        self.late: list[Any] = []
        self.echoed = 0

    def submit(self, task: Any) -> None:
        self.inner.submit(task)

    def finished(self, timeout: float) -> list[Any]:
        got = self.inner.finished(timeout)
        out = self.late + got + got  # a repeat at once, and the earlier ones again
        self.echoed += len(self.late) + len(got)
        self.late = list(got)
        return out

    def check(self) -> None:
        self.inner.check()

    def kill(self) -> None:
        self.inner.kill()

    def shutdown(self, *, graceful: bool) -> None:
        self.inner.shutdown(graceful=graceful)

    def worker_count(self) -> int:
        return int(self.inner.worker_count())


@pytest.mark.parametrize(("target", "layout"), [("table", "flat"), ("files", "ddex-batch")])
def test_late_duplicate_results_are_loaded_once(
    engine: sa.Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str, layout: str
) -> None:
    from ddex_etl.run import job

    made: list[Echoing] = []
    real = job.executor_for

    def echoing(cfg: Config, spec: Any) -> Echoing:
        made.append(Echoing(real(cfg, spec)))
        return made[-1]

    monkeypatch.setattr(job, "executor_for", echoing)
    out = tmp_path / "out"
    cfg = Config(database=DatabaseConfig(url=db_url, pool_size=2)).with_overrides(
        extract={"chunk_size": CHUNK}, load={"target": target, "layout": layout, "directory": out},
        run={"workers": 2, "executor": "dask"},
    )
    report = run_api.run(cfg, progress=False)
    assert made and made[0].echoed >= RELEASES // CHUNK  # every result came back twice (the last one perhaps not late)
    assert (report.status, report.built, report.rejected, report.skipped) == ("succeeded", RELEASES, 0, 0)
    with engine.connect() as conn:
        [(built, chunks_done, dispatched)] = conn.execute(sa.text(
            "SELECT r.built, c.chunks_done, c.chunks_dispatched FROM ddex_etl.runs r "
            "JOIN ddex_etl.checkpoints c ON c.run_id = r.id"
        )).all()
        delivered = conn.execute(sa.text("SELECT count(*) FROM ddex_etl.delivered")).scalar()
    assert (built, chunks_done, dispatched) == (RELEASES, RELEASES // CHUNK, RELEASES // CHUNK)
    assert delivered == RELEASES
    if target == "table":
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT count(*), count(DISTINCT release_id) FROM ddex_etl.documents")).one()
        assert tuple(rows) == (RELEASES, RELEASES)
    else:
        _, files = batch_contents(out)
        assert len(files) == RELEASES and temp_files(out) == []


@pytest.mark.parametrize("attempt", [1, 2])
def test_a_chunk_handed_out_by_an_earlier_attempt_writes_nothing(
    engine: sa.Engine, db_url: str, tmp_path: Path, attempt: int
) -> None:
    """A task outliving its `etl run` (Dask cannot cancel a running task) finds the run started again and stops."""
    from ddex_etl.load import FileLoader
    from ddex_etl.retry import RetryPolicy
    from ddex_etl.run.chunks import ChunkFailure, ChunkResult, Task, WorkerSpec
    from ddex_etl.run.worker import close_worker_context, run_chunk

    cfg = Config(database=DatabaseConfig(url=db_url, pool_size=2)).with_overrides(
        extract={"chunk_size": CHUNK}, load={"directory": tmp_path / "out"}, run={"workers": 1},
    )
    report = run_api.run(cfg, progress=False)
    with engine.begin() as conn:  # resumed once since (the claims of chunk 0 are in: no turn to wait for)
        conn.execute(sa.text("UPDATE ddex_etl.runs SET attempts = 2 WHERE id = :r"), {"r": report.run_id})
    late = tmp_path / "late"
    late.mkdir()
    loader = FileLoader(late, "flat", run_id=report.run_id)
    loader.prepare()
    task = Task(number=0, release_ids=tuple(range(1, CHUNK + 1)), last_key=CHUNK, next_offset=CHUNK, loader=loader,
                job=report.job, state_schema="ddex_etl", run_id=report.run_id, claim_scope=report.run_id,
                attempt=attempt)
    spec = WorkerSpec(url=db_url, cfg=cfg, main_pid=os.getpid(), retry=RetryPolicy.of(cfg.run))
    try:
        got = run_chunk(spec, task)
    finally:
        close_worker_context()
    if attempt == 2:  # the current attempt's chunk: written
        assert isinstance(got, ChunkResult) and len(got.written) == CHUNK
        assert len(list(late.iterdir())) == CHUNK
    else:
        assert isinstance(got, ChunkFailure) and "belongs to attempt 1, but the run is at attempt 2" in got.message
        assert list(late.iterdir()) == []  # no document, no temp file
