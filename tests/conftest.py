"""Shared fixtures: a real PostgreSQL, and a fresh database for each test.

Server choice, in order: ETL_TEST_DATABASE_URL; the server on 127.0.0.1:5432
if it answers (unless ETL_TEST_EMBEDDED=1); otherwise the embedded
PostgreSQL (pgserver) in a temporary folder. Never SQLite, never a mock.
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from ddex_etl.db import embedded_url, to_sqlalchemy_url

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
SCHEMA_DIR = SHARED / "ddex" / "schemas" / "ern"
SAMPLES_DIR = SHARED / "ddex" / "samples"


def _answers(url: str) -> bool:
    try:
        with psycopg.connect(_libpq(url), connect_timeout=3):
            return True
    except psycopg.Error:
        return False


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """URL of the PostgreSQL server the tests use (an admin database on it)."""
    configured = os.environ.get("ETL_TEST_DATABASE_URL")
    if configured:
        return to_sqlalchemy_url(configured)
    local = "postgresql+psycopg://root@127.0.0.1:5432/test"
    if os.environ.get("ETL_TEST_EMBEDDED") != "1" and _answers(local):
        return local
    # A short path: the server's Unix socket lives in this folder (108-byte limit).
    root = Path(os.environ.get("ETL_TEST_EMBEDDED_DIR", f"/tmp/ddex-etl-pg-{os.getuid()}"))
    return embedded_url(root)


@pytest.fixture()
def db_url(server_url: str) -> Iterator[str]:
    """A fresh, empty database for one test; dropped afterwards."""
    name = "etl_t_" + uuid.uuid4().hex[:12]
    admin = _libpq(server_url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def schema_dir() -> Path:
    if not SCHEMA_DIR.is_dir():
        pytest.skip(f"DDEX schemas not found at {SCHEMA_DIR}")
    return SHARED / "ddex" / "schemas"
