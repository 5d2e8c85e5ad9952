"""The DataFrame path of the batch API beside `etl run`, on the same seeded catalog, in the same run.

    python benchmarks/bench_frames.py [RELEASES] [--rounds 3] [--large 100000] [--chunksize ROWS] [--workers 2] [--url ...]

Seeds RELEASES (default 10000) demo releases into a throwaway database (the
server from ``--url``, else ETL_TEST_DATABASE_URL, else 127.0.0.1:5432 when it
answers, else the embedded PostgreSQL), then, each in a fresh process so the
peak resident memory is its own, with the same number of worker processes:

* ``etl run``: the catalog into ERN files (flat layout), the yardstick;
* streamed: ``pd.read_sql(sql/release_rows.sql, conn, chunksize=ROWS)`` on a
  server-side cursor, straight into ``StreamingBatchProcessor.process_stream``;
* whole: ``pd.read_sql`` of every row at once, then ``from_dataframe_batch``
  (the rate is printed with the read and without it: the read is pandas'
  work in the calling process, before any building starts).

Prints releases/s for each, the two DataFrame rates as a share of ``etl
run``'s, the CPU time each spent per release (main process and its worker
processes, their start-up included: on a machine shared with other work the
rates swing with the load, the CPU per release much less), the main process's
share of it (work no worker can take over, so it caps the rate), and the main
process's peak RSS. With ``--large N`` a second catalog
of N releases is seeded and streamed too, and both streamed peaks are printed:
streaming's memory must not grow with the catalog. The databases are dropped
at the end.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(REPO))
from bench_extract import libpq, server_url  # noqa: E402

CPU = r"""
import resource, time


def process_cpu():
    # CPU seconds of this process and of its finished children (the worker processes, start-up included)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + kids.ru_utime + kids.ru_stime
"""

CHILD = CPU + r"""
import itertools, json, sys, time
import pandas as pd
import sqlalchemy as sa
from ddex_etl import DDEXBuilder, StreamingBatchProcessor
from ddex_etl.progress import own_peak_rss_mb
from ddex_etl.demo.seed import SQL_DIR

url, how, chunksize, workers = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

query = sa.text((SQL_DIR / "release_rows.sql").read_text())
engine = sa.create_engine(url)
with DDEXBuilder(workers=workers) as builder, engine.connect().execution_options(stream_results=True) as conn:
    ids = list(conn.execute(sa.text("SELECT release_id FROM releases ORDER BY 1")).scalars())
    builder._get_pool().start()  # workers up before the clock starts, as etl run's are
    built = 0
    started = time.perf_counter()
    if how == "streamed":
        def count(item):
            global built
            built += 1
        # The query a slice of ids at a time (a server-side cursor over 100,000 ids in one
        # ANY() spills the server's sort to disk), each slice streamed in chunks.
        frames = itertools.chain.from_iterable(
            pd.read_sql(query, conn, params={"release_ids": ids[i:i + 5000]}, chunksize=chunksize)
            for i in range(0, len(ids), 5000))
        StreamingBatchProcessor(batch_size=50, max_concurrency=2 * workers, builder=builder).process_stream(frames, count)
    else:
        frame = pd.read_sql(query, conn, params={"release_ids": ids})
        read = time.perf_counter() - started
        built = len(builder.from_dataframe_batch(frame, batch_size=50).success)
    seconds = time.perf_counter() - started
engine.dispose()
cpu = process_cpu()
out = {"built": built, "seconds": seconds, "peak_mb": own_peak_rss_mb(), "cpu": cpu, "main_cpu": time.process_time()}
if how == "whole":
    out["read_seconds"] = read
print(json.dumps(out))
"""

RUN = CPU + r"""
import json, sys
from pathlib import Path
from ddex_etl import run as run_api
from ddex_etl.config import Config, DatabaseConfig
from ddex_etl.progress import own_peak_rss_mb
url, out, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
cfg = Config(database=DatabaseConfig(url=url)).with_overrides(
    load={"target": "files", "layout": "flat", "directory": Path(out)}, run={"workers": workers, "job": "bench"},
)
report = run_api.run(cfg, new=True, progress=False)
cpu = process_cpu()
print(json.dumps({"built": report.built, "seconds": report.seconds, "peak_mb": report.main_peak_mb, "cpu": cpu,
                  "main_cpu": time.process_time()}))
"""


def child(code: str, *args: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO, check=False)
    if out.returncode not in (0, 3):
        sys.exit(f"failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def seeded(admin: str, releases: int) -> tuple[str, str]:
    from ddex_etl.db import make_engine
    from ddex_etl.demo.seed import seed_catalog

    name = "ddex_bench_" + uuid.uuid4().hex[:10]
    with psycopg.connect(libpq(admin), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(admin).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url, pool_size=1)
    t0 = time.perf_counter()
    report = seed_catalog(engine, releases, seed=1)
    engine.dispose()
    print(f"seeded {report.releases:,} releases, {report.tracks:,} tracks (rows) in {time.perf_counter() - t0:.0f} s")
    return name, url


def line(label: str, r: dict[str, float]) -> float:
    rate = r["built"] / r["seconds"]
    print(f"{label:<36} {r['built']:>7,.0f} built  {rate:>7,.0f} releases/s  CPU ms a release {1000 * r['cpu'] / r['built']:>5.2f} "
          f"(main process {1000 * r['main_cpu'] / r['built']:>5.2f})  peak {r['peak_mb']:>6,.0f} MB (main process)")
    return rate


def median(results: list[dict[str, float]]) -> dict[str, float]:
    """The round with the median rate (its own figures, so they stay consistent with each other)."""
    ranked = sorted(results, key=lambda r: r["built"] / r["seconds"])
    return ranked[len(ranked) // 2]


def median_cpu(results: list[dict[str, float]]) -> float:
    return statistics.median(r["cpu"] / r["built"] for r in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("releases", nargs="?", type=int, default=10000)
    parser.add_argument("--large", type=int, default=0, help="also stream a catalog this large (memory)")
    parser.add_argument("--chunksize", type=int, default=2000, help="rows per DataFrame chunk")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1, help="alternate the three this many times; medians")
    parser.add_argument("--url", default=None, help="server URL (an admin database on it)")
    args = parser.parse_args()

    admin = server_url(args.url)
    names: list[str] = []
    w = str(args.workers)
    try:
        name, url = seeded(admin, args.releases)
        names.append(name)
        rounds: dict[str, list[dict[str, float]]] = {"run": [], "streamed": [], "whole": []}
        for n in range(args.rounds):  # alternating, so a change in the machine's load hits all three alike
            if args.rounds > 1:
                print(f"round {n + 1} of {args.rounds}")
            with tempfile.TemporaryDirectory(prefix="etl-bench-frames-") as out:
                rounds["run"].append(child(RUN, url, out, w))
            rounds["streamed"].append(child(CHILD, url, "streamed", str(args.chunksize), w))
            rounds["whole"].append(child(CHILD, url, "whole", str(args.chunksize), w))
        if args.rounds > 1:
            print(f"medians of {args.rounds} rounds:")
        run = line(f"etl run ({args.workers} workers, files)", median(rounds["run"]))
        streamed = median(rounds["streamed"])
        rate_s = line(f"streamed, {args.chunksize:,} rows a chunk", streamed)
        whole = median(rounds["whole"])
        rate_w = line("one whole DataFrame (read_sql incl.)", whole)
        rate_b = whole["built"] / (whole["seconds"] - whole["read_seconds"])
        print(f"  of which read_sql {whole['read_seconds']:.1f} s; from_dataframe_batch alone {rate_b:,.0f} releases/s")
        print(f"share of etl run's rate              streamed {rate_s / run:.0%}, whole {rate_w / run:.0%} "
              f"(from_dataframe_batch alone {rate_b / run:.0%})")
        print(f"share of etl run's CPU efficiency    streamed {median_cpu(rounds['run']) / median_cpu(rounds['streamed']):.0%}, "
              f"whole {median_cpu(rounds['run']) / median_cpu(rounds['whole']):.0%} (CPU ms a release, inverted)")
        if args.large:
            name, url = seeded(admin, args.large)
            names.append(name)
            large = child(CHILD, url, "streamed", str(args.chunksize), w)
            line(f"streamed, {args.large:,} releases", large)
            print(f"streamed peak memory (main)        {args.releases:,} releases: {streamed['peak_mb']:,.0f} MB, "
                  f"{args.large:,} releases: {large['peak_mb']:,.0f} MB")
    finally:
        with psycopg.connect(libpq(admin), autocommit=True) as conn:
            for name in names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
