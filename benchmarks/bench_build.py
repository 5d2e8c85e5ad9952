"""Print ERN build throughput (releases/s on one core) and peak memory for 12-track releases.

    python benchmarks/bench_build.py [--releases 3000] [--tracks 12] [--rounds 5]

Building includes the data checks, serialization to UTF-8 bytes, the MessageId
and the SHA-256 checksum: everything ``ddex_etl.ern.build`` does. The releases
look like catalog data: mostly Latin titles, some accented, Japanese and
Hebrew ones, composers and features on tracks, three deals. Rounds alternate
between the versions; the best of ``--rounds`` is reported (the machine's
speed, not the code, is what varies between rounds), with the median beside it.
"""
from __future__ import annotations

import argparse
import datetime as dt
import gc
import os
import resource
import statistics
import sys
import time

from ddex_etl.ern import BuildContext, build
from ddex_etl.ern.identifiers import gs1_check_digit
from ddex_etl.models import Contributor, CoverImage, Deal, Label, Release, Track

TITLES = ["Midnight Drive", "Summer Rain", "Les Étoiles", "夢のララバイ", "Golden Hour", "אור", "Neon Lights", "Café Society"]


def ean13(body: str) -> str:
    return body + gs1_check_digit(body)


def make_release(i: int, n_tracks: int) -> Release:
    artist = Contributor(10_000 + i % 500, f"Artist {i % 500}", "MainArtist", 1)
    composer = Contributor(20_000 + i % 300, f"Composer {i % 300}", "Composer", 2)
    lyricist = Contributor(30_000 + i % 200, f"Lyricist {i % 200}", "Lyricist", 3)
    feature = Contributor(40_000 + i % 100, f"Feature {i % 100}", "FeaturedArtist", 2)
    stamp = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(minutes=i)
    tracks = tuple(
        Track(
            track_id=i * 100 + k,
            disc_number=1,
            track_number=k + 1,
            isrc=f"GBAYE{(i * 100 + k) % 10_000_000:07d}",
            title=f"{TITLES[(i + k) % len(TITLES)]} {k + 1}",
            version_title="Radio Edit" if k % 5 == 0 else None,
            duration_seconds=150 + (i + k * 17) % 240,
            genre="Pop",
            parental_warning="Explicit" if k == 3 else None,
            p_line_year=2024,
            p_line_text="(P) 2024 Demo Label",
            audio_file=f"{i}_{k + 1:02d}.flac",
            audio_md5=f"{i * 100 + k:032x}",
            contributors=(artist, composer, lyricist) + ((feature,) if k % 4 == 2 else ()),
            updated_at=stamp,
        )
        for k in range(n_tracks)
    )
    return Release(
        release_id=i,
        title=f"{TITLES[i % len(TITLES)]} (Album {i})",
        release_type="Album",
        icpn=ean13(f"{500_000_000_000 + i:012d}"),
        catalog_number=f"DEMO-{i:06d}",
        label=Label(1 + i % 20, f"Demo Label {i % 20}"),
        genre="Pop",
        subgenre="Synth-pop",
        release_date=dt.date(2024, 3, 1),
        p_line_year=2024,
        p_line_text="(P) 2024 Demo Label",
        c_line_year=2024,
        c_line_text="(C) 2024 Demo Label",
        parental_warning="NotExplicit",
        artists=(artist,),
        tracks=tracks,
        deals=(
            Deal(1, ("Worldwide",), "SubscriptionModel", ("OnDemandStream", "NonInteractiveStream"), dt.date(2024, 3, 1)),
            Deal(2, ("Worldwide",), "AdvertisementSupportedModel", ("OnDemandStream",), dt.date(2024, 3, 1)),
            Deal(3, ("GB", "US", "DE", "FR"), "PayAsYouGoModel", ("PermanentDownload",), dt.date(2024, 3, 1)),
        ),
        updated_at=stamp,
        cover_image=CoverImage(f"covers/{i}.jpg", f"{i:032x}", 3000, 3000, "image/jpeg"),
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--releases", type=int, default=3000)
    ap.add_argument("--tracks", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)

    releases = [make_release(i, args.tracks) for i in range(args.releases)]
    gc.collect()
    gc.freeze()  # the input records are long-lived; keep them out of the collector's scans
    print(
        f"{args.releases} releases x {args.tracks} tracks, best of {args.rounds} rounds, one process; "
        f"load average before: {os.getloadavg()[0]:.2f} (other processes on the machine slow every figure)"
    )
    versions = ("4.3", "4.2", "3.8.2")
    contexts = {v: BuildContext(ern_version=v) for v in versions}
    for v in versions:
        build(releases[0], contexts[v])  # warm-up (lazy caches)
    cpu: dict[str, list[float]] = {v: [] for v in versions}
    wall: dict[str, list[float]] = {v: [] for v in versions}
    sizes: dict[str, int] = {}
    # Rounds go round-robin over the versions, so a slow spell of the machine
    # (this VM's speed was seen to swing by a third within minutes) hits every
    # version alike instead of the one measured during it.
    for _ in range(args.rounds):
        for v in versions:
            ctx = contexts[v]
            size = 0
            c0, t0 = time.process_time(), time.perf_counter()
            for r in releases:
                size += len(build(r, ctx).xml)
            cpu[v].append(time.process_time() - c0)
            wall[v].append(time.perf_counter() - t0)
            sizes[v] = size
    for v in versions:
        # CPU time of this (single-threaded) process = time on one core; the
        # wall-clock figure also counts time other processes took the core.
        best_cpu, best_wall = min(cpu[v]), min(wall[v])
        median_cpu = statistics.median(cpu[v])
        print(
            f"ERN {v:5}  {args.releases / best_cpu:8.0f} releases/s per core (CPU time, best)  "
            f"{args.releases / median_cpu:6.0f} median  {args.releases / best_wall:8.0f} releases/s wall  "
            f"{best_cpu / args.releases * 1e6:5.0f} us/release  {sizes[v] / args.releases / 1024:5.1f} KiB/document"
        )
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"peak RSS {peak_kib / 1024:.0f} MiB (includes the {args.releases} input releases)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
