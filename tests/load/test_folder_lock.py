"""The output-folder lock: one run per folder, refused with a message naming the holder; freed by death."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ddex_etl.errors import OutputError
from ddex_etl.load import FileLoader
from ddex_etl.load.folder_lock import FolderLock

HOLD = """
import sys, time
from pathlib import Path
from ddex_etl.load.folder_lock import FolderLock
lock = FolderLock(Path(sys.argv[1]), Path(sys.argv[1]).parent, "output folder")
lock.acquire({"job": "nightly", "run_id": 41})
print("held", flush=True)
time.sleep(120)
"""


def _lock(tmp_path: Path) -> FolderLock:
    return FolderLock(tmp_path / ".ddex-etl.lock", tmp_path, "output folder")


def test_a_second_holder_is_refused_until_the_first_releases(tmp_path: Path) -> None:
    first, second = _lock(tmp_path), _lock(tmp_path)
    first.acquire({"job": "nightly", "run_id": 7})
    info = json.loads((tmp_path / ".ddex-etl.lock").read_text())
    assert (info["job"], info["run_id"], info["pid"]) == ("nightly", 7, os.getpid())
    with pytest.raises(OutputError) as refused:
        second.acquire({"job": "weekly", "run_id": 8})
    message = str(refused.value)
    assert f"output folder {tmp_path} is in use by run 7 of job 'nightly' (pid {os.getpid()} on " in message
    assert "fix: give each job its own load.directory" in message
    first.release()
    assert not (tmp_path / ".ddex-etl.lock").exists()  # nothing left behind in the folder
    second.acquire({"job": "weekly", "run_id": 8})
    second.release()


def test_a_lock_held_by_another_process_is_freed_when_it_is_killed(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path / ".ddex-etl.lock")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        with pytest.raises(OutputError, match=rf"in use by run 41 of job 'nightly' \(pid {proc.pid} on "):
            _lock(tmp_path).acquire({"job": "other"})
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        lock = _lock(tmp_path)
        lock.acquire({"job": "other"})  # SIGKILL leaves no stale lock: the kernel dropped it
        lock.release()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def test_a_lock_file_that_is_a_link_is_never_written_through(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / ".ddex-etl.lock").symlink_to(outside)
    with pytest.raises(OutputError, match="is a symbolic link.*fix: remove that link"):
        _lock(folder).acquire({"job": "nightly"})
    assert outside.read_text() == "precious"


def test_a_lock_file_replaced_while_waiting_is_not_trusted(tmp_path: Path) -> None:
    """The holder removes the file as it releases; whoever opened the old file must start over."""
    first = _lock(tmp_path)
    first.acquire({"job": "a"})
    stale_fd = os.open(tmp_path / ".ddex-etl.lock", os.O_RDWR)
    first.release()
    second = _lock(tmp_path)
    second.acquire({"job": "b"})
    assert (tmp_path / ".ddex-etl.lock").exists()
    assert os.fstat(stale_fd).st_nlink == 0  # the old file is unlinked: a lock on it would guard nothing
    os.close(stale_fd)
    second.release()


@pytest.mark.parametrize("layout", ["flat", "ddex-batch"])
def test_file_loaders_on_one_folder(tmp_path: Path, layout: str) -> None:
    """flat: the second run is refused; ddex-batch: each run has its own batch folder and lock."""
    a = FileLoader(tmp_path, layout, "20260101000000000" if layout == "ddex-batch" else None)
    b = FileLoader(tmp_path, layout, "20260101000000001" if layout == "ddex-batch" else None)
    a.acquire("alpha", 1)
    try:
        if layout == "flat":
            with pytest.raises(OutputError, match="in use by run 1 of job 'alpha'"):
                b.acquire("beta", 2)
        else:
            b.acquire("beta", 2)
            b.close()
    finally:
        a.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # close() took the lock files away
