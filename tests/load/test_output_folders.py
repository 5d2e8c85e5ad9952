"""Output folders under real runs: shared folders, links, names read back, what a failure leaves.

Each case runs the real pipeline against a real PostgreSQL and a real
filesystem; concurrency comes from a second process (``python -m ddex_etl``)
paused with SIGSTOP at a known point, never from timing.
"""
from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from messages import without_header
from sqlalchemy.engine import make_url

from ddex_etl import run as run_api
from ddex_etl import state
from ddex_etl.config import Config, DatabaseConfig
from ddex_etl.db import make_engine
from ddex_etl.demo.seed import seed_catalog
from ddex_etl.errors import EtlError, ExitCode, OutputError
from ddex_etl.load import PENDING_SUFFIX, TMP_SUFFIX, release_identifier

RELEASES = 60
CHUNK = 10


@pytest.fixture()
def engine(db_url: str) -> Iterator[sa.Engine]:
    eng = make_engine(db_url, pool_size=2)
    seed_catalog(eng, RELEASES, seed=7)
    yield eng
    eng.dispose()


@pytest.fixture()
def big_engine(db_url: str) -> Iterator[sa.Engine]:
    """Enough chunks that a worker paused early leaves the other plenty to do."""
    eng = make_engine(db_url, pool_size=2)
    seed_catalog(eng, 4 * RELEASES, seed=7)
    yield eng
    eng.dispose()


def make_cfg(db_url: str, out: Path, *, schema: str = "ddex_etl", job: str = "default", workers: int = 1,
             layout: str = "flat") -> Config:
    return Config(database=DatabaseConfig(url=db_url, state_schema=schema, pool_size=2)).with_overrides(
        extract={"chunk_size": CHUNK},
        load={"target": "files", "directory": out, "layout": layout},
        run={"workers": workers, "retry_delay": 0.01, "job": job},
    )


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root``, hidden ones included (temp files and pending lists must show up)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if TMP_SUFFIX in p.name or PENDING_SUFFIX in p.name)


def bodies(files: dict[str, bytes]) -> dict[str, bytes]:
    """The files with each message's header left out: two runs give two MessageIds for the same content."""
    return {name: without_header(data) if name.endswith(".xml") else data for name, data in files.items()}


def batch_tree(out: Path, batch_id: str) -> dict[str, bytes]:
    """A batch's files, messages without their headers (compared with another run's)."""
    files = tree(out / batch_id)
    assert files.pop(f"BatchComplete_{batch_id}.xml") == b""
    return bodies(files)


def release_ids(engine: sa.Engine) -> list[int]:
    with engine.connect() as conn:
        return [int(r[0]) for r in conn.execute(sa.text("SELECT release_id FROM releases ORDER BY release_id"))]


def identifier_of(engine: sa.Engine, release_id: int) -> str:
    with engine.connect() as conn:
        icpn, grid = conn.execute(
            sa.text("SELECT icpn, grid FROM releases WHERE release_id = :r"), {"r": release_id}
        ).one()
    return release_identifier(release_id, icpn, grid)


def withdraw(engine: sa.Engine, release_id: int) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE releases SET deleted_at = now() WHERE release_id = :r"), {"r": release_id})


def reference_batch(db_url: str, where: Path) -> dict[str, bytes]:
    """What an undisturbed ddex-batch run writes for today's catalog (own schema and folder)."""
    report = run_api.run(make_cfg(db_url, where, schema=f"ref_{where.name}", layout="ddex-batch"), progress=False)
    return batch_tree(where, str(report.batch_id))


GATE = 4242  # advisory lock key: a commit held with "WAIT" goes on when the test lets go of it


def hold_checkpoint(engine: sa.Engine, chunk: int, action: str) -> None:
    """Make the commit that moves the checkpoint past ``chunk`` fail (``RAISE``) or hang:
    ``SLEEP`` until its backend is terminated, ``WAIT`` until the test releases advisory lock GATE.

    A trigger on the state table: the worker has renamed the chunk's files by
    then, exactly the window between a worker's rename and the checkpoint.
    """
    body = {
        "RAISE": "RAISE EXCEPTION 'test: the checkpoint of this chunk is refused'",
        "SLEEP": "PERFORM pg_sleep(600)",
        "WAIT": f"PERFORM pg_advisory_xact_lock({GATE})",
    }[action]
    state.upgrade(engine, "ddex_etl")
    with engine.begin() as conn:
        conn.execute(sa.text(
            "CREATE FUNCTION ddex_etl.hold_chunk() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF NEW.chunks_done = {chunk + 1} AND OLD.chunks_done = {chunk} THEN {body}; END IF; "
            "RETURN NEW; END $$"
        ))
        conn.execute(sa.text(
            "CREATE TRIGGER hold_chunk BEFORE UPDATE ON ddex_etl.checkpoints "
            "FOR EACH ROW EXECUTE FUNCTION ddex_etl.hold_chunk()"
        ))


def release_checkpoint(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TRIGGER hold_chunk ON ddex_etl.checkpoints"))


def failed_batch_run(engine: sa.Engine, db_url: str, out: Path, chunk: int = 2) -> tuple[Config, run_api.RunReport]:
    """A ddex-batch run whose commit of ``chunk`` fails: chunks before it are loaded, it is not."""
    hold_checkpoint(engine, chunk, "RAISE")
    cfg = make_cfg(db_url, out, layout="ddex-batch")
    with pytest.raises(EtlError, match="the checkpoint of this chunk is refused") as info:
        run_api.run(cfg, progress=False)
    release_checkpoint(engine)
    report = info.value.report  # type: ignore[attr-defined]
    assert (report.status, report.built) == ("failed", chunk * CHUNK)
    return cfg, report


# --------------------------------------------------------------------------- processes


def write_toml(work: Path, out: Path, *, job: str, layout: str = "flat", workers: int = 1, chunk: int = CHUNK) -> None:
    work.mkdir(parents=True, exist_ok=True)
    (work / "etl.toml").write_text(
        f'[extract]\nchunk_size = {chunk}\n[load]\ndirectory = "{out}"\nlayout = "{layout}"\n'
        f'[run]\njob = "{job}"\nworkers = {workers}\nretry_delay = 0.01\n',
        encoding="utf-8",
    )


def start_etl(work: Path, db_url: str, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETL_") or k.startswith("ETL_TEST_")}
    env["ETL_DATABASE_URL"] = db_url
    return subprocess.Popen(
        [sys.executable, "-m", "ddex_etl", *args], cwd=work, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _libpq(db_url: str) -> str:
    return make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)


def wait_until(proc: subprocess.Popen[str], what: str, check: object, timeout: float = 120.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()  # type: ignore[operator]
        if got:
            return got
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"etl exited ({proc.returncode}) before {what}: {err[-3000:]}")
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


_TEMP_PID = re.compile(r"\.(?:[0-9]+-)?([0-9]+)" + re.escape(TMP_SUFFIX) + "$")


def a_writer_with_temp_files(root: Path) -> int | None:
    """The pid of a worker with temp files on disk right now (it is mid-chunk)."""
    for p in root.rglob(f"*{TMP_SUFFIX}"):
        m = _TEMP_PID.search(p.name)
        if m:
            return int(m.group(1))
    return None


def pause_a_writer_mid_chunk(proc: subprocess.Popen[str], root: Path) -> int:
    """SIGSTOP a worker of ``proc`` while it has temp files on disk; returns its pid."""
    for _ in range(200):
        pid = wait_until(proc, "a temp file", lambda: a_writer_with_temp_files(root))
        assert isinstance(pid, int)
        os.kill(pid, signal.SIGSTOP)
        if any(_TEMP_PID.search(p.name) and int(_TEMP_PID.search(p.name).group(1)) == pid  # type: ignore[union-attr]
               for p in root.rglob(f"*{TMP_SUFFIX}")):
            return pid
        os.kill(pid, signal.SIGCONT)  # it had just renamed them all: try again
    raise AssertionError("no worker could be paused mid-chunk")


# --------------------------------------------------------------------------- shared folders


def test_a_second_job_writing_the_same_flat_folder_is_refused_and_the_first_completes(
    engine: sa.Engine, db_url: str, tmp_path: Path
) -> None:
    ref = tmp_path / "ref"
    run_api.run(make_cfg(db_url, ref, schema="ref"), progress=False)
    out = tmp_path / "out"
    hold_checkpoint(engine, 1, "WAIT")  # alpha stays mid-run, holding its folder, until the gate opens
    write_toml(tmp_path / "alpha", out, job="alpha")
    beta = make_cfg(db_url, out, job="beta")
    proc: subprocess.Popen[str] | None = None
    try:
        with psycopg.connect(_libpq(db_url), autocommit=True) as gate:
            gate.execute("SELECT pg_advisory_lock(%s)", (GATE,))
            proc = start_etl(tmp_path / "alpha", db_url, "run", "--no-progress")

            def alpha_waits() -> bool:
                row = gate.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %s AND NOT granted", (GATE,)
                ).fetchone()
                return bool(row and row[0])

            wait_until(proc, "alpha's commit of chunk 1", alpha_waits)
            with pytest.raises(OutputError) as refused:
                run_api.run(beta, progress=False)
            gate.execute("SELECT pg_advisory_unlock(%s)", (GATE,))
        _, err = proc.communicate(timeout=300)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.communicate()
    message = str(refused.value)
    assert f"output folder {out} is in use by run 1 of job 'alpha' (pid {proc.pid} on " in message
    assert "fix: give each job its own load.directory" in message
    assert refused.value.exit_code == ExitCode.FAILED
    # Refused before a run row existed, and nothing of alpha's was touched.
    assert [r.job for r in run_api.recent_runs(beta)] == ["alpha"]
    assert proc.returncode == ExitCode.OK, err[-3000:]
    assert bodies(tree(out)) == bodies(tree(ref))  # one whole document per release; no lock file, no temp file


def test_two_jobs_in_one_directory_with_the_ddex_batch_layout_work_side_by_side(
    big_engine: sa.Engine, db_url: str, tmp_path: Path
) -> None:
    reference = reference_batch(db_url, tmp_path / "ref")
    out = tmp_path / "out"
    write_toml(tmp_path / "alpha", out, job="alpha", layout="ddex-batch")
    proc = start_etl(tmp_path / "alpha", db_url, "run", "--no-progress")
    paused = None
    try:
        paused = pause_a_writer_mid_chunk(proc, out)  # alpha's temp files stay on disk meanwhile
        beta = run_api.run(make_cfg(db_url, out, job="beta", layout="ddex-batch"), progress=False)
        assert beta.status == "succeeded"
        os.kill(paused, signal.SIGCONT)
        paused = None
        _, err = proc.communicate(timeout=300)
    finally:
        if paused is not None:
            os.kill(paused, signal.SIGCONT)
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == ExitCode.OK, err[-3000:]
    batches = sorted(p.name for p in out.iterdir())
    assert len(batches) == 2 and str(beta.batch_id) in batches
    for batch in batches:
        assert batch_tree(out, batch) == reference


# --------------------------------------------------------------------------- links and names read back


def test_a_resumed_batch_never_writes_through_a_symlinked_release_folder(
    engine: sa.Engine, db_url: str, tmp_path: Path
) -> None:
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    elsewhere.mkdir()
    cfg, failed = failed_batch_run(engine, db_url, out)
    later = identifier_of(engine, release_ids(engine)[-1])  # rebuilt by the resume
    link = out / str(failed.batch_id) / later
    link.symlink_to(elsewhere, target_is_directory=True)

    with pytest.raises(OutputError, match=rf"{later}: it is a symbolic link.*fix") as refused:
        run_api.run(cfg, progress=False)
    assert refused.value.report.run_id == failed.run_id  # type: ignore[attr-defined]
    assert list(elsewhere.iterdir()) == []
    assert leftovers(out) == []

    link.unlink()
    done = run_api.run(cfg, progress=False)
    assert (done.run_id, done.status) == (failed.run_id, "succeeded")
    assert batch_tree(out, str(done.batch_id)) == reference_batch(db_url, tmp_path / "ref")


def test_a_batch_id_read_back_from_the_state_table_is_validated(
    engine: sa.Engine, db_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "work" / "out"
    out.parent.mkdir()
    cfg, failed = failed_batch_run(engine, db_url, out)
    before = tree(tmp_path)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE ddex_etl.runs SET batch_id = '../elsewhere/esc' WHERE id = :r"), {"r": failed.run_id})
    with pytest.raises(OutputError) as refused:
        run_api.run(cfg, progress=False)
    message = str(refused.value)
    assert f"run {failed.run_id}'s batch id '../elsewhere/esc' is not a DDEX batch id" in message
    assert "fix: restore that run's batch_id" in message
    assert tree(tmp_path) == before  # not one file written, inside or outside


# --------------------------------------------------------------------------- what a failure leaves


def test_no_temp_file_of_a_failed_run_remains_when_it_exits(big_engine: sa.Engine, db_url: str, tmp_path: Path) -> None:
    """A worker is mid-chunk (paused) when the other one fails: its temp files go too."""
    out = tmp_path / "out"
    (out / f"{release_ids(big_engine)[-1]}.xml").mkdir(parents=True)  # the last chunk cannot be renamed
    write_toml(tmp_path / "work", out, job="default", workers=2, chunk=5)
    proc = start_etl(tmp_path / "work", db_url, "run", "--no-progress")
    paused = None
    try:
        paused = pause_a_writer_mid_chunk(proc, out)
        _, err = proc.communicate(timeout=300)
    finally:
        if paused is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(paused, signal.SIGCONT)
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == ExitCode.FAILED, err[-3000:]
    assert "EISDIR" in err
    assert leftovers(out) == []


def test_a_chunk_whose_commit_failed_leaves_no_files_and_a_resume_matches_an_undisturbed_run(
    engine: sa.Engine, db_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    cfg, failed = failed_batch_run(engine, db_url, out, chunk=2)
    files = tree(out / str(failed.batch_id))
    assert len(files) == failed.built == 2 * CHUNK  # the files never claim more than the checkpoint
    assert leftovers(out) == []

    gone = release_ids(engine)[2 * CHUNK + 5]  # in the chunk that failed; withdrawn before the resume
    withdraw(engine, gone)
    done = run_api.run(cfg, progress=False)
    assert (done.run_id, done.status, done.built) == (failed.run_id, "succeeded", RELEASES - 1)
    got = batch_tree(out, str(done.batch_id))
    assert got == reference_batch(db_url, tmp_path / "ref")
    assert not any(name.startswith(identifier_of(engine, gone) + "/") for name in got)


def test_a_crash_between_rename_and_checkpoint_is_reconciled_on_resume(
    engine: sa.Engine, db_url: str, tmp_path: Path
) -> None:
    hold_checkpoint(engine, 2, "SLEEP")
    out = tmp_path / "out"
    write_toml(tmp_path / "work", out, job="default", layout="ddex-batch")
    proc = start_etl(tmp_path / "work", db_url, "run", "--no-progress")
    with psycopg.connect(_libpq(db_url), autocommit=True) as conn:

        def committing() -> bool:
            return bool(conn.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'").fetchone()[0])

        try:
            wait_until(proc, "the commit of chunk 2", committing)
            os.kill(proc.pid, signal.SIGKILL)  # chunk 2's files are renamed, its checkpoint not committed
            proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE wait_event = 'PgSleep'")
    release_checkpoint(engine)
    [batch] = [p for p in out.iterdir() if p.is_dir()]
    assert len([n for n in tree(batch) if n.endswith(".xml")]) == 3 * CHUNK  # one chunk more than the checkpoint
    gone = release_ids(engine)[2 * CHUNK + 5]
    withdraw(engine, gone)

    resumed = start_etl(tmp_path / "work", db_url, "run", "--no-progress")
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == ExitCode.OK, err[-3000:]
    assert [p.name for p in out.iterdir() if p.is_dir()] == [batch.name]  # the same run, continued
    assert batch_tree(out, batch.name) == reference_batch(db_url, tmp_path / "ref")
    assert leftovers(out) == []
