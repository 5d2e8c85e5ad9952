"""What an operator's scheduler meets, through the real `etl` process against a real PostgreSQL:
which run `etl run` works on, `--json` on every exit path, and log lines worth reading at 3 a.m."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from etl_cli import etl, one_json
from sqlalchemy.engine import make_url

from ddex_etl.demo.seed import seed_catalog
from ddex_etl.state import RunRow
from ddex_etl.state.joblock import job_lock_key
from ddex_etl.state.run_selection import select_run

GOOD_CHANGED = (Path(__file__).resolve().parents[2] / "sql" / "changed_release_keys.sql").read_text()
BROKEN_CHANGED = "SELECT release_id FROM no_such_table WHERE release_id > :after AND :since < :until LIMIT :limit"
TOML = (
    '[extract]\nchunk_size = {chunk}\nchanged_keys_query = "{changed}"\n'
    "[run]\nworkers = 1\nretry_delay = 0.01\nwatermark_lag_seconds = 0\n"
)


def libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture()
def catalog(db_url: str, tmp_path: Path) -> dict[str, str]:
    engine = sa.create_engine(db_url)
    try:
        seed_catalog(engine, 30, seed=5)
    finally:
        engine.dispose()
    return {"ETL_DATABASE_URL": db_url}


# --------------------------------------------------------------------------- run selection


def _row(**changes: Any) -> RunRow:
    base: dict[str, Any] = {name: None for name in RunRow.__dataclass_fields__}
    base.update(id=7, job="default", status="failed", mode="incremental", config_fingerprint="aaa", options={},
                attempts=1, built=0, rejected=0, skipped=0, chunks_redone=0)
    base.update(changes)
    return RunRow(**base)


@pytest.mark.parametrize(
    ("unfinished", "mode", "fingerprint", "new", "continues", "reason"),
    [
        (None, "full", "aaa", False, False, None),
        (_row(), "incremental", "aaa", False, True, None),
        (_row(), "full", "aaa", False, False, "it is an incremental run and a full run was asked for"),
        (_row(mode="full"), "incremental", "aaa", False, False, "it is a full run and an incremental run"),
        (_row(), "incremental", "bbb", False, False, "another configuration (fingerprint aaa, now bbb"),
        (_row(), "incremental", "aaa", True, False, "--new"),
        (_row(status="interrupted", mode="full"), "full", "aaa", False, True, None),
    ],
    ids=["nothing", "same kind and config", "other kind", "other kind 2", "other config", "--new", "interrupted"],
)
def test_run_selection_rules(
    unfinished: RunRow | None, mode: str, fingerprint: str, new: bool, continues: bool, reason: str | None
) -> None:
    chosen = select_run(unfinished, mode=mode, fingerprint=fingerprint, new=new)
    assert (chosen.resume is not None) == continues
    if reason is None:
        assert chosen.superseded is None and chosen.describe() is None
    else:
        assert chosen.superseded is unfinished and reason in (chosen.reason or "")
        assert "etl resume 7" in (chosen.describe() or "")


def test_a_failed_run_never_wedges_the_job(catalog: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "broken.sql").write_text(BROKEN_CHANGED)
    (tmp_path / "etl.toml").write_text(TOML.format(chunk=10, changed="broken.sql"))
    first = etl(tmp_path, "run", "--full", "--no-progress", "--json", env=catalog)
    assert first.returncode == 0, first.stderr
    assert one_json(first)["run_id"] == 1

    failed = etl(tmp_path, "run", "--incremental", "--no-progress", "--json", env=catalog)
    assert failed.returncode == 1, failed.stderr
    summary = one_json(failed)
    assert (summary["run_id"], summary["status"], summary["exit_code"]) == (2, "failed", 1)
    assert "no_such_table" in summary["error"]

    # Plain `etl run` (run.mode is full) does not resume the failed incremental run: it supersedes it.
    full = etl(tmp_path, "run", "--no-progress", "--json", env=catalog)
    assert full.returncode == 0, full.stderr
    summary = one_json(full)
    assert (summary["run_id"], summary["mode"], summary["status"]) == (3, "full", "succeeded")
    assert summary["superseded"]["run_id"] == 2 and summary["superseded"]["mode"] == "incremental"
    assert "superseded" in full.stderr and "etl resume 2" in full.stderr

    # The same kind of run with the same configuration continues the unfinished one.
    again = etl(tmp_path, "run", "--incremental", "--no-progress", "--json", env=catalog)
    assert one_json(again)["run_id"] == 4
    retried = etl(tmp_path, "run", "--incremental", "--no-progress", "--json", env=catalog)
    summary = one_json(retried)
    assert (summary["run_id"], summary["attempts"], retried.returncode) == (4, 2, 1)

    # The operator fixes the configuration: the next night's run starts afresh, no --new needed.
    (tmp_path / "fixed.sql").write_text(GOOD_CHANGED)
    (tmp_path / "etl.toml").write_text(TOML.format(chunk=10, changed="fixed.sql"))
    fixed = etl(tmp_path, "run", "--incremental", "--no-progress", "--json", env=catalog)
    assert fixed.returncode == 0, fixed.stderr
    summary = one_json(fixed)
    assert (summary["run_id"], summary["mode"], summary["status"]) == (5, "incremental", "succeeded")
    assert summary["superseded"]["run_id"] == 4 and "another configuration" in summary["superseded"]["reason"]

    # The superseded run is kept as it was, resumable by id.
    runs = {r["run_id"]: r for r in json.loads(etl(tmp_path, "runs", "--json", env=catalog).stdout)}
    assert (runs[2]["status"], runs[4]["status"]) == ("failed", "failed")


def test_new_supersedes_an_unfinished_run_and_says_so(catalog: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "broken.sql").write_text(BROKEN_CHANGED)
    (tmp_path / "etl.toml").write_text(TOML.format(chunk=10, changed="broken.sql"))
    assert etl(tmp_path, "run", "--no-progress", env=catalog).returncode == 0
    assert etl(tmp_path, "run", "--incremental", "--no-progress", env=catalog).returncode == 1
    new = etl(tmp_path, "run", "--new", "--full", "--no-progress", env=catalog)
    assert new.returncode == 0, new.stderr
    assert "superseded run 2 (incremental, failed): --new asks for a new run" in new.stdout


# --------------------------------------------------------------------------- --json on every exit path


def test_json_when_the_configuration_is_invalid(tmp_path: Path) -> None:
    (tmp_path / "etl.toml").write_text('[run]\nworkers = "many"\n')
    proc = etl(tmp_path, "run", "--incremental", "--no-progress", "--json")
    assert proc.returncode == 2
    data = one_json(proc)
    assert (data["exit_code"], data["command"], data["mode"], data["status"]) == (2, "run", "incremental", "not started")
    assert "run.workers" in data["error"]


def test_json_on_a_usage_error(tmp_path: Path) -> None:
    proc = etl(tmp_path, "run", "--workers", "-1", "--json")
    assert proc.returncode == 2
    data = one_json(proc)
    assert data["exit_code"] == 2 and "--workers" in data["error"]


def test_json_when_the_lock_is_held(catalog: dict[str, str], db_url: str, tmp_path: Path) -> None:
    (tmp_path / "etl.toml").write_text('[run]\nworkers = 1\njob = "nightly"\n')
    assert etl(tmp_path, "db", "upgrade", env=catalog).returncode == 0
    with psycopg.connect(libpq(db_url), autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (job_lock_key("nightly"),))
        proc = etl(tmp_path, "run", "--no-progress", "--json", env=catalog)
    assert proc.returncode == 4, proc.stderr
    data = one_json(proc)
    assert (data["exit_code"], data["job"], data["error_kind"]) == (4, "nightly", "LockHeldError")
    assert "already running" in data["error"]


def test_json_when_a_second_ctrl_c_ends_the_run_at_once(catalog: dict[str, str], db_url: str, tmp_path: Path) -> None:
    """The second signal ends the process without unwinding: the one JSON object still comes out."""
    import signal
    import time

    base = {k: v for k, v in os.environ.items() if not k.startswith("ETL_") or k.startswith("ETL_TEST_")}
    with psycopg.connect(libpq(db_url), autocommit=True) as watcher, psycopg.connect(libpq(db_url)) as locker:
        locker.execute("LOCK TABLE tracks IN ACCESS EXCLUSIVE MODE")  # holds the run at its first chunk
        proc = subprocess.Popen([sys.executable, "-m", "ddex_etl", "run", "--no-progress", "--json"], cwd=tmp_path,
                                env={**base, **catalog}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not watcher.execute(
            "SELECT to_regclass('ddex_etl.runs') IS NOT NULL AND EXISTS "
            "(SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database())"
        ).fetchone()[0]:
            assert time.monotonic() < deadline, "the run never reached its first chunk"
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    data = json.loads(out)
    assert (data["exit_code"], data["status"], data["run_id"]) == (130, "interrupted", 1)
    assert "etl resume" in data["error"]


def test_json_when_the_server_is_unreachable(tmp_path: Path) -> None:
    (tmp_path / "etl.toml").write_text("[run]\nworkers = 1\nmax_retries = 0\n")
    env = {"ETL_DATABASE_URL": "postgresql://etl:hunter2@127.0.0.1:9/catalog"}
    proc = etl(tmp_path, "run", "--no-progress", "--json", env=env)
    assert proc.returncode == 1
    data = one_json(proc)
    assert data["exit_code"] == 1 and data["retryable"] is True and "127.0.0.1" in data["error"]
    assert "hunter2" not in proc.stdout + proc.stderr


@pytest.mark.parametrize("command", [["resume"], ["retry-failed"]])
def test_json_when_there_is_nothing_to_resume_or_retry(catalog: dict[str, str], tmp_path: Path, command: list[str]) -> None:
    proc = etl(tmp_path, *command, "--no-progress", "--json", env=catalog)
    assert proc.returncode == 2
    data = one_json(proc)
    assert data["exit_code"] == 2 and data["command"] == command[0] and data["error"]


# --------------------------------------------------------------------------- log lines

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


def test_log_lines_have_time_and_level_when_not_on_a_terminal(catalog: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "etl.toml").write_text("[extract]\nchunk_size = 10\n[run]\nworkers = 1\n")
    quiet = etl(tmp_path, "run", env=catalog)
    assert quiet.returncode == 0, quiet.stderr
    lines = [ln for ln in quiet.stderr.splitlines() if ln.strip()]
    assert lines, "a run that is not on a terminal logs its progress"
    assert all(re.match(rf"{STAMP} (INFO|WARNING|ERROR|DEBUG) ", ln) for ln in lines), lines
    assert "chunk 0 loaded" not in quiet.stderr  # chunk detail is for -v

    verbose = etl(tmp_path, "-v", "run", "--new", "--no-progress", env=catalog)
    assert re.search(rf"^{STAMP} INFO pipeline \[job default, run 2\]: chunk 0 loaded: 10 releases", verbose.stderr, re.M)
    assert "handed to a worker" not in verbose.stderr
    debug = etl(tmp_path, "-vv", "run", "--new", "--no-progress", env=catalog)
    assert "chunk 2 handed to a worker: 10 releases (ids 21..30)" in debug.stderr


def test_json_log_lines(catalog: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "etl.toml").write_text("[extract]\nchunk_size = 10\n[run]\nworkers = 1\n")
    proc = etl(tmp_path, "--log-format", "json", "-v", "run", "--no-progress", env=catalog)
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(ln) for ln in proc.stderr.splitlines() if ln.strip()]
    assert records and all(
        set(r) >= {"time", "level", "job", "run", "recipient", "message", "fields"} for r in records
    )
    chunks = [r for r in records if r["fields"].get("chunk") is not None]
    assert [r["fields"]["chunk"] for r in chunks] == [0, 1, 2]
    # `recipient` is always a name (here transform.recipient_name's default), the DPID beside it
    assert {(r["job"], r["run"], r["recipient"], r["recipient_dpid"], r["level"]) for r in chunks} == {
        ("default", 1, "Demo Store", "PADPIDA0000000002M", "info")
    }
    assert chunks[0]["fields"]["built"] == 10 and re.fullmatch(STAMP, chunks[0]["time"])


def test_an_error_is_printed_once(catalog: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "broken.sql").write_text(BROKEN_CHANGED)
    (tmp_path / "etl.toml").write_text(TOML.format(chunk=10, changed="broken.sql"))
    assert etl(tmp_path, "run", "--no-progress", env=catalog).returncode == 0
    failed = etl(tmp_path, "run", "--incremental", "--no-progress", env=catalog)
    assert failed.returncode == 1
    assert failed.stderr.count("no_such_table") == 1, failed.stderr
    assert "etl: error:" in failed.stderr and "etl resume 2" in failed.stderr

    # With JSON log lines, the summary and the error are log records too: stderr stays parseable.
    as_json = etl(tmp_path, "--log-format", "json", "run", "--incremental", "--no-progress", env=catalog)
    assert as_json.returncode == 1
    records = [json.loads(line) for line in as_json.stderr.splitlines() if line.strip()]
    errors = [r for r in records if r["level"] == "error"]
    assert len(errors) == 1 and "no_such_table" in errors[0]["message"]
    assert errors[0]["fields"] == {"exit_code": 1, "error_kind": "TerminalError"}
