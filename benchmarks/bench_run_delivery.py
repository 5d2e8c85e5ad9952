"""Print `etl run` delivery throughput: the same catalog to local batches, a loopback SFTP and a loopback S3 server.

    python benchmarks/bench_run_delivery.py [--releases 300] [--workers 0]

Seeds a throwaway database (the local server on 127.0.0.1:5432, else
ETL_BENCH_DATABASE_URL's, else the embedded PostgreSQL) with the demo
catalog and its real media files (``etl seed``'s: a 4 kB WAV per track, a
cover image per release), then runs one job with three recipients the way
``etl run`` does (``recipients.run``), one after another:

* ``files``: a ddex-batch with resources, no target (the plain files rate);
* ``sftp``: the same, then uploaded to an asyncssh SFTP server on 127.0.0.1;
* ``s3``: the same, then uploaded to moto's S3 server on 127.0.0.1.

Each line: the run's wall time, releases/s, and MB/s of the batch (messages
and resources); for the remote ones also the upload alone. Servers run in
their own processes on the same machine, so remote figures measure the
client's and the protocol's overhead, not a network.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_delivery import _free_port, _s3_server, _sftp_server  # noqa: E402
from bench_pipeline import _libpq, server_url  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from ddex_etl.config import load_config  # noqa: E402
from ddex_etl.db import make_engine  # noqa: E402
from ddex_etl.demo.seed import seed_catalog  # noqa: E402
from ddex_etl.run import recipients  # noqa: E402


def _size(folder: Path) -> tuple[int, int]:
    files = [p for p in folder.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)]
    return len(files), sum(p.stat().st_size for p in files)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--releases", type=int, default=300)
    ap.add_argument("--workers", type=int, default=0)
    args = ap.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

    base = server_url()
    name = "etl_bench_" + uuid.uuid4().hex[:8]
    with psycopg.connect(_libpq(base), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    procs: list[Any] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-run-delivery-") as tmp:
            work = Path(tmp)
            engine = make_engine(url, pool_size=1)
            t0 = time.perf_counter()
            seed_catalog(engine, args.releases, seed=3, media_dir=work / "media")
            engine.dispose()
            print(f"seeded {args.releases} releases with media in {time.perf_counter() - t0:.1f} s; "
                  f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")

            sftp_root = work / "sftp"
            (sftp_root / "in").mkdir(parents=True)
            ready: Any = ctx.Queue()
            procs.append(ctx.Process(target=_sftp_server, args=(str(sftp_root), str(work / "key"),
                                                                str(work / "known_hosts"), ready, stop), daemon=True))
            procs.append(ctx.Process(target=_s3_server, args=(_free_port(), ready, stop), daemon=True))
            for p in procs:
                p.start()
            ports = [ready.get(timeout=60), ready.get(timeout=60)]
            hosts = (work / "known_hosts").read_text()
            sftp_port = next(p for p in ports if f"]:{p} " in hosts)
            s3_port = next(p for p in ports if p != sftp_port)
            import boto3

            endpoint = f"http://127.0.0.1:{s3_port}"
            boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench")

            (work / "out").mkdir()
            (work / "etl.toml").write_text(f"""
[database]
url = "{url}"
[transform]
sender_dpid = "PADPIDA2014040101Z"
sender_name = "Bench Records"
[load]
directory = "out"
layout = "ddex-batch"
media_root = "media"
[run]
workers = {args.workers}
[[recipients]]
name = "files"
dpid = "PADPIDA0000000010M"
[[recipients]]
name = "sftp"
dpid = "PADPIDA0000000010M"
target = "sftp://bench@127.0.0.1:{sftp_port}/in"
[recipients.target_options]
key_file = "{work / 'key'}"
known_hosts = "{work / 'known_hosts'}"
allow_agent = false
[[recipients]]
name = "s3"
dpid = "PADPIDA0000000010M"
target = "s3://bench/in"
[recipients.target_options]
endpoint_url = "{endpoint}"
""", encoding="utf-8")
            cfg = load_config(work / "etl.toml", env={})
            for r in cfg.recipients:
                t0 = time.perf_counter()
                report = recipients.run(cfg, recipients=(r.name,), progress=False)
                wall = time.perf_counter() - t0
                outcome = report.outcomes[0]
                assert report.exit_code == 0 and outcome.report is not None, report.summary()
                run = outcome.report
                files, nbytes = _size(Path(run.output or ""))
                mb = nbytes / 2**20
                line = (f"{r.name:<6} run {wall:7.2f} s {run.built / wall:8.0f} releases/s {mb / wall:7.1f} MB/s "
                        f"({files} files, {mb:.1f} MB)")
                if run.delivery:
                    up = run.delivery["seconds"]
                    line += (f"; upload alone {up:6.2f} s {run.built / up:7.0f} releases/s "
                             f"{run.delivery['bytes'] / 2**20 / up:6.1f} MB/s")
                print(line)
    finally:
        stop.set()
        for p in procs:
            p.join(10)
        with psycopg.connect(_libpq(base), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
