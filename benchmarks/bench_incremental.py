"""Incremental sync vs a full run on a large catalog.

    python benchmarks/bench_incremental.py [--releases 100000] [--changed 0.01] [--deleted 0.001] [--workers 0]

Creates a throwaway database (ETL_BENCH_DATABASE_URL's server, else the local
server on 127.0.0.1:5432, else the embedded PostgreSQL), seeds the reference
catalog, runs a full run to flat files, then changes ``--changed`` of the
releases (a third each: the release title, one track's ISRC, one deal's
territories) and soft-deletes ``--deleted`` of them, and runs incrementally.
Each run is a fresh process (``etl run`` as a scheduler would start it).
Prints the full and incremental wall times, their ratio, and whether the
incremental run touched exactly the changed and deleted releases (from the
state table ``delivered``). Drops the database afterwards unless --keep.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ddex_etl.config import mask_url  # noqa: E402
from ddex_etl.db import embedded_url, make_engine, to_sqlalchemy_url  # noqa: E402

RUNNER = """
import json, sys, time
from pathlib import Path
from ddex_etl import run as run_api
from ddex_etl.config import Config, DatabaseConfig
args = json.loads(sys.argv[1])
cfg = Config(database=DatabaseConfig(url=args["url"])).with_overrides(
    extract={"chunk_size": args["chunk_size"]},
    load={"target": "files", "layout": "flat", "directory": Path(args["out"])},
    run={"workers": args["workers"], "job": "bench", "watermark_lag_seconds": 0.0},
)
t0 = time.perf_counter()
report = run_api.run(cfg, progress=False, mode=args["mode"])
wall = time.perf_counter() - t0
print(json.dumps({**report.as_dict(), "wall_seconds": wall}, default=str))
"""


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def server_url() -> str:
    configured = os.environ.get("ETL_BENCH_DATABASE_URL")
    if configured:
        return to_sqlalchemy_url(configured)
    local = "postgresql+psycopg://root@127.0.0.1:5432/test"
    try:
        with psycopg.connect(_libpq(local), connect_timeout=3):
            return local
    except psycopg.Error:
        return embedded_url(Path(tempfile.gettempdir()) / f"ddex-etl-bench-{os.getuid()}")


def run(spec: dict[str, object]) -> dict[str, object]:
    proc = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(spec)], capture_output=True, text=True, cwd=REPO)
    if proc.returncode not in (0, 3):
        sys.exit(f"{spec['mode']} run failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--releases", type=int, default=100_000)
    ap.add_argument("--changed", type=float, default=0.01, help="share of releases changed")
    ap.add_argument("--deleted", type=float, default=0.001, help="share of releases soft-deleted")
    ap.add_argument("--workers", type=int, default=0, help="0: one per core")
    ap.add_argument("--chunk-size", type=int, default=500)
    ap.add_argument("--keep", action="store_true", help="keep the database and output folder")
    args = ap.parse_args()

    from ddex_etl.demo.seed import seed_catalog

    admin = server_url()
    name = "etl_bench_" + uuid.uuid4().hex[:10]
    with psycopg.connect(_libpq(admin), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(admin).set(database=name).render_as_string(hide_password=False)
    out = Path(tempfile.mkdtemp(prefix="etl-bench-inc-"))
    try:
        engine = make_engine(url, pool_size=2)
        t0 = time.perf_counter()
        seed_catalog(engine, args.releases, seed=1)
        seeded = time.perf_counter() - t0
        engine.dispose()
        with psycopg.connect(_libpq(url), autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
        spec = {"url": url, "chunk_size": args.chunk_size, "workers": args.workers, "out": str(out)}
        full = run({**spec, "mode": "full"})

        rng = random.Random(7)
        with psycopg.connect(_libpq(url), autocommit=True) as conn:
            ids = [r[0] for r in conn.execute("SELECT release_id FROM releases WHERE deleted_at IS NULL")]
            picked = rng.sample(ids, int(len(ids) * args.changed) + int(len(ids) * args.deleted))
            n_changed = int(len(ids) * args.changed)
            changed, deleted = picked[:n_changed], picked[n_changed:]
            titles, isrcs, deals = changed[0::3], changed[1::3], changed[2::3]
            t_change = time.perf_counter()
            conn.execute(
                "UPDATE releases SET title = title || ' (Deluxe)', updated_at = now() WHERE release_id = ANY(%s)",
                (titles,),
            )
            conn.execute(
                """UPDATE tracks t SET isrc = 'QZ' || 'ZZZ' || '26' || lpad((t.track_id %% 100000)::text, 5, '0'),
                       updated_at = now()
                   FROM (SELECT min(track_id) AS track_id FROM tracks WHERE release_id = ANY(%s) GROUP BY release_id) f
                   WHERE t.track_id = f.track_id""",
                (isrcs,),
            )
            conn.execute(
                """UPDATE deals d SET territories = ARRAY['FR', 'BE'], updated_at = now()
                   FROM (SELECT min(deal_id) AS deal_id FROM deals WHERE release_id = ANY(%s) GROUP BY release_id) f
                   WHERE d.deal_id = f.deal_id""",
                (deals,),
            )
            conn.execute(
                "UPDATE releases SET deleted_at = now(), updated_at = now() WHERE release_id = ANY(%s)", (deleted,)
            )
            change_seconds = time.perf_counter() - t_change
        inc = run({**spec, "mode": "incremental"})
        with psycopg.connect(_libpq(url), autocommit=True) as conn:
            touched = {
                r[0]: r[1]
                for r in conn.execute("SELECT release_id, kind FROM ddex_etl.delivered WHERE run_id = %s", (inc["run_id"],))
            }
        # A changed release whose deals had all ended is (correctly) a takedown too.
        exact = set(touched) == set(changed) | set(deleted)
        takedowns_ok = {r for r, k in touched.items() if k == "TakeDown"} >= set(deleted)

        ratio = inc["wall_seconds"] / full["wall_seconds"]
        print(f"server            {mask_url(admin)} (database {name})")
        print(f"catalog           {args.releases:,} releases seeded in {seeded:.1f} s; workers "
              f"{args.workers or os.cpu_count()}, chunk {args.chunk_size}, flat files")
        print(f"full run          {full['built']:,} built in {full['wall_seconds']:.2f} s wall "
              f"(run {full['seconds']:.2f} s)")
        print(f"changes           {len(changed):,} changed ({len(titles)} titles, {len(isrcs)} ISRCs, "
              f"{len(deals)} deal territories), {len(deleted):,} deleted, in {change_seconds:.2f} s")
        print(f"incremental run   {inc['built']:,} built, {inc['takedowns']:,} takedowns, {inc['unchanged']:,} "
              f"unchanged in {inc['wall_seconds']:.2f} s wall (run {inc['seconds']:.2f} s)")
        print(f"ratio             incremental / full = {100 * ratio:.1f}% (wall)")
        print(f"touched           {len(touched):,} releases; exactly the changed + deleted: {exact}; "
              f"every deleted one a takedown: {takedowns_ok}")
    finally:
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)
            with psycopg.connect(_libpq(admin), autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
