"""The embedded default: no database configured, `etl` starts its own PostgreSQL and the whole job runs on it.

Each step is a real `python -m ddex_etl` process, because what matters here is
process behaviour: the server outlives the command that started it, the next
command reuses it, and `etl db stop` stops it. The data folder is a short path
under /tmp (a Unix socket path is limited to about 100 bytes) and is removed
afterwards; the server the other tests use is never touched.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ddex_etl.db import stop_embedded

REPO = Path(__file__).resolve().parent.parent
SCHEMAS = REPO.parent / "shared" / "ddex" / "schemas"
RELEASES = 20


@pytest.fixture()
def project() -> Iterator[Path]:
    """A folder with an etl.toml that configures no database (so the embedded one is used)."""
    root = Path(tempfile.mkdtemp(prefix="etl-emb-", dir="/tmp"))
    (root / "etl.toml").write_text(
        '[database]\nembedded_dir = "pg"\n'
        "[extract]\nchunk_size = 7\n"
        '[load]\ndirectory = "out"\n'
        "[run]\nworkers = 1\nretry_delay = 0.05\n",
        encoding="utf-8",
    )
    try:
        yield root
    finally:
        stop_embedded(root / "pg")
        shutil.rmtree(root, ignore_errors=True)


def etl(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # No ETL_* from the caller: in particular no ETL_DATABASE_URL.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETL_")}
    return subprocess.run(
        [sys.executable, "-m", "ddex_etl", *args],
        cwd=project, env=env, capture_output=True, text=True, timeout=300, check=False,
    )


def postmaster_pid(data_dir: Path) -> int | None:
    pid_file = data_dir / "postmaster.pid"
    return int(pid_file.read_text().splitlines()[0]) if pid_file.exists() else None


def test_seed_run_and_stop_on_the_embedded_server(project: Path) -> None:
    pg = project / "pg"

    stopped = etl(project, "db", "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert "no embedded PostgreSQL running" in stopped.stdout
    assert not pg.exists()  # stopping never starts (or creates) a server

    seeded = etl(project, "seed", "--releases", str(RELEASES))
    assert seeded.returncode == 0, seeded.stderr
    assert f"seeded {RELEASES} releases" in seeded.stdout
    assert f"embedded PostgreSQL in {pg}" in seeded.stdout
    server = postmaster_pid(pg)
    assert server is not None  # still running after `etl seed` exited

    ran = etl(project, "run")
    assert ran.returncode == 0, ran.stderr
    assert f"built {RELEASES}, rejected 0" in ran.stdout
    assert "releases" in ran.stderr  # progress lines (not a terminal here)
    assert postmaster_pid(pg) == server  # the same server, reused
    docs = sorted((project / "out").iterdir())
    assert [d.name for d in docs] == sorted(f"{i}.xml" for i in range(1, RELEASES + 1))
    for doc in docs:
        head = doc.read_bytes()[:300]
        assert head.startswith(b"<?xml") and b"NewReleaseMessage" in head

    if (SCHEMAS / "ern" / "43").is_dir():
        valid = etl(project, "validate", "out", "--schema-dir", str(SCHEMAS))
        assert valid.returncode == 0, valid.stdout
        assert f"{RELEASES} files: {RELEASES} valid, 0 invalid" in valid.stdout

    current = etl(project, "db", "current")
    assert current.returncode == 0 and current.stdout.strip().endswith("(head)")

    stopped = etl(project, "db", "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert f"stopped the embedded PostgreSQL in {pg}" in stopped.stdout
    assert postmaster_pid(pg) is None

    # The data survives a stop: the next command starts the server again and sees the run.
    status = etl(project, "status", "--json")
    assert status.returncode == 0, status.stderr
    assert '"status": "succeeded"' in status.stdout
    assert postmaster_pid(pg) not in (None, server)
