"""StreamingBatchProcessor fed pandas chunks: rate and peak memory, streamed vs one whole DataFrame.

    python benchmarks/bench_frames.py [RELEASES] [--chunksize ROWS] [--url postgresql://...]

Seeds RELEASES (default 5000) demo releases into a throwaway database (the
server from ``--url``, else ETL_TEST_DATABASE_URL, else 127.0.0.1:5432 when it
answers, else the embedded PostgreSQL), then, each in a fresh process so the
peak resident memory is its own:

* streamed: ``pd.read_sql(sql/release_rows.sql, conn, chunksize=ROWS)`` on a
  server-side cursor, straight into ``process_stream``;
* whole: ``pd.read_sql`` of every row at once, then ``from_dataframe_batch``.

Prints releases/s and the process's peak RSS for each. The database is
dropped at the end.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import uuid

import psycopg
from sqlalchemy.engine import make_url

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from bench_extract import libpq, server_url  # noqa: E402

CHILD = r"""
import json, sys, time
import pandas as pd
import sqlalchemy as sa
from ddex_etl import DDEXBuilder, StreamingBatchProcessor
from ddex_etl.progress import own_peak_rss_mb
from ddex_etl.demo.seed import SQL_DIR

url, how, chunksize = sys.argv[1], sys.argv[2], int(sys.argv[3])
query = sa.text((SQL_DIR / "release_rows.sql").read_text())
engine = sa.create_engine(url)
with DDEXBuilder(workers=2) as builder, engine.connect().execution_options(stream_results=True) as conn:
    ids = list(conn.execute(sa.text("SELECT release_id FROM releases ORDER BY 1")).scalars())
    built = 0
    started = time.perf_counter()
    if how == "streamed":
        def count(item):
            global built
            built += 1
        frames = pd.read_sql(query, conn, params={"release_ids": ids}, chunksize=chunksize)
        StreamingBatchProcessor(batch_size=50, max_concurrency=4, builder=builder).process_stream(frames, count)
    else:
        frame = pd.read_sql(query, conn, params={"release_ids": ids})
        built = len(builder.from_dataframe_batch(frame, batch_size=50).success)
    seconds = time.perf_counter() - started
print(json.dumps({"built": built, "seconds": seconds, "peak_mb": own_peak_rss_mb()}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("releases", nargs="?", type=int, default=5000)
    parser.add_argument("--chunksize", type=int, default=2000, help="rows per DataFrame chunk")
    parser.add_argument("--url", default=None, help="server URL (an admin database on it)")
    args = parser.parse_args()

    from ddex_etl.db import make_engine
    from ddex_etl.demo.seed import seed_catalog

    admin = server_url(args.url)
    name = "ddex_bench_" + uuid.uuid4().hex[:10]
    with psycopg.connect(libpq(admin), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(admin).set(database=name).render_as_string(hide_password=False)
    try:
        engine = make_engine(url, pool_size=1)
        report = seed_catalog(engine, args.releases, seed=1)
        engine.dispose()
        print(f"seeded {report.releases:,} releases, {report.tracks:,} tracks (rows)")
        for how in ("streamed", "whole"):
            out = subprocess.run([sys.executable, "-c", CHILD, url, how, str(args.chunksize)],
                                 capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            label = f"streamed, {args.chunksize:,} rows a chunk" if how == "streamed" else "one whole DataFrame"
            print(f"{label:<32} {r['built']:>7,} built  {r['built'] / r['seconds']:>7,.0f} releases/s  "
                  f"peak {r['peak_mb']:>6,.0f} MB (main process)")
    finally:
        with psycopg.connect(libpq(admin), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
