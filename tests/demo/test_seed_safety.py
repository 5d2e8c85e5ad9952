"""`etl seed` never writes to a real catalog by accident: through the real `etl` process."""
from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from etl_cli import etl
from sqlalchemy.engine import make_url

from ddex_etl.demo.seed import create_catalog


def scalar(db_url: str, sql: str) -> object:
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(sql)).scalar()
    finally:
        engine.dispose()


def execute(db_url: str, sql: str) -> None:
    engine = sa.create_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(sql))
    finally:
        engine.dispose()


def test_seed_refuses_a_database_with_tables_of_its_own(db_url: str, tmp_path: Path) -> None:
    execute(db_url, "CREATE TABLE customers (id bigint PRIMARY KEY, email text)")
    env = {"ETL_DATABASE_URL": db_url}
    refused = etl(tmp_path, "seed", "--releases", "5", env=env)
    assert refused.returncode == 2, refused.stderr
    name = make_url(db_url).database
    assert f"database '{name}' on 127.0.0.1" in refused.stderr or f"database '{name}'" in refused.stderr
    assert "public.customers" in refused.stderr and "--yes" in refused.stderr
    assert scalar(db_url, "SELECT to_regclass('releases')") is None  # nothing touched

    allowed = etl(tmp_path, "seed", "--releases", "5", "--yes", env=env)
    assert allowed.returncode == 0, allowed.stderr
    assert scalar(db_url, "SELECT count(*) FROM releases") == 5


def test_reset_refuses_catalog_rows_it_did_not_write_and_names_what_it_would_delete(
    db_url: str, tmp_path: Path
) -> None:
    engine = sa.create_engine(db_url)
    try:
        with engine.begin() as conn:
            create_catalog(conn)
            conn.execute(sa.text("INSERT INTO releases (release_id, title, release_type) VALUES (1, 'Real', 'Album')"))
    finally:
        engine.dispose()
    env = {"ETL_DATABASE_URL": db_url}
    refused = etl(tmp_path, "seed", "--releases", "5", "--reset", env=env)
    assert refused.returncode == 2, refused.stderr
    assert "--reset would delete every row of its catalog tables" in refused.stderr and "1 releases" in refused.stderr
    assert scalar(db_url, "SELECT title FROM releases") == "Real"
    appended = etl(tmp_path, "seed", "--releases", "5", env=env)
    assert appended.returncode == 2 and "did not write" in appended.stderr


def test_the_demo_catalog_seeds_again_and_reset_says_what_it_deletes(db_url: str, tmp_path: Path) -> None:
    env = {"ETL_DATABASE_URL": db_url}
    (tmp_path / "etl.toml").write_text("[run]\nworkers = 1\n")
    assert etl(tmp_path, "seed", "--releases", "4", env=env).returncode == 0
    assert etl(tmp_path, "run", "--no-progress", env=env).returncode == 0  # the connector's own schema is no obstacle
    more = etl(tmp_path, "seed", "--releases", "3", env=env)
    assert more.returncode == 0, more.stderr
    reset = etl(tmp_path, "seed", "--releases", "2", "--reset", env=env)
    assert reset.returncode == 0, reset.stderr
    name = make_url(db_url).database
    assert f"deleting every row of the catalog in database '{name}'" in reset.stderr
    assert "7 releases" in reset.stderr
    assert scalar(db_url, "SELECT count(*) FROM releases") == 2
