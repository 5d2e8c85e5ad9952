"""Passwords never appear in anything we print or store, whatever characters they hold."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import make_url

from ddex_etl import masking
from ddex_etl.masking import mask_text, mask_url

# Two markers around the special characters: neither may survive masking.
HEAD, TAIL = "Zq9", "S3cret"

AWKWARD = [
    "Zq9 S3cret",  # a space
    "Zq9\tS3cret",  # a tab
    "Zq9#S3cret",  # a URL fragment mark
    "Zq9:S3cret",  # the user/password separator
    "Zq9/S3cret",  # a path separator
    "Zq9@S3cret",  # an unencoded "@"
    "Zq9@@S3cret@",
    "Zq9?x=1&S3cret",  # a query mark
    "Zq9%S3cret",  # a lone percent sign
    "Zq9@h/x@S3cret",  # "@" then "/" then "@"
]


@pytest.mark.parametrize("password", AWKWARD)
def test_mask_url_hides_a_raw_password(password: str) -> None:
    masked = mask_url(f"postgresql://etl_pw:{password}@db.example.com:5432/catalog")
    assert HEAD not in masked and TAIL not in masked, masked
    assert masked == "postgresql://etl_pw:***@db.example.com:5432/catalog"


@pytest.mark.parametrize("password", AWKWARD)
def test_mask_url_hides_a_percent_encoded_password(password: str) -> None:
    masked = mask_url(f"postgresql://etl_pw:{quote(password, safe='')}@db/catalog")
    assert masked == "postgresql://etl_pw:***@db/catalog"


@pytest.mark.parametrize(
    "query",
    ["password=Zq9#S3cret", "password=Zq9%20S3cret", "sslmode=require&password=Zq9 S3cret", "PASSWORD=Zq9S3cret"],
)
def test_mask_url_hides_a_query_string_password(query: str) -> None:
    masked = mask_url(f"postgresql://etl@db/catalog?{query}")
    assert HEAD not in masked and TAIL not in masked, masked
    assert "=***" in masked and masked.startswith("postgresql://etl@db/catalog?")


def test_mask_url_keeps_what_is_not_secret() -> None:
    assert mask_url("postgresql://etl@db:5432/catalog") == "postgresql://etl@db:5432/catalog"
    assert mask_url(None) == "(embedded PostgreSQL)"
    assert mask_url("not a url at all") == "***"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=" \t#:/@?&=%+;!$'()*,[]~-_.abc019", max_size=12))
def test_any_raw_password_is_hidden(middle: str) -> None:
    password = HEAD + middle + TAIL
    masked = mask_url(f"postgresql://etl_pw:{password}@db.example.com/catalog")
    assert HEAD not in masked and TAIL not in masked, (password, masked)


def test_mask_text_hides_a_remembered_password_even_where_no_url_parser_could() -> None:
    masking.remember_url_password("postgresql://etl:Zq9 S3cret with spaces@db/catalog")
    text = "could not connect to postgresql://etl:Zq9 S3cret with spaces@db/catalog: refused"
    masked = mask_text(text)
    assert masked == "could not connect to postgresql://etl:***@db/catalog: refused"
    # the percent-encoded form too (a URL rendered by SQLAlchemy for libpq)
    assert mask_text("dsn postgresql://etl:Zq9%20S3cret%20with%20spaces@db/c") == "dsn postgresql://etl:***@db/c"


# --------------------------------------------------------------------------- end to end

CLI_PASSWORDS = ["Zq9 S3cret", "Zq9\t#:/S3cret", "Zq9%25S3cret"]


def _etl(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ddex_etl", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )


def _state_text(db_url: str) -> str:
    """Every row of every state table, as text."""
    libpq = make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(libpq) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'ddex_etl'")]
        return "\n".join(
            str(row) for t in tables for row in conn.execute(f'SELECT * FROM ddex_etl."{t}"')  # noqa: S608
        )


@pytest.mark.parametrize("password", CLI_PASSWORDS)
def test_no_command_prints_or_stores_the_password(db_url: str, tmp_path: Path, password: str) -> None:
    """The real CLI against the real server (trust authentication accepts any password)."""
    url = make_url(db_url)
    if url.password:
        pytest.skip("the test server needs its own password")
    raw = f"{db_url.split('://', 1)[0]}://{url.username or 'root'}:{password}@{db_url.split('@', 1)[1]}"
    assert make_url(raw).password == password.replace("%25", "%")  # the URL is what we meant
    env = {**os.environ, "ETL_DATABASE_URL": raw, "ETL_OUTPUT_DIR": str(tmp_path / "out")}
    env.pop("ETL_CONFIG", None)
    outputs = []
    for args in (
        ["config", "check"],
        ["-vv", "seed", "--releases", "5"],
        ["-vv", "run", "--no-progress", "--json"],
        ["status", "--json"],
        ["status"],
        ["runs"],
        ["errors"],
    ):
        done = _etl(args, env, tmp_path)
        assert done.returncode in (0, 3), (args, done.stderr)
        if args[-1] == "--json" and args[0] == "-vv":
            assert json.loads(done.stdout)["built"] == 5
        outputs.append(done.stdout + done.stderr)
    # a failing connection (nothing listens on port 1) with the same password
    bad = raw.rsplit("@", 1)[0] + "@127.0.0.1:1/catalog"
    done = _etl(["-vv", "--debug", "db", "current"], {**env, "ETL_DATABASE_URL": bad}, tmp_path)
    assert done.returncode == 1
    outputs.append(done.stdout + done.stderr)
    everything = "\n".join(outputs) + _state_text(db_url)
    for fragment in (HEAD, TAIL):
        assert fragment not in everything
    assert "***" in outputs[0]  # config check shows the URL, masked


def test_a_worker_spec_shows_no_password() -> None:
    """The spec travels in every Dask task; Dask logs a failed task's arguments."""
    import os

    from ddex_etl.config import Config, DatabaseConfig
    from ddex_etl.retry import RetryPolicy
    from ddex_etl.run.chunks import WorkerSpec

    url = "postgresql+psycopg://etl:s3cret-Pw@db.example:5432/catalog"
    cfg = Config(database=DatabaseConfig(url="postgresql+psycopg://etl@db.example:5432/catalog"))
    spec = WorkerSpec(url=url, cfg=cfg, main_pid=os.getpid(), retry=RetryPolicy.of(cfg.run))
    assert "s3cret-Pw" not in repr(spec) and "s3cret-Pw" not in str(spec)
    assert "db.example" in repr(spec)
