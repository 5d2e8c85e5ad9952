"""Workers through a real pgbouncer in transaction mode (database.worker_url), the coordinator direct.

A cluster's many worker processes are what a pooler is for; the coordinator
cannot go through a transaction pooler (its job lock is a session advisory
lock). pgbouncer is started here on 127.0.0.1 (`.ci/run` installs Debian's
package when it is missing); without the binary the test is skipped.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from ddex_etl import run as run_api
from ddex_etl.config import Config, DatabaseConfig
from ddex_etl.db import make_engine
from ddex_etl.demo.seed import seed_catalog

PGBOUNCER = shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if os.path.exists("/usr/sbin/pgbouncer") else None)
pytestmark = pytest.mark.skipif(PGBOUNCER is None, reason="pgbouncer is not installed (.ci/run installs it)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def pooler(db_url: str) -> Iterator[tuple[str, Path]]:
    """A pgbouncer in transaction mode in front of the test's server: (its URL for this database, its log)."""
    server = make_url(db_url)
    # Not under pytest's tmp_path (mode 0700): started as root, pgbouncer runs
    # as nobody, which must read its files and write its log here.
    folder = Path(tempfile.mkdtemp(prefix="etl-pgbouncer-"))
    folder.chmod(0o777)
    port = _free_port()
    log = folder / "pgbouncer.log"
    (folder / "users.txt").write_text(f'"{server.username}" ""\n')
    (folder / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={server.host or '127.0.0.1'} port={server.port or 5432}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {folder / 'users.txt'}\n"
        "pool_mode = transaction\ndefault_pool_size = 3\nmax_client_conn = 50\n"
        f"logfile = {log}\n"
    )
    for p in folder.iterdir():
        p.chmod(0o666)
    as_user = ["-u", "nobody"] if os.geteuid() == 0 else []
    proc = subprocess.Popen([str(PGBOUNCER), *as_user, str(folder / "pgbouncer.ini")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"pgbouncer did not start: {log.read_text() if log.exists() else ''}")
            time.sleep(0.05)
    try:
        yield server.set(host="127.0.0.1", port=port).render_as_string(hide_password=False), log
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("executor", ["local", "dask"])
def test_workers_run_through_a_transaction_pooler(
    db_url: str, pooler: tuple[str, Path], tmp_path: Path, executor: str
) -> None:
    engine = make_engine(db_url, pool_size=1)
    seed_catalog(engine, 120, seed=5)
    pooled, log = pooler

    def cfg(out: str, worker_url: str | None) -> Config:
        return Config(database=DatabaseConfig(url=db_url, pool_size=2, worker_url=worker_url)).with_overrides(
            extract={"chunk_size": 10},  # 12 chunks: each worker process reuses its server connections
            load={"directory": tmp_path / out},
            run={"workers": 2, "executor": executor, "job": out},
        )

    direct = run_api.run(cfg("direct", None), progress=False)
    through = run_api.run(cfg("pooled", pooled), progress=False)
    assert (direct.status, through.status) == ("succeeded", "succeeded")
    assert through.built == direct.built == 120
    assert sorted(p.name for p in (tmp_path / "pooled").iterdir()) == sorted(p.name for p in (tmp_path / "direct").iterdir())
    # the workers really went through the pooler (and the coordinator did not)
    assert "login attempt: db=" in log.read_text()
    with engine.connect() as conn:
        runs = conn.execute(sa.text("SELECT count(*) FROM ddex_etl.runs WHERE status = 'succeeded'")).scalar()
    assert runs == 2
    engine.dispose()
