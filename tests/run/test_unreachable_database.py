"""An unreachable database, through real `etl` processes with two recipients (issue 24 item 3).

A host name that does not resolve is a mistake in the URL: it fails at once
("host not found"), never retried as a restarting server. A server that
refuses connections is retried, but for ``run.retry_for`` once per run: the
second recipient and the second phase (acknowledgements, then the run) do
not each wait their own ``retry_for`` again (before: 4 x ``retry_for``).
"""
from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
from etl_cli import etl

from ddex_etl.db import map_db_error
from ddex_etl.errors import ExitCode, TerminalError, TransientError


def _config(folder: Path, url: str, retry_for: float) -> None:
    (folder / "out").mkdir()
    (folder / "store-a").mkdir()
    (folder / "store-b").mkdir()
    lines = [
        "[database]", f"url = {json.dumps(url)}",
        "[transform]", 'sender_dpid = "PADPIDA2014040101Z"', 'sender_name = "Aurora Records"',
        "[load]", 'target = "files"', 'directory = "out"', 'layout = "ddex-batch"', "require_media = false",
        "[run]", "workers = 1", f"retry_for = {retry_for}", "retry_delay = 0.2",
    ]
    for name, dpid in (("store-a", "PADPIDA0000000010M"), ("store-b", "PADPIDA0000000020I")):
        lines += ["[[recipients]]", f'name = "{name}"', f'dpid = "{dpid}"', "require_media = false",
                  f"target = {json.dumps((folder / name).as_uri())}"]
    (folder / "etl.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_host_that_does_not_resolve_fails_at_once(tmp_path: Path) -> None:
    # .invalid never resolves (RFC 2606); with retry_for = 60 the old code took 4 x 60 s here.
    _config(tmp_path, "postgresql://etl@db.invalid:5432/catalog", retry_for=60)
    t0 = time.monotonic()
    proc = etl(tmp_path, "run", "--no-progress", timeout=120)
    took = time.monotonic() - t0
    assert proc.returncode == ExitCode.FAILED, proc.stdout + proc.stderr
    out = proc.stdout + proc.stderr
    assert "host not found: 'db.invalid'" in out
    assert "fix: check the host name" in out
    assert "retry" not in proc.stderr.lower()  # no "retry 1 in ..." lines: nothing was retried
    assert took < 30, f"took {took:.0f} s"


@pytest.mark.slow
def test_an_unreachable_server_costs_retry_for_once_per_run(tmp_path: Path) -> None:
    retry_for = 8.0
    _config(tmp_path, f"postgresql://etl@127.0.0.1:{_closed_port()}/catalog", retry_for=retry_for)
    t0 = time.monotonic()
    proc = etl(tmp_path, "run", "--no-progress", timeout=120)
    took = time.monotonic() - t0
    assert proc.returncode == ExitCode.FAILED, proc.stdout + proc.stderr
    out = proc.stdout + proc.stderr
    assert "Connection refused" in out
    # Two recipients x (acknowledgements, run) = 4 x retry_for = 32 s before; now retry_for once, plus the
    # process's start-up (several seconds on a loaded machine).
    assert took < 3 * retry_for, f"took {took:.1f} s"
    # The recipients go side by side: each may start waiting at the same moment, on one shared clock; a
    # later loop gives up at once.
    assert 1 <= proc.stderr.count("retry 1 in") <= 2
    assert "one budget per run" in out  # the second recipient says why it did not wait again


@pytest.mark.parametrize(
    ("message", "kind", "words"),
    [
        ("failed to resolve host 'db.exmaple.com': [Errno -2] Name or service not known", TerminalError,
         "host not found: 'db.exmaple.com'"),
        ('could not translate host name "pg-primary" to address: Temporary failure in name resolution',
         TerminalError, "host not found: 'pg-primary'"),
        ('connection failed: connection to server at "127.0.0.1", port 1 failed: Connection refused',
         TransientError, "transient"),
    ],
)
def test_name_resolution_is_terminal_a_refused_connection_transient(message: str, kind: type, words: str) -> None:
    import psycopg

    err = map_db_error(psycopg.OperationalError(message), "connecting to PostgreSQL")
    assert type(err) is kind
    assert words in str(err)
