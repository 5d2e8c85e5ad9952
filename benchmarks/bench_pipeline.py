"""End-to-end throughput and peak memory of `etl run`: PostgreSQL -> ERN files.

    python benchmarks/bench_pipeline.py [--releases 10000] [--workers 0] [--layout flat] [--target files]
    python benchmarks/bench_pipeline.py --executor dask [--rounds 3]   # Dask beside the local executor

Creates a throwaway database (on ETL_BENCH_DATABASE_URL's server, else the
local server on 127.0.0.1:5432, else the embedded PostgreSQL), seeds the
reference catalog (12-track releases on average), measures the raw COPY of the
same join (extract.copy_baseline) and then runs the pipeline in a fresh
process, so the figures are the run's own (seeding memory is not counted).
Prints releases/s end to end, the COPY baseline in the same session, and peak
memory (main process + every worker's peak RSS), then where the CPU went: each
worker stage's CPU time, the main process, the whole machine, and what creating
one file costs in the output folder, probed before the run.

On ext4 mounted without a journal (the development VM's disk), creating a file right
after many were deleted is slow: the kernel skips the inodes freed recently,
reading each one (its recently_deleted check; seen with perf), for seconds
to minutes. There a file cost 135-700 us of CPU after an earlier benchmark's
output had been removed, against 30-40 us on a settled disk and 5-20 us on
tmpfs. So the probe keeps its files until the end, the output goes into a
folder of its own, and the probe line says when the figure is in that state;
with --keep nothing is deleted at all. Drops the database afterwards.

With ``--executor dask`` the same catalog is built ``--rounds`` times by each
executor, alternating local and Dask (a LocalCluster of as many processes x 1
thread as local workers, or ``--scheduler``'s cluster), each run into a fresh
folder, and the Dask rate is printed as a share of the local one beside the
per-chunk overhead: (Dask run time - local run time) / chunks, which is what a
real cluster pays per chunk on top of the work itself.
"""
from __future__ import annotations

import argparse
import json
import os
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
sys.path.insert(0, str(REPO))

from ddex_etl.config import Config, DatabaseConfig, mask_url  # noqa: E402
from ddex_etl.db import embedded_url, make_engine, to_sqlalchemy_url  # noqa: E402

RUNNER = """
import json, sys, time
from pathlib import Path
from ddex_etl import run as run_api
from ddex_etl.config import Config, DatabaseConfig
args = json.loads(sys.argv[1])
cfg = Config(database=DatabaseConfig(url=args["url"])).with_overrides(
    extract={"chunk_size": args["chunk_size"], "mode": args["mode"]},
    load={"target": args["target"], "layout": args["layout"], "directory": Path(args["out"])},
    run={"workers": args["workers"], "job": "bench", "executor": args.get("executor", "local"),
         "scheduler": args.get("scheduler")},
)
t0 = time.perf_counter()
report = run_api.run(cfg, new=True, progress=False)
wall = time.perf_counter() - t0
print(json.dumps({**report.as_dict(), "wall_seconds": wall, "main_cpu_seconds": time.process_time()}, default=str))
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


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat (0, 0 elsewhere)."""
    try:
        fields = [float(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return (sum(fields) - idle) / tick, sum(fields) / tick


def file_creation_cost(probe: Path, n: int = 300) -> float:
    """CPU microseconds to create one 30 kB file in the empty folder ``probe`` (kept: see below)."""
    data = b"x" * 30_000
    c0 = time.process_time()
    for i in range(n):
        fd = os.open(probe / f"f{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, data)
        os.close(fd)
    return 1e6 * (time.process_time() - c0) / n


def run_pipeline(spec: dict[str, object]) -> tuple[dict[str, object], float]:
    """One `etl run` in a fresh process: its report, and the machine's busy CPU seconds meanwhile."""
    busy0, _ = machine_cpu()
    proc = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(spec)], capture_output=True, text=True, cwd=REPO)
    if proc.returncode not in (0, 3):
        sys.exit(f"pipeline failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    busy1, _ = machine_cpu()
    return json.loads(proc.stdout.strip().splitlines()[-1]), busy1 - busy0


def compare_executors(
    args: argparse.Namespace, spec: dict[str, object], work: Path, copy_rate: float, create_us: float
) -> None:
    """Local and Dask in turn on the same catalog; the Dask rate as a share of the local one, and its cost per chunk."""
    rows: list[tuple[str, dict[str, object], float]] = []
    for i in range(args.rounds):
        for executor in ("local", "dask"):
            out = work / f"{executor}-{i}"
            out.mkdir()
            report, busy = run_pipeline({**spec, "out": str(out), "executor": executor, "scheduler": args.scheduler})
            rows.append((executor, report, busy))
            print(f"round {i + 1} {executor:5s}  {report['built']:,} built, run {report['seconds']:.2f} s = "
                  f"{report['releases_per_second']:,.0f} releases/s; wall {report['wall_seconds']:.2f} s "
                  f"(start-up included); machine CPU {busy:.1f} s", flush=True)
    chunks = -(-int(report["built"]) // args.chunk_size)  # type: ignore[call-overload]

    def median(executor: str, key: str) -> float:
        return statistics.median(float(r[key]) for e, r, _ in rows if e == executor)  # type: ignore[arg-type]

    local_rate, dask_rate = median("local", "releases_per_second"), median("dask", "releases_per_second")
    local_s, dask_s = median("local", "seconds"), median("dask", "seconds")
    local_wall, dask_wall = median("local", "wall_seconds"), median("dask", "wall_seconds")
    cpu = {e: statistics.median(b for x, _, b in rows if x == e) for e in ("local", "dask")}
    print(f"COPY baseline     {copy_rate:,.0f} releases/s (same session; the database alone)")
    print(f"local executor    {local_rate:,.0f} releases/s (median of {args.rounds}; run {local_s:.2f} s, "
          f"wall {local_wall:.2f} s)")
    print(f"dask executor     {dask_rate:,.0f} releases/s (median of {args.rounds}; run {dask_s:.2f} s, "
          f"wall {dask_wall:.2f} s) = {100 * dask_rate / local_rate:.0f}% of local")
    print(f"per chunk         {1000 * (dask_s - local_s) / chunks:+.1f} ms of run time over {chunks} chunks of "
          f"{args.chunk_size} (Dask's scheduling, task round trips and its processes' CPU on these cores)")
    print(f"start-up          {dask_wall - dask_s - (local_wall - local_s):+.2f} s more for Dask "
          "(a LocalCluster starting; a running cluster costs a connection)")
    print(f"machine CPU       local {cpu['local']:.1f} s, dask {cpu['dask']:.1f} s for the same work (medians) "
          "(workers, coordinator, PostgreSQL, Dask's scheduler and nannies)")
    print(f"output folder     {create_us:,.0f} us of CPU per new file (probe)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--releases", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=0, help="0: one per core (the default)")
    ap.add_argument("--chunk-size", type=int, default=500)
    ap.add_argument("--mode", default="keyset", choices=["keyset", "offset"])
    ap.add_argument("--target", default="files", choices=["files", "table"])
    ap.add_argument("--layout", default="flat", choices=["flat", "ddex-batch"])
    ap.add_argument("--out", type=Path, default=None,
                    help="parent folder for the output (default: the system temp dir; /dev/shm takes the disk out)")
    ap.add_argument("--keep", action="store_true", help="keep the database and output folder")
    ap.add_argument("--executor", default="local", choices=["local", "dask"],
                    help="dask: run Dask and the local executor in turn and compare them")
    ap.add_argument("--scheduler", default=None, help="with --executor dask: a running cluster (default: a LocalCluster)")
    ap.add_argument("--rounds", type=int, default=2, help="with --executor dask: runs per executor, alternating")
    args = ap.parse_args()

    from ddex_etl import extract
    from ddex_etl.demo.seed import seed_catalog

    admin = server_url()
    name = "etl_bench_" + uuid.uuid4().hex[:10]
    with psycopg.connect(_libpq(admin), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(admin).set(database=name).render_as_string(hide_password=False)
    work = Path(tempfile.mkdtemp(prefix="etl-bench-", dir=args.out))
    out, probe = work / "out", work / "probe"
    out.mkdir()
    probe.mkdir()
    try:
        engine = make_engine(url, pool_size=2)
        t0 = time.perf_counter()
        seed_catalog(engine, args.releases, seed=1)
        seeded = time.perf_counter() - t0
        with psycopg.connect(_libpq(url), autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")  # a freshly seeded catalog, as a nightly run would see it
        cfg = Config(database=DatabaseConfig(url=url)).with_overrides(extract={"chunk_size": args.chunk_size})
        base_releases, base_rows, base_seconds = extract.copy_baseline(engine, cfg.extract)
        engine.dispose()

        spec = {
            "url": url, "chunk_size": args.chunk_size, "mode": args.mode, "target": args.target,
            "layout": args.layout, "out": str(out), "workers": args.workers,
        }
        # The probe's files stay until the end: deleting them now would slow the
        # run's own file creation (see the module text).
        create_us = file_creation_cost(probe)
        if args.executor == "dask":
            compare_executors(args, spec, work, base_releases / base_seconds, create_us)
            return
        busy0, total0 = machine_cpu()
        proc = subprocess.run(
            [sys.executable, "-c", RUNNER, json.dumps(spec)], capture_output=True, text=True, cwd=REPO
        )
        if proc.returncode not in (0, 3):
            sys.exit(f"pipeline failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        busy1, total1 = machine_cpu()
        report = json.loads(proc.stdout.strip().splitlines()[-1])
        n_files = sum(1 for _ in out.rglob("*.xml"))
        size_mb = sum(p.stat().st_size for p in out.rglob("*.xml")) / 1e6

        e2e = report["built"] / report["wall_seconds"]
        print(f"server            {mask_url(admin)} (database {name})")
        print(f"catalog           {args.releases:,} releases seeded in {seeded:.1f} s")
        print(f"workers           {args.workers or os.cpu_count()} (cpu_count {os.cpu_count()}), chunk {args.chunk_size}, "
              f"{args.mode}, target {args.target}/{args.layout}")
        print(f"COPY baseline     {base_releases:,} releases / {base_rows:,} rows in {base_seconds:.2f} s "
              f"= {base_releases / base_seconds:,.0f} releases/s")
        print(f"pipeline          {report['built']:,} built, {report['rejected']:,} rejected in "
              f"{report['wall_seconds']:.2f} s wall (run {report['seconds']:.2f} s)")
        print(f"end to end        {e2e:,.0f} releases/s (wall, incl. worker start and final sync)")
        print(f"run throughput    {report['releases_per_second']:,.0f} releases/s (run's own timer)")
        workers = " + ".join(f"{w:.0f}" for w in report["worker_peak_mb"])
        print(f"peak memory       {report['peak_memory_mb']:,.0f} MB (main {report['main_peak_mb']:.0f} + workers "
              f"{workers}; peak RSS each, shared pages counted in each)")
        st = report["stage_seconds"]
        busy = st.get("worker", 0.0) / (report["attempt_seconds"] * len(report["worker_peak_mb"]) or 1)
        print(f"worker time       fetch {st.get('fetch', 0):.1f} s, build+temp writes {st.get('build', 0):.1f} s, "
              f"sync+rename {st.get('write', 0):.1f} s (summed over workers; workers busy {100 * busy:.0f}%)")
        print(f"worker CPU        fetch {st.get('fetch_cpu', 0):.1f} s, build+temp writes {st.get('build_cpu', 0):.1f} s, "
              f"sync+rename {st.get('write_cpu', 0):.1f} s "
              f"= {1000 * sum(st.get(k, 0) for k in ('fetch_cpu', 'build_cpu', 'write_cpu')) / max(report['built'], 1):.2f} "
              "CPU ms per release (the database server's CPU comes on top)")
        print(f"main process CPU  {report.get('main_cpu_seconds', 0):.1f} s (keys, commits, progress; includes start-up)")
        print(f"output folder     creating one 30 kB file there costs {create_us:,.0f} us of CPU (probe before the run; "
              "the filesystem's share of every document)")
        if create_us > 100:
            print("                  that is slow: on ext4 without a journal, files deleted in the last minute or so "
                  "(an earlier benchmark's output, say) make every new file skip past their inodes; "
                  "wait a minute and run again")
        if total1 > total0:
            print(f"machine CPU       {100 * (busy1 - busy0) / (total1 - total0):.0f}% busy during the run "
                  f"({busy1 - busy0:.1f} CPU s over {os.cpu_count()} cores: workers, main, PostgreSQL and anything else)")
        print(f"output            {n_files:,} files, {size_mb:,.1f} MB in {out}")
    finally:
        if not args.keep:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
            with psycopg.connect(_libpq(admin), autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
