"""Benchmark the Python batch API: build_batch inline vs in worker processes, and streaming.

    python benchmarks/bench_batch.py                       # 3,000 twelve-track releases
    python benchmarks/bench_batch.py --releases 10000 --tracks 2 --validate

Prints releases/s for ``parallel=False`` and ``parallel=True`` (the pool is
started and warmed first; its start-up time is printed apart), the speed-up,
the streaming processor's rate, and this process's peak memory. ``--validate``
also checks every built document against the XSD (``--schema-dir``, default
``../shared/ddex/schemas``) and prints how many failed.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

from ddex_etl import DDEXBuilder, StreamingBatchProcessor

REPO = Path(__file__).resolve().parent.parent


def release(n: int, tracks: int) -> dict[str, Any]:
    """A realistic album as a nested dict: credits on every track, two deals."""
    return {
        "release_id": n,
        "icpn": f"{5_000_000_000_000 + n:013d}",
        "catalog_number": f"BEN{n:06d}",
        "title": f"Benchmark Album {n}",
        "release_type": "Album" if tracks > 3 else "Single",
        "label": {"label_id": 1 + n % 7, "name": f"Bench Label {n % 7}"},
        "genre": "Electronic",
        "subgenre": "House",
        "release_date": "2024-06-01",
        "p_line_year": 2024,
        "p_line_text": "2024 Bench Label",
        "c_line_year": 2024,
        "c_line_text": "2024 Bench Label",
        "parental_warning": "NotExplicit",
        "artists": [
            {"artist_id": 10 + n % 100, "name": f"Artist {n % 100}", "role": "MainArtist", "sequence": 1},
            {"artist_id": 500 + n % 30, "name": f"Guest {n % 30}", "role": "FeaturedArtist", "sequence": 2},
        ],
        "tracks": [
            {
                "track_id": n * 100 + t,
                "disc_number": 1,
                "track_number": t,
                "isrc": f"QZBEN{24:02d}{(n * 100 + t) % 100000:05d}",
                "title": f"Track {t} – Ünïcødé",
                "duration_seconds": 150 + 7 * t,
                "audio_file": f"{n}_{t}.flac",
                "audio_md5": f"{n * 100 + t:032x}",
                "contributors": [
                    {"artist_id": 900 + t, "name": f"Composer {t}", "role": "Composer", "sequence": 1},
                    {"artist_id": 950 + t % 5, "name": f"Producer {t % 5}", "role": "Producer", "sequence": 2},
                ],
            }
            for t in range(1, tracks + 1)
        ],
        "deals": [
            {"deal_id": 1, "territories": ["Worldwide"], "commercial_model": "SubscriptionModel",
             "use_types": ["Stream", "OnDemandStream"], "start_date": "2024-06-01"},
            {"deal_id": 2, "territories": ["US", "GB", "DE"], "commercial_model": "PayAsYouGoModel",
             "use_types": ["PermanentDownload"], "start_date": "2024-06-01"},
        ],
    }


def cpu_ticks() -> tuple[int, int] | None:
    """(busy, total) CPU ticks of the whole machine, from /proc/stat (Linux)."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            values = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


def busy_cores(before: tuple[int, int] | None, after: tuple[int, int] | None) -> str:
    """How many cores the whole machine kept busy between two readings (ours and everyone else's)."""
    if before is None or after is None or after[1] == before[1]:
        return "n/a"
    return f"{(after[0] - before[0]) / (after[1] - before[1]) * (os.cpu_count() or 1):.1f}"


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_estimate(data: list[dict[str, Any]], args: argparse.Namespace) -> None:
    """CPU seconds of one inline run and of one parallel run (this process + its workers).

    Wall rates on a shared machine say more about the neighbours than about
    us; CPU time does not. The parallel wall time on idle cores is about
    max(this process's CPU, the workers' CPU / workers), printed as an estimate.
    Worker CPU is read when the workers exit, so a fresh builder is used.
    """
    with DDEXBuilder(workers=args.workers) as inline:
        t = time.process_time()
        inline.build_batch(data, batch_size=args.batch_size, parallel=False)
        inline_cpu = time.process_time() - t
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    builder = DDEXBuilder(workers=args.workers, start_method="fork")  # workers are our children: their CPU counts
    t = time.process_time()
    builder.build_batch(data, batch_size=args.batch_size, parallel=True)
    main_cpu = time.process_time() - t
    builder.close()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    workers_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    n = len(data)
    estimate = n / max(main_cpu, workers_cpu / args.workers)
    print(f"CPU time: inline {inline_cpu:.2f} s ({n / inline_cpu:.0f} releases/s per core); parallel: this process "
          f"{main_cpu:.2f} s + workers {workers_cpu:.2f} s (incl. start-up) -> about {estimate:.0f} releases/s "
          f"on {args.workers} idle cores ({estimate * inline_cpu / n:.2f}x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--releases", type=int, default=3000)
    ap.add_argument("--tracks", type=int, default=12)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3, help="best of this many runs per mode")
    ap.add_argument("--validate", action="store_true", help="validate every document against the XSD")
    ap.add_argument("--schema-dir", type=Path, default=REPO.parent / "shared" / "ddex" / "schemas")
    args = ap.parse_args()

    data = [release(n, args.tracks) for n in range(1, args.releases + 1)]
    print(f"{args.releases} releases x {args.tracks} tracks, {args.workers} workers, batch_size {args.batch_size}, "
          f"{os.cpu_count()} cores, Python {sys.version.split()[0]}")
    # Other processes on the machine distort the parallel figure most: say how busy it was.
    print(f"load average before: {os.getloadavg()[0]:.2f} (figures are only comparable on an idle machine)")
    try:
        autogroup = Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
    except OSError:
        autogroup = False
    if autogroup:
        # The kernel shares CPU between sessions, not processes: while another
        # session is busy this one gets its share whatever its process count,
        # so the wall speed-up only shows on an idle machine (the CPU line does not care).
        print("note: sched_autogroup is on: with other sessions busy, extra worker processes get no extra CPU")

    with DDEXBuilder(workers=args.workers, schema_dir=args.schema_dir if args.validate else None) as builder:
        t = time.perf_counter()
        builder.build_batch(data[: args.workers * 2], batch_size=1, parallel=True)  # start and warm the pool
        print(f"pool start-up (once per builder): {time.perf_counter() - t:.2f} s")

        rates: dict[bool, float] = {}
        result = None
        for parallel in (False, True):
            best = 0.0
            ticks = cpu_ticks()
            for _ in range(args.rounds):
                result = builder.build_batch(data, batch_size=args.batch_size, parallel=parallel)
                assert not result.errors, result.errors[:3]
                best = max(best, result.items_per_second)
            rates[parallel] = best
            label = "parallel=True " if parallel else "parallel=False"
            # We alone would keep ~1 core busy inline and ~workers cores in parallel; more means neighbours.
            print(f"build_batch {label}: {best:8.0f} releases/s   (machine busy: {busy_cores(ticks, cpu_ticks())} "
                  f"of {os.cpu_count()} cores)")
        print(f"speed-up: {rates[True] / rates[False]:.2f}x")
        cpu_estimate(data, args)

        stats = StreamingBatchProcessor(batch_size=args.batch_size, max_concurrency=args.workers * 2, builder=builder) \
            .process_stream(iter(data), lambda item: None)
        print(f"StreamingBatchProcessor:   {stats.average_items_per_second:8.0f} releases/s "
              f"({stats.batches} batches, peak {stats.peak_memory_mb:.0f} MB)")

        if args.validate and result is not None:
            from ddex_etl.ern.validate import validate_bytes

            t = time.perf_counter()
            invalid = [s.id for s in result.success if validate_bytes(s.xml_bytes, args.schema_dir, builder.version)]
            took = time.perf_counter() - t
            print(f"XSD validation: {len(result.success) - len(invalid)}/{len(result.success)} valid "
                  f"({len(result.success) / took:.0f} documents/s in one process)")
            if invalid:
                print(f"INVALID: {invalid[:20]}")
                sys.exit(1)
    print(f"peak memory (this process): {peak_mb():.0f} MB")


if __name__ == "__main__":
    main()
