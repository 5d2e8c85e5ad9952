"""What the files loader costs per document, without the database or the builder.

    python benchmarks/bench_files.py [--files 10000] [--chunk 500] [--size 30000] [--out /dev/shm] [--repeat 5]

Writes ``--files`` documents of ``--size`` bytes in chunks of ``--chunk``
through ``FileLoader.write`` (temp file, one sync, renames, one sync; batch
layout: the pending list too), in both layouts, ``--repeat`` times each in a
fresh folder under ``--out``, and prints the best CPU and wall time per file.
The CPU figure is the loader's own share of a worker's time per release; the
filesystem's share depends on where ``--out`` lives (tmpfs is cheapest; see
bench_pipeline.py about ext4 right after mass deletes).
"""
from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ddex_etl.load import FileLoader, Output, release_identifier  # noqa: E402
from ddex_etl.models import Document  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--chunk", type=int, default=500)
    ap.add_argument("--size", type=int, default=30_000)
    ap.add_argument("--out", default=tempfile.gettempdir())
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    body = b"<m>" + b"x" * max(0, args.size - 7) + b"</m>"
    checksum = hashlib.sha256(body).hexdigest()
    outputs = [
        Output(Document(i, "4.3", f"M{i}", body, checksum), release_identifier(i, f"0602445{i:06d}"))
        for i in range(1, args.files + 1)
    ]
    print(f"files loader: {args.files:,} documents of {len(body):,} bytes, chunks of {args.chunk}, in {args.out}")
    for layout in ("flat", "ddex-batch"):
        cpu_best = wall_best = float("inf")
        for _ in range(args.repeat):
            folder = Path(tempfile.mkdtemp(prefix="etl-bench-files-", dir=args.out))
            try:
                loader = FileLoader(folder, layout, "20260101000000000" if layout == "ddex-batch" else None)
                loader.prepare()
                c0, t0 = time.process_time(), time.perf_counter()
                for i in range(0, len(outputs), args.chunk):
                    loader.write(outputs[i : i + args.chunk])
                cpu_best = min(cpu_best, time.process_time() - c0)
                wall_best = min(wall_best, time.perf_counter() - t0)
            finally:
                shutil.rmtree(folder, ignore_errors=True)
        n = len(outputs)
        print(
            f"{layout:<11} {cpu_best / n * 1e6:6.1f} us CPU per file, {wall_best / n * 1e6:6.1f} us wall per file "
            f"(best of {args.repeat}; {n / wall_best:,.0f} files/s)"
        )


if __name__ == "__main__":
    main()
