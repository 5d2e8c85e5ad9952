"""Configuration: validated once, every problem reported together, env overrides, secrets never printed."""
from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from ddex_etl.cli import cli
from ddex_etl.config import ENV_OVERRIDES, Config, load_config, mask_secrets, mask_url
from ddex_etl.errors import ConfigError, ExitCode

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "Sup3r-s3cret-pw"


@pytest.fixture(autouse=True)
def _clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty folder and no ETL_* variables from the caller."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("ETL_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str, name: str = "etl.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def etl(args: list[str]) -> Result:
    return CliRunner().invoke(cli, args, catch_exceptions=False)


# --------------------------------------------------------------------------- every problem at once

# Each case: a broken etl.toml and the key paths its problems must name.
BROKEN = {
    "unknown key, wrong type, missing file": (
        """
        [extract]
        chunksize = 100
        keys_query = "queries/nope.sql"
        [run]
        workers = "two"
        """,
        ["extract.chunksize", "run.workers", "extract.keys_query"],
    ),
    "bad url, unknown section, bad choice": (
        """
        [database]
        url = "mysql://etl@db/catalog"
        [transfrom]
        ern_version = "4.3"
        [load]
        target = "s3"
        """,
        ["database.url", "transfrom", "load.target"],
    ),
    "wrong types everywhere": (
        """
        [database]
        pool_size = 0
        [transform]
        sender_dpid = "not-a-dpid"
        repair = "maybe"
        [run]
        max_error_rate = 1.5
        fail_fast = 1
        """,
        ["database.pool_size", "transform.sender_dpid", "transform.repair", "run.max_error_rate", "run.fail_fast"],
    ),
    "missing folder, bad identifier, not a table": (
        """
        extract = 5
        [transform]
        schema_dir = "no/such/folder"
        [load]
        table = "documents; DROP TABLE releases"
        """,
        ["extract", "transform.schema_dir", "load.table"],
    ),
}


@pytest.mark.parametrize("case", BROKEN, ids=list(BROKEN))
def test_one_config_error_names_every_problem(tmp_path: Path, case: str) -> None:
    text, keys = BROKEN[case]
    path = write(tmp_path, text.replace("\n        ", "\n"))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    problems = caught.value.problems
    assert len(problems) == len(keys), problems
    for key in keys:
        assert any(p.startswith(f"{key}:") for p in problems), f"{key} not named in {problems}"
    assert caught.value.exit_code == ExitCode.USAGE


@pytest.mark.parametrize("case", BROKEN, ids=list(BROKEN))
def test_cli_reports_every_problem_and_exits_2(tmp_path: Path, case: str) -> None:
    text, keys = BROKEN[case]
    path = write(tmp_path, text.replace("\n        ", "\n"))
    for command in (["config", "check"], ["run"], ["seed", "--releases", "1"]):
        result = etl(["--config", str(path), *command])
        assert result.exit_code == ExitCode.USAGE, result.output
        assert f"configuration has {len(keys)} problems" in result.stderr
        for key in keys:
            assert re.search(rf"^  - {re.escape(key)}:", result.stderr, re.M), result.stderr
        assert "Traceback" not in result.output and result.stdout == ""


def test_problems_name_the_value_and_the_fix(tmp_path: Path) -> None:
    path = write(tmp_path, '[extract]\nmode = "cursor"\n[run]\nworkers = -2\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.problems == (
        "extract.mode: must be 'keyset' or 'offset', got 'cursor'",
        "run.workers: must be 0 (one per core) or more, got -2",
    )


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[run\njob = 1", "not valid TOML"),
        ("", None),  # an empty file is all defaults
    ],
)
def test_unreadable_toml(tmp_path: Path, text: str, says: str | None) -> None:
    path = write(tmp_path, text)
    if says is None:
        assert load_config(path) == Config(source=path)
        return
    with pytest.raises(ConfigError, match=says):
        load_config(path)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.toml")


# --------------------------------------------------------------------------- environment overrides


def test_etl_database_url_wins_over_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[database]\nurl = "postgresql://file@filehost/filedb"\n')
    assert load_config(path, env={}).database.url == "postgresql://file@filehost/filedb"
    cfg = load_config(path, env={"ETL_DATABASE_URL": "postgresql://env@envhost/envdb"})
    assert cfg.database.url == "postgresql://env@envhost/envdb"


@pytest.mark.parametrize(
    ("name", "value", "section", "key", "expected"),
    [
        ("ETL_JOB", "nightly", "run", "job", "nightly"),
        ("ETL_WORKERS", "3", "run", "workers", 3),
        ("ETL_ERN_VERSION", "3.8.2", "transform", "ern_version", "3.8.2"),
    ],
)
def test_env_overrides_are_typed_like_the_file(
    tmp_path: Path, name: str, value: str, section: str, key: str, expected: object
) -> None:
    cfg = load_config(write(tmp_path, '[run]\njob = "from-file"\nworkers = 1\n'), env={name: value})
    assert getattr(getattr(cfg, section), key) == expected


def test_env_override_with_a_wrong_value_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, ""), env={"ETL_WORKERS": "many", "ETL_ERN_VERSION": "5.0"})
    assert sorted(p.split(":")[0] for p in caught.value.problems) == [
        "run.workers (from ETL_WORKERS)",
        "transform.ern_version (from ETL_ERN_VERSION)",
    ]


def test_env_override_reaches_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, '[database]\nurl = "postgresql://file@filehost/filedb"\n')
    monkeypatch.setenv("ETL_DATABASE_URL", "postgresql://env@envhost:5433/envdb")
    result = etl(["--config", str(path), "config", "check"])
    assert result.exit_code == 0
    assert 'url = "postgresql://env@envhost:5433/envdb"' in result.stdout
    assert "filehost" not in result.stdout
    assert "environment overrides: ETL_DATABASE_URL" in result.stdout


def test_relative_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    cfg = load_config(write(tmp_path / "conf", '[load]\ndirectory = "docs"\n[database]\nembedded_dir = "pg"\n'))
    assert cfg.load.directory == tmp_path / "conf" / "docs"
    assert cfg.database.embedded_dir == tmp_path / "conf" / "pg"


# --------------------------------------------------------------------------- secrets


def test_config_check_never_prints_the_password_from_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, f'[database]\nurl = "postgresql://etl:{PASSWORD}@db.example.com:5432/catalog"\n')
    result = etl(["--config", str(path), "config", "check"])
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    assert 'url = "postgresql://etl:***@db.example.com:5432/catalog"' in result.stdout


def test_config_check_never_prints_the_password_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ETL_DATABASE_URL", f"postgresql+psycopg://etl:{PASSWORD}@db.example.com/catalog")
    result = etl(["config", "check"])
    assert result.exit_code == 0
    assert PASSWORD not in result.output and "etl:***@db.example.com" in result.stdout


def test_a_connection_failure_never_prints_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    # Port 1 refuses at once: the error comes from the driver, through the CLI's one error handler.
    monkeypatch.setenv("ETL_DATABASE_URL", f"postgresql://etl:{PASSWORD}@127.0.0.1:1/catalog")
    for args in (["db", "current"], ["--debug", "db", "current"], ["-vv", "status"]):
        result = etl(args)
        assert result.exit_code == ExitCode.FAILED
        assert PASSWORD not in result.output
        assert "etl: error:" in result.stderr


def test_a_bad_url_in_the_config_is_reported_without_its_password(tmp_path: Path) -> None:
    path = write(tmp_path, f'[database]\nurl = "mysql://etl:{PASSWORD}@db/catalog"\n')
    result = etl(["--config", str(path), "config", "check"])
    assert result.exit_code == ExitCode.USAGE
    assert "database.url" in result.stderr and PASSWORD not in result.output


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("postgresql://u:pw@h/db", "postgresql://u:***@h/db"),
        ("failed on postgresql+psycopg://u:pw@h:5432/db today", "failed on postgresql+psycopg://u:***@h:5432/db today"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("no url here", "no url here"),
    ],
)
def test_mask_secrets(text: str, masked: str) -> None:
    assert mask_secrets(text) == masked


def test_mask_url_of_nothing_names_the_embedded_server() -> None:
    assert mask_url(None) == "(embedded PostgreSQL)"


# --------------------------------------------------------------------------- the shipped example


def test_the_repo_etl_toml_loads_and_uses_the_embedded_server() -> None:
    cfg = load_config(REPO / "etl.toml", env={})
    assert cfg.database.url is None
    assert cfg.database.embedded_dir == REPO / ".etl" / "pgdata"
    assert cfg.load.directory == REPO / "out" and cfg.load.target == "files"


def test_the_repo_etl_toml_shows_every_key() -> None:
    text = (REPO / "etl.toml").read_text(encoding="utf-8")
    for section in ("database", "extract", "transform", "load", "run"):
        assert f"[{section}]" in text
        for f in dataclasses.fields(getattr(Config(), section)):
            assert re.search(rf"^#? ?{f.name} = ", text, re.M), f"etl.toml does not show {section}.{f.name}"
    for name in ENV_OVERRIDES:
        assert name in text, f"etl.toml does not mention {name}"


# --------------------------------------------------------------------------- executor and scheduler (issue 16)

EXECUTOR_CASES = {
    "default: local, no scheduler": ("", None, ("local", None)),
    "dask with a LocalCluster": ('[run]\nexecutor = "dask"\n', None, ("dask", None)),
    "dask at an address": ('[run]\nexecutor = "dask"\nscheduler = "tcp://10.0.0.5:8786"\n', None,
                           ("dask", "tcp://10.0.0.5:8786")),
    "tls and an IPv6 host": ('[run]\nexecutor = "dask"\nscheduler = "tls://[fe80::1]:8786"\n', None,
                             ("dask", "tls://[fe80::1]:8786")),
    "a host name": ('[run]\nexecutor = "dask"\nscheduler = "tcp://dask-scheduler.internal:8786"\n', None,
                    ("dask", "tcp://dask-scheduler.internal:8786")),
    "unknown executor": ('[run]\nexecutor = "spark"\n', "run.executor: must be 'local'", None),
    "executor of the wrong type": ("[run]\nexecutor = 2\n", "run.executor: expected a string", None),
    "no scheme": ('[run]\nscheduler = "10.0.0.5:8786"\n',
                  "run.scheduler: '10.0.0.5:8786' is not a scheduler address", None),
    "no port": ('[run]\nscheduler = "tcp://10.0.0.5"\n',
                "run.scheduler: 'tcp://10.0.0.5' is not a scheduler address", None),
    "a scheme Dask does not speak": ('[run]\nscheduler = "http://10.0.0.5:8786"\n',
                                     "uses http://, which Dask does not speak", None),
    "port out of range": ('[run]\nscheduler = "tcp://10.0.0.5:99999"\n', "outside 1-65535", None),
    "empty": ('[run]\nscheduler = ""\n', "run.scheduler: '' is not a scheduler address", None),
}


@pytest.mark.parametrize("case", EXECUTOR_CASES, ids=list(EXECUTOR_CASES))
def test_executor_and_scheduler_keys(tmp_path: Path, case: str) -> None:
    text, problem, expected = EXECUTOR_CASES[case]
    path = write(tmp_path, text)
    if problem is None:
        cfg = load_config(path, env={})
        assert (cfg.run.executor, cfg.run.scheduler) == expected
        return
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert any(p.startswith(problem) or problem in p for p in caught.value.problems), caught.value.problems
    if "scheduler" in problem:
        assert "fix: the address `dask scheduler` prints" in str(caught.value)


def test_executor_env_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, '[run]\nexecutor = "local"\n')
    cfg = load_config(path, env={"ETL_EXECUTOR": "dask", "ETL_SCHEDULER": "tcp://127.0.0.1:8786"})
    assert (cfg.run.executor, cfg.run.scheduler) == ("dask", "tcp://127.0.0.1:8786")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={"ETL_EXECUTOR": "ray", "ETL_SCHEDULER": "nowhere"})
    assert sorted(p.split(":")[0] for p in caught.value.problems) == [
        "run.executor (from ETL_EXECUTOR)",
        "run.scheduler (from ETL_SCHEDULER)",
    ]


def test_the_executor_is_not_part_of_the_fingerprint(tmp_path: Path) -> None:
    """A run started on local processes may be resumed on Dask (and back): same fingerprint."""
    local = load_config(write(tmp_path, ""), env={})
    dask = local.with_overrides(run={"executor": "dask", "scheduler": "tcp://10.0.0.5:8786"})
    assert dask.fingerprint() == local.fingerprint()
    # ...while something that changes the output does change it (the check can fail).
    assert local.with_overrides(extract={"chunk_size": 7}).fingerprint() != local.fingerprint()


# The CLI flags: what _with_run_overrides makes of them is the configuration `etl run` hands on.
FLAG_CASES = {
    "nothing: the file's": (None, None, ("local", None)),
    "--executor dask": ("dask", None, ("dask", None)),
    "--scheduler implies dask": (None, "tcp://127.0.0.1:8786", ("dask", "tcp://127.0.0.1:8786")),
    "--executor local wins over the file's dask": ("local", None, ("local", None)),
}


@pytest.mark.parametrize("case", FLAG_CASES, ids=list(FLAG_CASES))
def test_executor_flags_override_the_config(tmp_path: Path, case: str) -> None:
    from ddex_etl.cli import _with_run_overrides

    executor, scheduler, expected = FLAG_CASES[case]
    text = '[run]\nexecutor = "dask"\n' if case.startswith("--executor local") else ""
    cfg = _with_run_overrides(load_config(write(tmp_path, text), env={}), None, None, executor, scheduler)
    assert (cfg.run.executor, cfg.run.scheduler) == expected


@pytest.mark.parametrize("command", [["run"], ["resume"], ["retry-failed"]], ids=lambda c: c[0])
@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--scheduler", "10.0.0.5"], "--scheduler: '10.0.0.5' is not a scheduler address"),
        (["--executor", "local", "--scheduler", "tcp://10.0.0.5:8786"], "--scheduler: only the Dask executor"),
        (["--executor", "spark"], "Invalid value for '--executor'"),
    ],
    ids=["malformed address", "local with a scheduler", "unknown executor"],
)
def test_executor_flags_are_checked_before_any_run(
    tmp_path: Path, command: list[str], flags: list[str], says: str
) -> None:
    """Every run command takes the flags; a wrong one is a usage error (exit 2) before anything connects."""
    path = write(tmp_path, '[database]\nurl = "postgresql://nobody@127.0.0.1:1/none"\n')
    result = etl(["--config", str(path), *command, *flags])
    assert result.exit_code == ExitCode.USAGE, result.output
    assert says in result.output


def test_worker_database_url_from_the_environment_is_checked_and_masked(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    cfg = load_config(path, env={"ETL_WORKER_DATABASE_URL": "postgresql://etl:Pw-w0rker@pgbouncer:6432/catalog"})
    assert cfg.database.worker_url == "postgresql://etl:Pw-w0rker@pgbouncer:6432/catalog"
    assert "Pw-w0rker" not in mask_secrets("connecting to postgresql://etl:Pw-w0rker@pgbouncer:6432/catalog")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={"ETL_WORKER_DATABASE_URL": "mysql://etl@db/catalog"})
    assert caught.value.problems[0].startswith("database.worker_url (from ETL_WORKER_DATABASE_URL): driver 'mysql'")


# ----------------------------------------------------------------- party ids, demo sender, message settings


def test_dpid_check_characters_are_checked_for_sender_recipient_and_stores(tmp_path: Path) -> None:
    path = write(tmp_path, (
        '[transform]\nsender_dpid = "PADPIDA2014040101R"\nrecipient_dpid = "PADPIDA2014040101Z"\n'
        '[[recipients]]\nname = "store-a"\ndpid = "PADPIDA2015050701U"\n'
    ))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    problems = caught.value.problems
    assert len(problems) == 2, problems
    assert problems[0].startswith("transform.sender_dpid:") and "check character of PADPIDA2014040101 is Z" in problems[0]
    assert "PADPIDA2014040101Z" in problems[0]  # the fix names the right id
    assert problems[1].startswith("recipients[0].dpid:") and "PADPIDA20150507019" in problems[1]


def test_the_shipped_defaults_are_valid_demo_parties(tmp_path: Path) -> None:
    from ddex_etl.dpid import DEMO_SENDER_DPID, dpid_problem

    cfg = load_config(write(tmp_path, "[run]\nworkers = 1\n"))
    assert cfg.transform.sender_dpid == DEMO_SENDER_DPID and dpid_problem(DEMO_SENDER_DPID) is None
    assert dpid_problem(cfg.transform.recipient_dpid) is None
    shipped = load_config(Path(__file__).resolve().parents[1] / "etl.toml", env={})
    assert dpid_problem(shipped.transform.sender_dpid) is None and dpid_problem(shipped.transform.recipient_dpid) is None


def test_a_live_message_to_a_store_from_the_demo_sender_is_refused(tmp_path: Path) -> None:
    store = f'[load]\nlayout = "ddex-batch"\n[[recipients]]\nname = "store-a"\ndpid = "PADPIDA2014120301L"\ntarget = "{tmp_path}"\nrequire_media = false\n'
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, store))
    [problem] = caught.value.problems
    assert problem.startswith("recipients[0]:") and "demo sender" in problem and "transform.sender_dpid" in problem
    # A test message to the store, or a message from a real sender, is fine.
    load_config(write(tmp_path, store + 'message_control = "Test"\n'))
    load_config(write(tmp_path, '[transform]\nsender_dpid = "PADPIDA2014040101Z"\nsender_name = "Aurora Records"\n' + store))


def test_business_profiles_and_default_c_line_reach_the_builder(tmp_path: Path) -> None:
    from ddex_etl.ern import context_from_config

    cfg = load_config(write(tmp_path, (
        '[transform]\ndefault_c_line = "2025 Aurora Records"\n'
        '[[recipients]]\nname = "a"\ndpid = "PADPIDA2014120301L"\nbusiness_profiles = true\n'
        '[[recipients]]\nname = "b"\ndpid = "PADPIDA20150507019"\n'
    )))
    a, b = (context_from_config(cfg.for_recipient(r).transform) for r in cfg.recipients)
    assert a.business_profiles is True and b.business_profiles is False  # per recipient, off by default
    assert a.default_c_line == b.default_c_line == "2025 Aurora Records"
    assert cfg.for_recipient(cfg.recipients[0]).fingerprint() != cfg.for_recipient(cfg.recipients[1]).fingerprint()
