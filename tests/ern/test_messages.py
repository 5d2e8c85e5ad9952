"""Messages that name the real cause and the fix, through the real `etl` against real PostgreSQL servers:
one that asks for a password (started here from the embedded server's binaries) and the test server."""
from __future__ import annotations

import json
import os
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from etl_cli import etl, one_json

from ddex_etl.demo.seed import seed_catalog

PASSWORD = "right-horse-battery"


@pytest.fixture(scope="module")
def password_server() -> Iterator[str]:
    """A PostgreSQL whose user etl_pw must give a password (scram-sha-256), on a Unix socket."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pgserver's platformdirs warns when XDG_RUNTIME_DIR is unset
        try:
            import pgserver
        except ImportError:
            pytest.skip("pgserver is not installed: no server to require a password")
        root = Path(f"/tmp/ddex-etl-pw-{os.getpid()}")  # short: the socket path has a 108-byte limit
        shutil.rmtree(root, ignore_errors=True)
        server = pgserver.get_server(root, cleanup_mode="delete")
    try:
        server.psql(f"CREATE ROLE etl_pw LOGIN PASSWORD '{PASSWORD}';")
        server.psql("CREATE DATABASE catalog OWNER etl_pw;")
        hba = root / "pg_hba.conf"
        hba.write_text("local all etl_pw scram-sha-256\n" + hba.read_text())
        server.psql("SELECT pg_reload_conf();")
        yield f"postgresql://etl_pw@/catalog?host={root}"
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server.cleanup()


def no_pg_env() -> dict[str, str]:
    # libpq would take a password from these: the test is about none being given.
    return {"PGPASSWORD": "", "PGPASSFILE": "/nonexistent"}


def test_a_missing_password_is_a_configuration_error_and_is_not_retried(password_server: str, tmp_path: Path) -> None:
    (tmp_path / "etl.toml").write_text("[run]\nworkers = 1\nmax_retries = 3\nretry_delay = 2.0\n")
    proc = etl(tmp_path, "run", "--no-progress", "--json", env={"ETL_DATABASE_URL": password_server, **no_pg_env()})
    assert proc.returncode == 2, proc.stderr
    assert "no password supplied" in proc.stderr and "database.url" in proc.stderr
    assert "retry" not in proc.stderr.lower()
    data = one_json(proc)
    assert (data["exit_code"], data["error_kind"], data["retryable"]) == (2, "ConfigError", False)


def test_config_check_connect_catches_a_wrong_password_that_plain_check_passes(
    password_server: str, tmp_path: Path
) -> None:
    wrong = password_server.replace("etl_pw@", "etl_pw:not-the-password@")
    env = {"ETL_DATABASE_URL": wrong, **no_pg_env()}
    assert etl(tmp_path, "config", "check", env=env).returncode == 0  # it only reads the file
    proc = etl(tmp_path, "config", "check", "--connect", env=env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "FAILED  connection:" in proc.stdout and "password authentication failed" in proc.stdout
    assert "fix:" in proc.stdout and "not-the-password" not in proc.stdout + proc.stderr

    right = password_server.replace("etl_pw@", f"etl_pw:{PASSWORD}@")
    ok = etl(tmp_path, "config", "check", "--connect", env={"ETL_DATABASE_URL": right, **no_pg_env()})
    assert "ok  connection: connected as etl_pw" in ok.stdout
    assert 'relation "releases" does not exist' in ok.stdout  # an empty database: no catalog yet
    assert PASSWORD not in ok.stdout + ok.stderr


def test_config_check_connect_reports_each_problem_with_its_fix(db_url: str, tmp_path: Path) -> None:
    engine = sa.create_engine(db_url)
    try:
        seed_catalog(engine, 3)
    finally:
        engine.dispose()
    env = {"ETL_DATABASE_URL": db_url}
    good = etl(tmp_path, "config", "check", "--connect", env=env)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "configuration OK" in good.stdout
    assert [line.split()[0] for line in good.stdout.splitlines()[:-1]] == ["ok"] * 7

    (tmp_path / "changed.sql").write_text("SELECT release_id FROM releasez WHERE release_id > :after LIMIT :limit")
    (tmp_path / "etl.toml").write_text('[extract]\nchanged_keys_query = "changed.sql"\n[load]\ndirectory = "/proc/ddex-out"\n')
    bad = etl(tmp_path, "config", "check", "--connect", env=env)
    assert bad.returncode == 2
    lines = {line.split(":")[0].split(None, 1)[1]: line for line in bad.stdout.splitlines() if line.startswith(("    ok", "FAILED"))}
    assert lines["keys query"].startswith("    ok") and lines["rows query"].startswith("    ok")
    assert lines["changed-keys query"].startswith("FAILED")
    assert 'relation "releasez" does not exist' in lines["changed-keys query"] and "changed.sql" in lines["changed-keys query"]
    assert lines["output"].startswith("FAILED") and "although /proc exists" in lines["output"]
    assert "2 problems found" in bad.stdout


@pytest.mark.parametrize(
    ("directory", "says"),
    [
        ("/proc/ddex-out", "no such file or directory although /proc exists"),
        ("/sys/ddex-out", "operation not permitted"),
    ],
)
def test_write_errors_name_the_real_cause(db_url: str, tmp_path: Path, directory: str, says: str) -> None:
    if not Path(directory).parent.is_dir():
        pytest.skip(f"{Path(directory).parent} is not mounted here")
    engine = sa.create_engine(db_url)
    try:
        seed_catalog(engine, 3)
    finally:
        engine.dispose()
    (tmp_path / "etl.toml").write_text(f'[load]\ndirectory = "{directory}"\n[run]\nworkers = 1\n')
    proc = etl(tmp_path, "run", "--no-progress", env={"ETL_DATABASE_URL": db_url})
    assert proc.returncode == 1
    assert says in proc.stderr and "disappeared" not in proc.stderr and "fix:" in proc.stderr


def test_messages_never_say_none(db_url: str, tmp_path: Path) -> None:
    (tmp_path / "keys.sql").write_text("SELECT release_id FROM no_releases WHERE release_id > :after LIMIT :limit")
    (tmp_path / "etl.toml").write_text('[extract]\nkeys_query = "keys.sql"\n[run]\nworkers = 1\n')
    proc = etl(tmp_path, "run", "--no-progress", "--json", env={"ETL_DATABASE_URL": db_url})
    assert proc.returncode == 1
    assert "for the first page" in proc.stderr
    assert "None" not in proc.stderr and "None" not in one_json(proc)["error"]


def test_an_unknown_release_id_is_reported_not_found(db_url: str, tmp_path: Path) -> None:
    engine = sa.create_engine(db_url)
    try:
        seed_catalog(engine, 5)
    finally:
        engine.dispose()
    (tmp_path / "etl.toml").write_text("[run]\nworkers = 1\n")
    env = {"ETL_DATABASE_URL": db_url}
    proc = etl(tmp_path, "run", "--release-id", "2", "--release-id", "424242", "--no-progress", "--json", env=env)
    assert proc.returncode == 3, proc.stderr
    summary = one_json(proc)
    assert (summary["mode"], summary["built"], summary["rejected"], summary["exit_code"]) == ("targeted", 1, 1, 3)
    listed = json.loads(etl(tmp_path, "errors", str(summary["run_id"]), "--json", env=env).stdout)
    assert [(r["release_id"], r["stage"], r["error_kind"]) for r in listed] == [(424242, "extract", "NotFound")]
    assert "not found in the catalog" in listed[0]["message"]


@pytest.mark.parametrize("command", [["seed", "--releases", "3"], ["run", "--no-progress"]])
def test_a_wrong_password_fails_at_once_naming_the_cause(password_server: str, tmp_path: Path, command: list[str]) -> None:
    (tmp_path / "etl.toml").write_text("[run]\nworkers = 1\nretry_delay = 2.0\n")
    wrong = password_server.replace("etl_pw@", "etl_pw:not-the-password@")
    proc = etl(tmp_path, *command, env={"ETL_DATABASE_URL": wrong, **no_pg_env()})
    assert proc.returncode == 1, proc.stderr
    assert 'password authentication failed for user "etl_pw"' in proc.stderr
    assert "fix: check the credentials" in proc.stderr
    assert "retry" not in proc.stderr.lower() and "Traceback" not in proc.stderr
    assert "unexpected error" not in proc.stderr and "not-the-password" not in proc.stdout + proc.stderr
