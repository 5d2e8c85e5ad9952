"""Print the Dask executor's own cost: start-up, per-chunk round trip, and chunks in flight vs idle workers.

    python benchmarks/bench_dask_executor.py                          # LocalCluster, 2 workers x 1 thread
    python benchmarks/bench_dask_executor.py --workers 4 --chunk-ms 150
    python benchmarks/bench_dask_executor.py --scheduler tcp://10.0.0.5:8786

A toy chunk stands in for ``run_chunk``: it sleeps ``--chunk-ms`` and returns
a small result, so the figures are the executor's and Dask's overhead, not
the work (no database). Lines printed:

* start: the LocalCluster (or connection) until the first chunk can go;
* round trip: one chunk at a time, submit -> result back (median, p90);
* overhead: empty chunks with 2 per worker thread in flight: chunks/s and
  the cluster's cost per chunk;
* in flight: ``--chunk-ms`` chunks with 1 and 2 per thread in flight: the
  share of the ideal rate reached (ideal = threads / chunk time);
* spec size: the round trip again with a 64 KB spec (the spec travels
  pickled inside every task; the real one is ~1 KB).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ddex_etl.run.executors.dask import DaskExecutor  # noqa: E402


@dataclass(frozen=True)
class Spec:
    seconds: float
    pad: bytes = b""


@dataclass(frozen=True)
class Task:
    number: int


@dataclass(frozen=True)
class Result:
    number: int
    pid: int


def chunk(spec: Spec, task: Task) -> Result:
    if spec.seconds:
        time.sleep(spec.seconds)
    return Result(task.number, os.getpid())


def round_trips(ex: DaskExecutor, n: int) -> list[float]:
    out = []
    for i in range(n):
        started = time.perf_counter()
        ex.submit(Task(i))
        got: list[object] = []
        while not got:
            got = ex.finished(5)
        out.append(time.perf_counter() - started)
    return out


def windowed(ex: DaskExecutor, n: int, in_flight: int) -> float:
    """Seconds to run n chunks keeping ``in_flight`` of them submitted, as the run loop does."""
    started = time.perf_counter()
    sent = done = 0
    while done < n:
        while sent < n and sent - done < in_flight:
            ex.submit(Task(sent))
            sent += 1
        done += len(ex.finished(1))
    return time.perf_counter() - started


def executor(args: argparse.Namespace, spec: Spec) -> DaskExecutor:
    return DaskExecutor(spec, scheduler=args.scheduler, workers=args.workers, chunk_fn=chunk,
                        failure=lambda **f: f)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scheduler", help="a running cluster's address (default: a LocalCluster)")
    ap.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes (1 thread each)")
    ap.add_argument("--chunk-ms", type=float, default=150.0, help="the toy chunk's duration for the in-flight line")
    ap.add_argument("--chunks", type=int, default=40, help="chunks per worker thread in the in-flight line")
    args = ap.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores")

    started = time.perf_counter()
    ex = executor(args, Spec(0.0))
    print(f"start: {time.perf_counter() - started:.2f} s ({ex.worker_count()} workers, {ex.slots} slots)")
    threads = ex.slots // 2
    try:
        round_trips(ex, 10)  # warm up
        rt = sorted(round_trips(ex, 200))
        print(f"round trip, one chunk at a time: median {ms(statistics.median(rt))}, p90 {ms(rt[int(len(rt) * 0.9)])}")
        n = 2000
        seconds = windowed(ex, n, ex.slots)
        print(f"overhead, empty chunks, {ex.slots} in flight: {n / seconds:,.0f} chunks/s, "
              f"{ms(seconds * threads / n)} of worker time per chunk")
    finally:
        ex.shutdown(graceful=True)

    d = args.chunk_ms / 1000
    ex = executor(args, Spec(d))
    try:
        n = args.chunks * threads
        ideal = n * d / threads
        for per_thread in (1, 2):
            seconds = windowed(ex, n, per_thread * threads)
            print(f"in flight, {args.chunk_ms:g} ms chunks, {per_thread} per thread: {n / seconds:.1f} chunks/s, "
                  f"{ideal / seconds:.1%} of ideal ({n / ideal:.1f}/s)")
    finally:
        ex.shutdown(graceful=True)

    ex = executor(args, Spec(0.0, pad=b"x" * 65536))
    try:
        round_trips(ex, 10)
        rt = sorted(round_trips(ex, 200))
        print(f"round trip with a 64 KB spec: median {ms(statistics.median(rt))}, p90 {ms(rt[int(len(rt) * 0.9)])}")
    finally:
        ex.shutdown(graceful=True)


if __name__ == "__main__":
    main()
