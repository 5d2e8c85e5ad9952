"""Output faults under a real run: disk full, file-size limit, a name the filesystem refuses, read-only output.

After each fault: a message naming the path, the cause and the fix; exit code
FAILED; the checkpoint not past the failed chunk; no temp or half-written
file visible; and once the fault is fixed, a resume that ends with exactly
one complete document per release (byte-identical to an undisturbed run).

Disk full and read-only use a small tmpfs, which needs root (the tests skip
otherwise); the file-size limit (RLIMIT_FSIZE) works for any user.
"""
from __future__ import annotations

import hashlib
import json
import os
import resource
import struct
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from messages import without_header

from ddex_etl import run as run_api
from ddex_etl import state
from ddex_etl.config import Config, DatabaseConfig
from ddex_etl.db import make_engine
from ddex_etl.demo.seed import seed_catalog
from ddex_etl.errors import ExitCode, OutputError
from ddex_etl.load import TMP_SUFFIX

RELEASES = 60
CHUNK = 10


@pytest.fixture()
def engine(db_url: str) -> Iterator[sa.Engine]:
    eng = make_engine(db_url, pool_size=2)
    seed_catalog(eng, RELEASES, seed=5)
    yield eng
    eng.dispose()


def make_cfg(db_url: str, out: Path, schema: str = "ddex_etl", **load: object) -> Config:
    return Config(database=DatabaseConfig(url=db_url, state_schema=schema, pool_size=2)).with_overrides(
        extract={"chunk_size": CHUNK},
        load={"target": "files", "directory": out, **load},
        run={"workers": 1, "retry_delay": 0.01},
    )


def tree(root: Path) -> dict[str, bytes]:
    """Files by path; messages without their header (the reference is another run, with its own message ids)."""
    return {str(p.relative_to(root)): without_header(p.read_bytes()) for p in sorted(root.rglob("*")) if p.is_file()}


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if TMP_SUFFIX in p.name]


@pytest.fixture()
def reference(engine: sa.Engine, db_url: str, tmp_path: Path) -> dict[str, bytes]:
    """The files an undisturbed run writes (its own state schema and folder)."""
    run_api.run(make_cfg(db_url, tmp_path / "ref", schema="ref"), progress=False)
    files = tree(tmp_path / "ref")
    assert len(files) == RELEASES
    return files


def checkpoint(engine: sa.Engine, run_id: int) -> state.Checkpoint:
    with engine.connect() as conn:
        return state.get_checkpoint(conn, "ddex_etl", run_id)


@contextmanager
def tmpfs(where: Path, size_kb: int, *options: str) -> Iterator[Path]:
    """A small tmpfs mounted at ``where`` (skips the test when this user cannot mount)."""
    where.mkdir(parents=True, exist_ok=True)
    opts = ",".join([f"size={size_kb}k", *options])
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def remount(where: Path, *options: str) -> None:
    subprocess.run(["mount", "-o", ",".join(["remount", *options]), str(where)], check=True)


# --------------------------------------------------------------------------- disk full


def test_disk_full_stops_cleanly_and_resumes_after_space_is_freed(
    engine: sa.Engine, db_url: str, tmp_path: Path, reference: dict[str, bytes]
) -> None:
    # Room for about half the documents (tmpfs counts whole pages per file).
    pages = sum(-(-len(b) // 4096) for b in reference.values())
    with tmpfs(tmp_path / "disk", pages * 4 // 2) as disk:
        cfg = make_cfg(db_url, disk)
        _fill_then_resume(engine, cfg, disk, reference)


def test_disk_full_in_the_ddex_batch_layout_sends_no_batch_complete_until_whole(
    engine: sa.Engine, db_url: str, tmp_path: Path
) -> None:
    ref_cfg = make_cfg(db_url, tmp_path / "ref", schema="ref", layout="ddex-batch")
    ref_batch = tmp_path / "ref" / str(run_api.run(ref_cfg, progress=False).batch_id)
    reference = tree(ref_batch)
    marker = reference.pop(next(n for n in reference if n.startswith("BatchComplete_")))
    assert marker == b""
    pages = sum(-(-len(b) // 4096) for b in reference.values())
    with tmpfs(tmp_path / "disk", pages * 4 // 2) as disk:
        cfg = make_cfg(db_url, disk, layout="ddex-batch")
        with pytest.raises(OutputError, match="the disk is full") as info:
            run_api.run(cfg, progress=False)
        failed = info.value.report  # type: ignore[attr-defined]
        batch = disk / str(failed.batch_id)
        visible = tree(batch)
        assert not [n for n in visible if "BatchComplete" in n]  # the recipient must not pick it up yet
        assert temp_files(disk) == [] and all(visible[n] == reference[n] for n in visible)
        remount(disk, "size=8m")
        done = run_api.run(cfg, progress=False)
        assert (done.run_id, done.status, done.batch_id) == (failed.run_id, "succeeded", failed.batch_id)
        final = tree(batch)
        assert final.pop(f"BatchComplete_{done.batch_id}.xml") == b""
        assert final == reference
        assert all(any(p.iterdir()) for p in batch.iterdir() if p.is_dir())  # no empty release folder left


def _fill_then_resume(engine: sa.Engine, cfg: Config, disk: Path, reference: dict[str, bytes]) -> None:
    if True:
        with pytest.raises(OutputError) as info:
            run_api.run(cfg, progress=False)
        message = str(info.value)
        assert f"cannot write {disk}/" in message and "the disk is full (ENOSPC)" in message
        assert "fix: free space" in message and "etl resume" in message
        assert info.value.exit_code == ExitCode.FAILED
        failed = info.value.report  # type: ignore[attr-defined]
        assert failed.status == "failed"
        cp = checkpoint(engine, failed.run_id)
        assert 0 < cp.chunks_done * CHUNK < RELEASES
        assert temp_files(disk) == []  # the failed chunk's temp files are gone
        visible = tree(disk)
        # Exactly the committed chunks are visible, each file whole.
        assert len(visible) == cp.chunks_done * CHUNK == failed.built
        assert all(visible[name] == reference[name] for name in visible)

        remount(disk, "size=8m")  # space freed
        done = run_api.run(cfg, progress=False)
        assert (done.run_id, done.status, done.resumed, done.exit_code) == (failed.run_id, "succeeded", True, 0)
        assert tree(disk) == reference  # one whole document per release, nothing else


def test_a_full_disk_while_copying_media_fails_the_run_and_the_resume_ships_every_release(
    db_url: str, tmp_path: Path
) -> None:
    """Issue 21 item 5: ENOSPC while copying a resource rejected healthy releases as "cannot be read from the
    media root" (exit 3), and BatchComplete went out without them. Now it is the run's fault: exit 1, no
    reject, no BatchComplete; once there is room, `etl resume` ships every release with all its media."""
    releases = 12
    eng = make_engine(db_url, pool_size=2)
    media = tmp_path / "media"
    try:
        seed_catalog(eng, releases, seed=5, media_dir=media)
        noise = os.urandom(3 << 20)  # every release's first track: more than the whole output disk (a real WAV)
        fmt = struct.pack("<HHIIHH", 1, 1, 8000, 8000, 1, 8)
        big = (b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(noise)) + b"WAVEfmt " + struct.pack("<I", len(fmt))
               + fmt + b"data" + struct.pack("<I", len(noise)) + noise)
        (media / "audio" / "01-01.wav").write_bytes(big)
        with eng.begin() as conn:
            conn.execute(sa.text("UPDATE tracks SET audio_file = 'audio/01-01.wav', audio_md5 = :m, duration_seconds = :d "
                                 "WHERE disc_number = 1 AND track_number = 1"),
                         {"m": hashlib.md5(big).hexdigest(), "d": len(noise) // 8000})
            catalog = conn.execute(sa.text(
                "SELECT release_id, audio_file, audio_md5 FROM tracks UNION ALL "
                "SELECT release_id, file, md5 FROM release_images")).all()
    finally:
        eng.dispose()
    work = tmp_path / "work"
    work.mkdir()
    (work / "etl.toml").write_text(
        f'[extract]\nchunk_size = 4\n[load]\ndirectory = "out"\nlayout = "ddex-batch"\nmedia_root = "{media}"\n'
        '[run]\nworkers = 1\nretry_delay = 0.01\n'
    )
    with tmpfs(work / "out", 2048) as out:
        proc = etl(["run", "--no-progress"], work, db_url)
        assert proc.returncode == ExitCode.FAILED, proc.stderr[-3000:]
        assert "cannot copy tracks[0].audio_file of release " in proc.stderr
        assert "the disk is full (ENOSPC); fix: free space" in proc.stderr and "Traceback" not in proc.stderr
        assert "cannot be read" not in proc.stderr
        errors = etl(["errors", "--json"], work, db_url)
        assert errors.returncode == 0 and json.loads(errors.stdout) == []  # no release was blamed
        assert not list(out.rglob("BatchComplete_*")) and temp_files(out) == []

        remount(out, "size=64m")  # space freed
        resumed = etl(["resume", "--no-progress"], work, db_url)
        assert resumed.returncode == ExitCode.OK, resumed.stderr[-3000:]
        [batch] = [p for p in out.iterdir() if p.is_dir()]
        assert len(list(batch.glob("BatchComplete_*.xml"))) == 1
        folders = [p for p in batch.iterdir() if p.is_dir()]
        assert len(folders) == releases
        shipped = sorted(hashlib.md5(f.read_bytes()).hexdigest() for d in folders for f in (d / "resources").iterdir())
        wanted = sorted({(rid, path): md5 for rid, path, md5 in catalog}.values())
        assert shipped == wanted  # each release with every one of its files, as the catalog says


# --------------------------------------------------------------------------- read-only output


def test_read_only_output_fails_before_any_run_and_names_the_fix(
    engine: sa.Engine, db_url: str, tmp_path: Path
) -> None:
    with tmpfs(tmp_path / "ro", 8192, "ro") as ro:
        cfg = make_cfg(db_url, ro)
        # The real cause (EROFS), not "permission denied": root may write anywhere else.
        with pytest.raises(
            OutputError,
            match=rf"cannot write {ro}/\.etl-write-probe-\d+\.etl-tmp: the filesystem is mounted read-only "
            rf"\(EROFS\); fix: set load.directory",
        ):
            run_api.run(cfg, progress=False)
        assert run_api.recent_runs(cfg) == []  # refused before a run row existed
        remount(ro, "rw")
        assert run_api.run(cfg, progress=False).built == RELEASES


# --------------------------------------------------------------------------- file-size limit


def _limit_file_size(limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def etl(args: list[str], cwd: Path, url: str, *, fsize: int | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETL_") or k.startswith("ETL_TEST_")}
    env["ETL_DATABASE_URL"] = url
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "ddex_etl", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
        # Python ignores SIGXFSZ, so writing past the limit raises EFBIG instead of killing the process.
        preexec_fn=(lambda: _limit_file_size(fsize)) if fsize is not None else None,
    )


def test_a_file_size_limit_fails_cleanly_then_resume_completes(
    engine: sa.Engine, db_url: str, tmp_path: Path, reference: dict[str, bytes]
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "etl.toml").write_text(
        f'[extract]\nchunk_size = {CHUNK}\n[load]\ndirectory = "out"\n[run]\nworkers = 1\nretry_delay = 0.01\n'
    )
    smallest = min(len(b) for b in reference.values())
    proc = etl(["run", "--no-progress"], work, db_url, fsize=smallest // 2)
    assert proc.returncode == ExitCode.FAILED, proc.stderr
    out = work / "out"
    assert f"cannot write {out}/" in proc.stderr and "(EFBIG)" in proc.stderr and "ulimit -f" in proc.stderr
    assert "etl resume 1" in proc.stdout + proc.stderr and "Traceback" not in proc.stderr
    assert tree(out) == {} and temp_files(out) == []  # nothing half-written, nothing visible
    assert checkpoint(engine, 1).chunks_done == 0

    resumed = etl(["resume", "--no-progress"], work, db_url)
    assert resumed.returncode == ExitCode.OK, resumed.stderr
    assert tree(out) == reference


# --------------------------------------------------------------------------- a name the filesystem refuses


def test_a_refused_file_name_fails_the_chunk_and_resume_rewrites_it(
    engine: sa.Engine, db_url: str, tmp_path: Path, reference: dict[str, bytes]
) -> None:
    """A folder squats where release 25's file must go: rename(2) refuses the name (EISDIR)."""
    out = tmp_path / "out"
    squatter = out / "25.xml"
    squatter.mkdir(parents=True)
    cfg = make_cfg(db_url, out)
    with pytest.raises(OutputError) as info:
        run_api.run(cfg, progress=False)
    assert f"cannot write {squatter}:" in str(info.value) and "EISDIR" in str(info.value)
    failed = info.value.report  # type: ignore[attr-defined]
    assert (failed.status, failed.built, failed.exit_code) == ("failed", 20, ExitCode.FAILED)
    assert checkpoint(engine, failed.run_id).chunks_done == 2  # chunk 2 (releases 21-30) not committed
    assert temp_files(out) == []
    visible = tree(out)
    assert all(visible[name] == reference[name] for name in visible)  # whatever is visible is whole

    squatter.rmdir()
    done = run_api.run(cfg, progress=False)
    assert (done.run_id, done.status) == (failed.run_id, "succeeded")
    assert tree(out) == reference


@pytest.mark.parametrize("layout", ["flat", "ddex-batch"])
def test_an_output_path_through_a_file_fails_at_once(
    engine: sa.Engine, db_url: str, tmp_path: Path, layout: str
) -> None:
    (tmp_path / "afile").write_text("not a folder")
    cfg = make_cfg(db_url, tmp_path / "afile" / "out", layout=layout)
    with pytest.raises(OutputError, match="afile") as info:
        run_api.run(cfg, progress=False)
    assert "is a file" in str(info.value) and "fix:" in str(info.value)
    assert run_api.recent_runs(cfg) == []
