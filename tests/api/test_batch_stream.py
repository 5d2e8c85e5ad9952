"""StreamingBatchProcessor: callbacks, sinks, bounded memory, asyncio."""
from __future__ import annotations

import asyncio
import io
import json
import logging
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from ddex_etl import DDEXBuilder, StreamingBatchProcessor
from ddex_etl.api.batch import BuiltItem, ItemError
from ddex_etl.api.batch_stream import BatchStats, StreamStats
from ddex_etl.demo.seed import ean13

REPO = Path(__file__).resolve().parents[2]


def small_release(n: int, bad: bool = False) -> dict[str, Any]:
    """A one- or two-track release; ``bad`` gives it a malformed ISRC."""
    return {
        "release_id": n,
        "icpn": ean13(f"{200_000_000_000 + n:012d}"),
        "title": f"Single {n}",
        "release_type": "Single",
        "label": {"label_id": 1, "name": "Stream Records"},
        "genre": "Dance",
        "release_date": "2025-01-10",
        "p_line_text": "2025 Stream Records", "c_line_text": "2025 Stream Records",
        "cover_image": {"file": f"covers/{n}.png", "md5": "0" * 32, "mime_type": "image/png"},
        "artists": [{"artist_id": 1, "name": "DJ Stream", "role": "MainArtist"}],
        "tracks": [
            {"track_id": n * 10 + t, "disc_number": 1, "track_number": t,
             "isrc": "bad" if bad else f"GBXYZ25{(n * 10 + t) % 100000:05d}", "title": f"Mix {t}", "duration_seconds": 200}
            for t in range(1, 2 + n % 2)
        ],
        "deals": [{"territories": ["Worldwide"], "commercial_model": "PayAsYouGoModel",
                   "use_types": ["PermanentDownload"], "start_date": "2025-01-10"}],
    }


def releases(count: int, bad_every: int = 0) -> Iterator[dict[str, Any]]:
    for n in range(1, count + 1):
        yield small_release(n, bad=bool(bad_every) and n % bad_every == 0)


@pytest.fixture(scope="module")
def builder() -> Iterator[DDEXBuilder]:
    b = DDEXBuilder(workers=2)
    yield b
    b.close()


# --------------------------------------------------------------------------- callbacks


@pytest.mark.parametrize("parallel", [True, False])
def test_callbacks_carry_correct_counts(builder: DDEXBuilder, parallel: bool) -> None:
    batches: list[BatchStats] = []
    progress: list[tuple[int, int | None]] = []
    errors: list[tuple[ItemError, Any]] = []
    completed: list[StreamStats] = []
    delivered: list[Any] = []
    source = list(releases(1000, bad_every=20))

    processor = StreamingBatchProcessor(
        batch_size=25,
        max_concurrency=3,
        on_progress=lambda done, total: progress.append((done, total)),
        on_error=lambda error, item: errors.append((error, item)),
        on_batch_complete=batches.append,
        on_complete=completed.append,
        builder=builder,
        parallel=parallel,
    )
    stats = processor.process_stream(source, lambda item: delivered.append(item.id))

    assert [b.batch_number for b in batches] == list(range(1, 41))
    assert all(b.items_processed == 25 for b in batches)
    assert sum(b.failed for b in batches) == 50 and sum(b.succeeded for b in batches) == 950
    assert all(b.memory_usage_mb > 0 and b.processing_time_ms > 0 and b.items_per_second > 0 for b in batches)
    assert batches[0]["batch_number"] == 1  # readable as a mapping too
    assert progress == [(25 * k, 1000) for k in range(1, 41)]
    assert [e.id for e, _ in errors] == list(range(20, 1001, 20))
    assert all(item is source[e.id - 1] and "tracks[0].isrc" in e.message for e, item in errors)
    assert delivered == [n for n in range(1, 1001) if n % 20]  # source order
    assert completed == [stats]
    assert (stats.total_items, stats.succeeded, stats.failed, stats.batches) == (1000, 950, 50, 40)
    assert stats.error_rate == pytest.approx(0.05)
    assert stats.peak_memory_mb >= max(b.memory_usage_mb for b in batches)
    assert stats.average_items_per_second > 0 and stats.total_time_ms > 0


def test_a_generator_source_has_no_total_and_a_short_last_batch(builder: DDEXBuilder) -> None:
    progress: list[tuple[int, int | None]] = []
    sizes: list[int] = []
    stats = StreamingBatchProcessor(
        batch_size=30, on_progress=lambda d, t: progress.append((d, t)),
        on_batch_complete=lambda s: sizes.append(s.items_processed), builder=builder,
    ).process_stream(releases(100), lambda item: None)
    assert sizes == [30, 30, 30, 10]
    assert progress[-1] == (100, None) and stats.total_items == 100


def test_without_on_error_failures_are_logged(builder: DDEXBuilder, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ddex_etl.api.batch_stream"):
        stats = StreamingBatchProcessor(builder=builder).process_stream(releases(10, bad_every=5), lambda item: None)
    assert stats.failed == 2
    assert sum("release 5" in r.getMessage() or "release 10" in r.getMessage() for r in caplog.records) == 2


# --------------------------------------------------------------------------- sinks


def test_a_binary_or_text_file_sink_gets_the_documents_one_after_another(builder: DDEXBuilder) -> None:
    binary, text = io.BytesIO(), io.StringIO()
    StreamingBatchProcessor(batch_size=4, builder=builder).process_stream(releases(10), binary)
    StreamingBatchProcessor(batch_size=4, builder=builder, parallel=False).process_stream(releases(10), text)
    assert binary.getvalue().decode("utf-8") == text.getvalue()
    docs = text.getvalue().split('<?xml version="1.0" encoding="UTF-8"?>')[1:]
    assert len(docs) == 10
    assert docs[3].strip() == builder.build(small_release(4)).split("?>", 1)[1].strip()


def test_a_directory_sink_writes_one_file_per_release_atomically(builder: DDEXBuilder, tmp_path: Path) -> None:
    out = tmp_path / "messages"
    stats = StreamingBatchProcessor(batch_size=7, builder=builder).process_stream(releases(20, bad_every=10), out)
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"{n}.xml" for n in range(1, 21) if n % 10)  # no temp files left
    assert (out / "3.xml").read_text(encoding="utf-8") == builder.build(small_release(3))
    assert stats.failed == 2


def test_an_unknown_sink_is_refused(builder: DDEXBuilder, tmp_path: Path) -> None:
    from ddex_etl.errors import ConfigError

    with pytest.raises(TypeError, match="sink"):
        StreamingBatchProcessor(builder=builder).process_stream(releases(1), 42)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="open\\(path, 'wb'\\)"):
        StreamingBatchProcessor(builder=builder).process_stream(releases(1), tmp_path / "all.xml")
    assert not (tmp_path / "all.xml").exists()


# --------------------------------------------------------------------------- memory


def test_memory_limit_slows_intake_instead_of_failing(builder: DDEXBuilder, caplog: pytest.LogCaptureFixture) -> None:
    delivered: list[int] = []
    with caplog.at_level(logging.WARNING, logger="ddex_etl.api.batch_stream"):
        stats = StreamingBatchProcessor(
            batch_size=10, max_concurrency=4, memory_limit=1, builder=builder  # 1 MB: always "over"
        ).process_stream(releases(200), lambda item: delivered.append(item.id))
    assert delivered == list(range(1, 201))
    assert stats.throttled > 0
    assert any("memory_limit" in r.getMessage() for r in caplog.records)


MEMORY_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys
    sys.path.insert(0, sys.argv[2])
    from test_batch_stream import releases
    from ddex_etl import DDEXBuilder, StreamingBatchProcessor

    if __name__ == "__main__":
        count = int(sys.argv[1])
        seen = [0, 0]
        def sink(item):
            seen[0] += 1
            seen[1] = max(seen[1], len(item.xml_bytes))
        batches = []
        errors = [0]
        def on_error(error, item):
            errors[0] += 1
        with StreamingBatchProcessor(
            batch_size=100, max_concurrency=4, builder=DDEXBuilder(workers=2), on_error=on_error,
            on_batch_complete=lambda s: batches.append(s.items_processed),
        ) as proc:
            stats = proc.process_stream(releases(count, bad_every=1000), sink)
        print(json.dumps({
            "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "delivered": seen[0], "batches": len(batches), "items": sum(batches),
            "total": stats.total_items, "failed": stats.failed, "errors": errors[0],
        }))
    """
)


def _stream_in_subprocess(count: int, tmp_path: Path) -> dict[str, Any]:
    script = tmp_path / "stream_memory.py"
    script.write_text(MEMORY_SCRIPT, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-W", "error", str(script), str(count), str(REPO / "tests" / "api")],
        capture_output=True, text=True, check=False, timeout=600,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_an_endless_stream_runs_in_flat_memory(tmp_path: Path) -> None:
    small = _stream_in_subprocess(10_000, tmp_path)
    large = _stream_in_subprocess(100_000, tmp_path)
    for run, count in ((small, 10_000), (large, 100_000)):
        assert (run["total"], run["items"], run["batches"]) == (count, count, count // 100)
        assert run["failed"] == run["errors"] == count // 1000 and run["delivered"] == count - count // 1000
    # Ten times the releases, (about) the same peak: nothing grows with the stream.
    assert large["peak_kb"] <= small["peak_kb"] * 1.2, (small, large)


# --------------------------------------------------------------------------- asyncio


def test_asyncio_producer_consumer_keeps_the_event_loop_free(builder: DDEXBuilder) -> None:
    async def main() -> tuple[list[Any], list[int], int, StreamStats]:
        inbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=50)
        outbox: asyncio.Queue[BuiltItem | None] = asyncio.Queue(maxsize=50)
        ticks = 0
        ticks_at_batch: list[int] = []
        received: list[Any] = []

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        async def producer() -> None:
            for release in releases(600, bad_every=100):
                await inbox.put(release)
            await inbox.put(None)

        async def source() -> AsyncIterator[dict[str, Any]]:
            while (item := await inbox.get()) is not None:
                yield item

        async def consumer() -> None:
            while (item := await outbox.get()) is not None:
                received.append(item.id)

        async def on_batch(stats: BatchStats) -> None:  # async callbacks are awaited
            ticks_at_batch.append(ticks)

        tick_task = asyncio.create_task(ticker())
        tasks = [asyncio.create_task(producer()), asyncio.create_task(consumer())]
        processor = StreamingBatchProcessor(batch_size=20, max_concurrency=2, on_batch_complete=on_batch, builder=builder)
        stats = await processor.aprocess_stream(source(), outbox.put)  # the sink is the queue's coroutine
        await outbox.put(None)
        await asyncio.gather(*tasks)
        tick_task.cancel()
        return received, ticks_at_batch, ticks, stats

    received, ticks_at_batch, ticks, stats = asyncio.run(main())
    assert received == [n for n in range(1, 601) if n % 100]
    assert (stats.total_items, stats.failed, stats.batches) == (600, 6, 30)
    assert len(ticks_at_batch) == 30 and ticks_at_batch == sorted(ticks_at_batch)
    # The ticker ran while the batches were being built: the loop was free.
    # (Building on the loop would leave it a tick or two per batch, when a
    # queue happens to be empty; waiting for workers gives it hundreds.)
    print(f"ticks: {ticks} for {stats.batches} batches")
    assert ticks >= 20 * stats.batches


def test_aprocess_stream_accepts_a_plain_iterable_and_an_async_sink(builder: DDEXBuilder) -> None:
    got: list[Any] = []

    async def sink(item: BuiltItem) -> None:
        await asyncio.sleep(0)
        got.append(item.id)

    stats = asyncio.run(StreamingBatchProcessor(batch_size=8, builder=builder, parallel=False).aprocess_stream(releases(30), sink))
    assert got == list(range(1, 31)) and stats.batches == 4


def test_process_stream_runs_an_async_source_outside_a_loop_and_refuses_inside_one(builder: DDEXBuilder) -> None:
    async def source() -> AsyncIterator[dict[str, Any]]:
        for release in releases(12):
            yield release

    got: list[Any] = []
    processor = StreamingBatchProcessor(batch_size=5, builder=builder)
    assert processor.process_stream(source(), lambda item: got.append(item.id)).total_items == 12
    assert got == list(range(1, 13))

    async def inside() -> None:
        gen = source()
        try:
            with pytest.raises(TypeError, match="aprocess_stream"):
                processor.process_stream(gen, got.append)
        finally:
            await gen.aclose()

    asyncio.run(inside())


@pytest.mark.parametrize(
    "kwargs",
    [{"batch_size": 0}, {"max_concurrency": 0}, {"memory_limit": -5}],
)
def test_bad_processor_settings_fail_up_front(kwargs: dict[str, Any]) -> None:
    from ddex_etl.errors import ConfigError

    with pytest.raises(ConfigError, match=next(iter(kwargs))):
        StreamingBatchProcessor(**kwargs)
