"""Extract throughput on one core, next to a raw COPY of the same rows.

    python benchmarks/bench_extract.py [RELEASES] [--chunk-size N] [--url postgresql://...]

Seeds RELEASES (default 20000) demo releases into a throwaway database on
the server (``--url``, else ETL_TEST_DATABASE_URL, else 127.0.0.1:5432 when
it answers, else the embedded PostgreSQL), then prints:

* seeding time;
* keyset extract into Release records in this one process (what each
  pipeline worker does per chunk), with the default table-by-table queries
  and with the row contract's query (sql/release_rows.sql);
* the records grouping alone, on contract rows already in memory (rows/s);
* a raw ``COPY (...) TO STDOUT`` of the same chunks for both: the floor.

The database is dropped at the end.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import uuid

import psycopg
from psycopg.types.string import TextLoader
from sqlalchemy.engine import make_url

from ddex_etl import extract
from ddex_etl.config import ExtractConfig
from ddex_etl.db import embedded_url, make_engine, to_sqlalchemy_url
from ddex_etl.demo.seed import seed_catalog
from ddex_etl.extract import records


def server_url(given: str | None) -> str:
    if given:
        return to_sqlalchemy_url(given)
    if os.environ.get("ETL_TEST_DATABASE_URL"):
        return to_sqlalchemy_url(os.environ["ETL_TEST_DATABASE_URL"])
    local = "postgresql+psycopg://root@127.0.0.1:5432/test"
    try:
        with psycopg.connect(libpq(local), connect_timeout=3):
            return local
    except psycopg.Error:
        return embedded_url(f"/tmp/ddex-etl-bench-{os.getuid()}")


def libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("releases", nargs="?", type=int, default=20000)
    parser.add_argument("--chunk-size", type=int, default=500)
    parser.add_argument("--url", default=None, help="server URL (an admin database on it)")
    args = parser.parse_args()

    admin = server_url(args.url)
    name = "ddex_bench_" + uuid.uuid4().hex[:10]
    with psycopg.connect(libpq(admin), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(admin).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url, pool_size=2)
    try:
        report = seed_catalog(engine, args.releases, seed=1)
        print(f"seed:     {report.releases:>8} releases, {report.tracks} tracks in {report.seconds:6.1f} s"
              f"  ({report.releases_per_second:,.0f} releases/s)")
        default = ExtractConfig(chunk_size=args.chunk_size)
        contract = ExtractConfig(chunk_size=args.chunk_size, rows_query=extract.ROWS_SQL)
        for label, cfg in (("default (table by table)", default), ("row contract (release_rows.sql)", contract)):
            started = time.perf_counter()
            cpu0 = time.process_time()
            n_releases = n_tracks = n_rejects = 0
            for _chunk, releases, rejects in extract.iter_chunks(engine, cfg):
                n_releases += len(releases)
                n_rejects += len(rejects)
                n_tracks += sum(len(r.tracks) for r in releases)
            seconds = time.perf_counter() - started
            cpu = time.process_time() - cpu0
            print(f"extract:  {n_releases:>8} releases, {n_tracks} tracks in {seconds:6.1f} s"
                  f"  ({n_releases / seconds:,.0f} releases/s; {1000 * cpu / max(n_releases, 1):.2f} ms client CPU"
                  f" per release; {label}, one core, keyset, chunk {args.chunk_size}; {n_rejects} rejected)")

        # Grouping alone: the contract rows of the first 2,000 releases, already in memory.
        query = extract.rows_query(contract)
        with psycopg.connect(libpq(url)) as conn:
            conn.execute(extract._SESSION_SETTINGS)
            cur = conn.cursor()
            cur.adapters.register_loader("json", TextLoader)
            cur.execute(query.driver_sql, {"release_ids": list(range(1, min(args.releases, 2000) + 1))})
            rows = cur.fetchall()
            columns = [d.name for d in cur.description or ()]
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            grouped = sum(1 for _ in records.iter_release_results(rows, columns))
            best = min(best, time.perf_counter() - t0)
        print(f"records:  {grouped:>8} releases, {len(rows)} rows in {best:6.2f} s"
              f"  ({len(rows) / best:,.0f} rows/s grouping contract rows alone, best of 3)")

        for label, cfg in (("the default's queries", default), ("the contract query", contract)):
            c_releases, c_rows, c_seconds = extract.copy_baseline(engine, cfg)
            print(f"COPY:     {c_releases:>8} releases, {c_rows} rows in {c_seconds:6.1f} s"
                  f"  ({c_releases / c_seconds:,.0f} releases/s raw COPY of {label})")
    finally:
        engine.dispose()
        with psycopg.connect(libpq(admin), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    sys.exit(main())
