"""The `etl` command line: help, examples, exit codes, one place for errors, and a real run through it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from ddex_etl.cli import cli
from ddex_etl.errors import (
    ConfigError,
    EtlError,
    ExitCode,
    InterruptedRun,
    LockHeldError,
    OutputError,
    TerminalError,
    TransientError,
)

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO.parent / "shared" / "ddex" / "samples"

COMMANDS = ["seed", "run", "resume", "status", "runs", "errors", "retry-failed", "validate", "db", "config"]
LEAF_COMMANDS = [
    ["seed"], ["run"], ["resume"], ["status"], ["runs"], ["errors"], ["retry-failed"], ["validate"],
    ["db", "upgrade"], ["db", "downgrade"], ["db", "current"], ["db", "stop"], ["config", "check"],
]


def invoke(args: list[str], **kwargs: object) -> Result:
    return CliRunner().invoke(cli, args, catch_exceptions=False, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _no_ambient_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run every test in an empty folder, so the repo's etl.toml and the caller's ETL_* stay out."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("ETL_") and not name.startswith("ETL_TEST_"):
            monkeypatch.delenv(name)


# --------------------------------------------------------------------------- help


def test_help_lists_every_command_with_a_description() -> None:
    result = invoke(["--help"])
    assert result.exit_code == 0
    commands = result.output.split("Commands:")[1]
    for name in COMMANDS:
        line = next((ln for ln in commands.splitlines() if ln.strip().startswith(name + " ")), None)
        assert line is not None, f"`etl --help` does not list {name}"
        assert len(line.split(None, 1)) == 2, f"{name} has no one-line description"


@pytest.mark.parametrize(
    ("code", "meaning"),
    [
        (ExitCode.OK, "success"),
        (ExitCode.FAILED, "failed"),
        (ExitCode.USAGE, "usage or configuration error"),
        (ExitCode.REJECTED, "rejected"),
        (ExitCode.LOCKED, "holds the lock"),
        (ExitCode.INTERRUPTED, "interrupted"),
    ],
)
def test_help_documents_each_exit_code(code: int, meaning: str) -> None:
    lines = invoke(["--help"]).output.split("Exit codes:")[1].splitlines()
    assert any(ln.split()[:1] == [str(code)] and meaning in ln for ln in lines if ln.strip())


@pytest.mark.parametrize("path", LEAF_COMMANDS, ids=lambda p: " ".join(p))
def test_every_command_help_has_an_example(path: list[str]) -> None:
    result = invoke([*path, "--help"])
    assert result.exit_code == 0
    assert "Example" in result.output
    examples = result.output.split("Example")[1]
    assert f"etl {' '.join(path)}" in examples


def test_python_dash_m_works() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ddex_etl", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "Usage: etl" in proc.stdout and "retry-failed" in proc.stdout


def test_version() -> None:
    from ddex_etl import __version__

    result = invoke(["--version"])
    assert result.exit_code == 0 and __version__ in result.output


# --------------------------------------------------------------------------- errors: the one place


@pytest.fixture()
def raising() -> Iterator[list[BaseException]]:
    """An extra `etl boom` command that raises whatever the test puts in the list."""
    box: list[BaseException] = []

    @click.command("boom")
    def boom() -> None:
        raise box[0]

    cli.add_command(boom)
    try:
        yield box
    finally:
        cli.commands.pop("boom")


@pytest.mark.parametrize(
    ("error", "code", "says"),
    [
        (ConfigError(["run.workers: expected an integer", "load.target: must be files"]), 2,
         ["configuration has 2 problems", "run.workers", "load.target"]),
        (TerminalError("table releases missing; fix: run `etl seed`"), 1, ["table releases missing"]),
        (TransientError("connection lost; will retry"), 1, ["connection lost"]),
        (OutputError("output directory /nope does not exist"), 1, ["/nope"]),
        (LockHeldError("job 'default' is running in pid 42"), 4, ["pid 42"]),
        (InterruptedRun("run 7 interrupted; resume with `etl resume 7`"), 130, ["etl resume 7"]),
        (EtlError("plain"), 1, ["plain"]),
        (ValueError("something odd"), 1, ["unexpected error", "ValueError: something odd", "--debug"]),
        (KeyboardInterrupt(), 130, ["interrupted"]),
    ],
)
def test_errors_map_to_exit_codes_without_traceback(
    raising: list[BaseException], error: BaseException, code: int, says: list[str]
) -> None:
    raising.append(error)
    result = invoke(["boom"])
    assert result.exit_code == code
    for text in says:
        assert text in result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""


@pytest.mark.parametrize("error", [TerminalError("no table"), ValueError("odd")])
def test_debug_shows_the_traceback(raising: list[BaseException], error: BaseException) -> None:
    raising.append(error)
    result = invoke(["--debug", "boom"])
    assert result.exit_code == 1
    assert "Traceback" in result.stderr and "rerun with --debug" not in result.stderr


def test_error_messages_never_show_a_password(raising: list[BaseException]) -> None:
    raising.append(TerminalError("cannot reach postgresql+psycopg://etl:hunter2@db.example.com:5432/catalog"))
    result = invoke(["boom"])
    assert result.exit_code == 1
    assert "hunter2" not in result.output
    assert "etl:***@db.example.com" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["no-such-command"],
        ["run", "--workers", "-1"],
        ["run", "--bogus"],
        ["seed"],  # --releases is required
        ["validate"],  # needs a path
        ["validate", "/no/such/file.xml"],
        ["errors", "not-a-number"],
    ],
    ids=lambda a: " ".join(a),
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    result = invoke(args)
    assert result.exit_code == ExitCode.USAGE
    assert "Traceback" not in result.output


def test_missing_config_file_is_exit_2_with_the_path(tmp_path: Path) -> None:
    result = invoke(["--config", str(tmp_path / "nope.toml"), "status"])
    assert result.exit_code == 2
    assert "nope.toml" in result.stderr and "not found" in result.stderr


def test_errors_in_a_subprocess_have_no_traceback_and_their_exit_code(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETL_")}
    proc = subprocess.run(
        [sys.executable, "-m", "ddex_etl", "--config", str(tmp_path / "missing.toml"), "config", "check"],
        capture_output=True, text=True, timeout=60, check=False, env=env, cwd=tmp_path,
    )
    assert proc.returncode == ExitCode.USAGE
    assert "missing.toml" in proc.stderr and "Traceback" not in proc.stderr


# --------------------------------------------------------------------------- validate


def _sample(name: str = "4 SimpleAudioSingle.xml") -> bytes:
    path = SAMPLES / "ern43" / name
    if not path.is_file():
        pytest.skip(f"DDEX sample {path} not found")
    return path.read_bytes()


def test_validate_reports_each_invalid_file_with_line_numbers(schema_dir: Path, tmp_path: Path) -> None:
    good = tmp_path / "docs" / "good.xml"
    good.parent.mkdir()
    good.write_bytes(_sample())
    lines = _sample().split(b"\n")
    at = next(i for i, ln in enumerate(lines) if b"<MessageId>" in ln)
    del lines[at]  # MessageId is required; the error points at the line that now follows
    bad = tmp_path / "docs" / "bad.xml"
    bad.write_bytes(b"\n".join(lines))

    result = invoke(["validate", str(good), "--schema-dir", str(schema_dir)])
    assert result.exit_code == 0, result.output
    assert "valid (ERN 4.3)" in result.stdout

    result = invoke(["validate", str(tmp_path / "docs"), "--schema-dir", str(schema_dir)])
    assert result.exit_code == ExitCode.FAILED
    assert f"{bad}: INVALID (ERN 4.3)" in result.stdout
    assert f"line {at + 1}:" in result.stdout and "MessageId" in result.stdout
    assert str(good) not in result.stdout  # valid files are listed only with -v
    assert "2 files: 1 valid, 1 invalid" in result.stdout


def test_validate_without_a_schema_folder_says_where_to_get_one(tmp_path: Path) -> None:
    doc = tmp_path / "a.xml"
    doc.write_bytes(b"<x/>")
    result = invoke(["validate", str(doc)])
    assert result.exit_code == ExitCode.USAGE
    assert "--schema-dir" in result.stderr and "ddex.net" in result.stderr


def test_validate_takes_the_schema_folder_from_the_environment(
    schema_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = tmp_path / "a.xml"
    doc.write_bytes(_sample())
    monkeypatch.setenv("ETL_SCHEMA_DIR", str(schema_dir))
    assert invoke(["validate", str(doc)]).exit_code == 0


# --------------------------------------------------------------------------- a real run through the CLI


def test_run_with_rejected_releases_exits_3_and_errors_lists_them(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ETL_DATABASE_URL", db_url)
    (tmp_path / "etl.toml").write_text('[extract]\nchunk_size = 10\n[run]\nworkers = 1\nretry_delay = 0.01\n')

    seeded = invoke(["seed", "--releases", "30"])
    assert seeded.exit_code == 0, seeded.output
    assert "seeded 30 releases" in seeded.stdout
    engine = sa.create_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE tracks SET isrc = 'NOT-AN-ISRC' WHERE release_id IN (4, 17)"))
    finally:
        engine.dispose()

    result = invoke(["run", "--no-progress"])
    assert result.exit_code == ExitCode.REJECTED, result.output
    assert "built 28, rejected 2" in result.stdout and "etl errors 1" in result.stdout
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        f"{i}.xml" for i in range(1, 31) if i not in (4, 17)
    )

    listed = invoke(["errors"])
    assert listed.exit_code == 0
    assert "release 4 " in listed.stdout and "release 17 " in listed.stdout
    assert "NOT-AN-ISRC" in listed.stdout and "2 rejected releases" in listed.stdout
    as_json = json.loads(invoke(["errors", "1", "--json"]).stdout)
    assert [(r["release_id"], r["stage"]) for r in as_json] == [(4, "transform"), (17, "transform")]

    runs = invoke(["runs"])
    assert runs.exit_code == 0, runs.stderr
    assert "succeeded" in runs.stdout and "28" in runs.stdout
    status = json.loads(invoke(["status", "--json"]).stdout)
    assert [(s["job"], s["status"], s["last_run"]["rejected"]) for s in status] == [("default", "succeeded", 2)]

    again = invoke(["run", "--new", "--no-progress", "--json"])
    summary = json.loads(again.stdout)
    assert (summary["run_id"], summary["built"], summary["rejected"], summary["exit_code"]) == (2, 28, 2, 3)
    assert again.exit_code == 3

    assert invoke(["db", "current"]).stdout.strip().endswith("(head)")
    assert invoke(["resume"]).exit_code == ExitCode.USAGE  # nothing unfinished to resume


def test_state_tables_through_etl_db(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ETL_DATABASE_URL", db_url)
    before = invoke(["db", "current"])
    assert before.exit_code == 0 and "no state tables yet" in before.stdout
    up = invoke(["db", "upgrade"])
    assert up.exit_code == 0 and "state tables in schema 'ddex_etl' at revision" in up.stdout
    assert invoke(["db", "current"]).stdout.strip().endswith("(head)")
    down = invoke(["db", "downgrade", "--revision", "base"])
    assert down.exit_code == 0 and down.stdout.strip().endswith("at revision (none)")
    again = invoke(["db", "downgrade"])
    assert again.exit_code == ExitCode.USAGE and "etl db upgrade" in again.stderr
    bad = invoke(["db", "upgrade", "--revision", "no-such-revision"])
    assert bad.exit_code == ExitCode.USAGE and "no-such-revision" in bad.stderr


def _running_run(conn: object) -> bool:
    cur = conn.execute("SELECT to_regclass('ddex_etl.runs') IS NOT NULL")  # type: ignore[attr-defined]
    if not cur.fetchone()[0]:
        return False
    return conn.execute("SELECT count(*) FROM ddex_etl.runs WHERE status = 'running'").fetchone()[0] > 0  # type: ignore[attr-defined]


def _wait_for(predicate: object, what: str, timeout: float = 120.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def test_a_second_run_exits_4_and_sigterm_exits_130_then_resume_finishes(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Process behaviour through the real `etl` process: the lock, the signal, the exit codes, the resume.

    The run is held still deterministically: another session locks the
    catalog's tracks table, so the first chunk's rows query waits on it while
    the run holds its job lock.
    """
    import signal

    import psycopg
    from sqlalchemy.engine import make_url

    monkeypatch.setenv("ETL_DATABASE_URL", db_url)
    (tmp_path / "etl.toml").write_text("[extract]\nchunk_size = 20\n[run]\nworkers = 1\n")
    assert invoke(["seed", "--releases", "200"]).exit_code == 0
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("ETL_")}, "ETL_DATABASE_URL": db_url}
    libpq = make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)

    with psycopg.connect(libpq, autocommit=True) as watcher, psycopg.connect(libpq) as locker:
        locker.execute("LOCK TABLE tracks IN ACCESS EXCLUSIVE MODE")
        log = (tmp_path / "first.err").open("w+")
        first = subprocess.Popen(
            [sys.executable, "-m", "ddex_etl", "run"], cwd=tmp_path, env=env,
            stdout=subprocess.DEVNULL, stderr=log,
        )
        try:
            _wait_for(lambda: _running_run(watcher), "the first run to start")

            second = subprocess.run(
                [sys.executable, "-m", "ddex_etl", "run"], cwd=tmp_path, env=env,
                capture_output=True, text=True, timeout=120, check=False,
            )
            assert second.returncode == ExitCode.LOCKED, second.stderr
            assert "etl: error:" in second.stderr and "Traceback" not in second.stderr

            first.send_signal(signal.SIGTERM)
            _wait_for(lambda: "signal" in (tmp_path / "first.err").read_text(), "the run to see the signal")
            locker.rollback()  # let the chunk in hand finish; the run then stops
            first.wait(timeout=120)
        finally:
            if first.poll() is None:
                first.kill()
                first.wait()
            log.close()
    err = (tmp_path / "first.err").read_text()
    assert first.returncode == ExitCode.INTERRUPTED, err
    assert "was interrupted" in err and "etl resume 1" in err and "Traceback" not in err

    resumed = invoke(["resume", "--no-progress"])
    assert resumed.exit_code == 0, resumed.output
    assert "run 1 of job 'default' finished, resumed" in resumed.stdout
    assert len(list((tmp_path / "out").iterdir())) == 200
