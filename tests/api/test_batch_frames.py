"""StreamingBatchProcessor fed DataFrames, as pandas streams a query or a CSV (chunksize=): releases
straddling chunk boundaries come out whole, once, in order, with the usual callbacks."""
from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from ddex_etl import DDEXBuilder, StreamingBatchProcessor
from ddex_etl.api.batch import BuiltItem, ItemError
from ddex_etl.api.batch_stream import BatchStats, StreamStats
from ddex_etl.db import make_engine
from ddex_etl.demo.seed import SQL_DIR, seed_catalog

RELEASES = 20
ID_TYPES = {"icpn": str, "isrc": str, "catalog_number": str}


@pytest.fixture(scope="module")
def builder() -> Iterator[DDEXBuilder]:
    b = DDEXBuilder(workers=2)
    yield b
    b.close()


@pytest.fixture()
def engine(db_url: str) -> Iterator[sa.Engine]:
    eng = make_engine(db_url, pool_size=2)
    seed_catalog(eng, RELEASES, seed=9)
    yield eng
    eng.dispose()


def rows_query() -> sa.TextClause:
    return sa.text((SQL_DIR / "release_rows.sql").read_text(encoding="utf-8"))


def all_ids(conn: sa.Connection) -> list[int]:
    return list(conn.execute(sa.text("SELECT release_id FROM releases ORDER BY 1")).scalars())


class Collect:
    def __init__(self) -> None:
        self.built: list[BuiltItem] = []
        self.errors: list[tuple[ItemError, Any]] = []
        self.batches: list[BatchStats] = []
        self.done: list[StreamStats] = []

    def processor(self, builder: DDEXBuilder, **options: Any) -> StreamingBatchProcessor:
        return StreamingBatchProcessor(
            batch_size=3, max_concurrency=2, builder=builder,
            on_error=lambda e, item: self.errors.append((e, item)),
            on_batch_complete=self.batches.append, on_complete=self.done.append, **options,
        )


def test_read_sql_chunks_build_every_release_once_and_whole(engine: sa.Engine, builder: DDEXBuilder) -> None:
    with engine.connect() as conn:
        ids = all_ids(conn)
        whole = pd.read_sql(rows_query(), conn, params={"release_ids": ids})
        expected = {item.id: item.xml for item in builder.from_dataframe_batch(whole, parallel=False).success}
        # 7 rows a chunk and about 10 tracks a release: almost every release straddles a boundary.
        frames = pd.read_sql(rows_query(), conn, params={"release_ids": ids}, chunksize=7)
        got = Collect()
        stats = got.processor(builder).process_stream(frames, got.built.append)
    assert len(whole) > 7 * 3
    assert [item.id for item in got.built] == ids  # once each, in stream order
    assert {item.id: item.xml for item in got.built} == expected  # whole: the same bytes as one big frame
    assert got.errors == []
    assert (stats.total_items, stats.succeeded, stats.batches) == (RELEASES, RELEASES, len(got.batches))
    assert got.done == [stats] and sum(b.items_processed for b in got.batches) == RELEASES


def test_read_csv_chunks_through_aprocess_stream(engine: sa.Engine, builder: DDEXBuilder, tmp_path: Path) -> None:
    with engine.connect() as conn:
        ids = all_ids(conn)
        pd.read_sql(rows_query(), conn, params={"release_ids": ids}).to_csv(tmp_path / "releases.csv", index=False)
    got = Collect()

    async def main() -> StreamStats:
        frames = pd.read_csv(tmp_path / "releases.csv", chunksize=5, dtype=ID_TYPES)
        return await got.processor(builder).aprocess_stream(frames, got.built.append)

    stats = asyncio.run(main())
    assert [item.id for item in got.built] == ids and stats.failed == 0


def test_an_async_source_of_frames(builder: DDEXBuilder) -> None:
    rows = [dict(release_id=n, title=f"T{n}", release_type="Single", icpn=None, track_id=n * 10 + t,
                 track_number=t, track_title=f"t{t}", isrc=f"GBXYZ25{n:03d}{t:02d}") for n in (1, 2, 3) for t in (1, 2)]
    frame = pd.DataFrame(rows)

    async def frames() -> Any:
        for start in range(0, len(frame), 3):  # 3 rows a frame: release 2 straddles the boundary
            await asyncio.sleep(0)
            yield frame.iloc[start:start + 3]

    got = Collect()
    asyncio.run(got.processor(builder, parallel=False).aprocess_stream(frames(), got.built.append))
    # Data problems (no deals, no label) are per release: each release is reported once, whole.
    outcomes = sorted([i.id for i in got.built] + [e.id for e, _ in got.errors])
    assert outcomes == [1, 2, 3]
    assert all(len(item) == 2 for _, item in got.errors)  # both rows of each release


def test_rows_that_come_back_after_another_release_are_refused(builder: DDEXBuilder) -> None:
    frame = pd.DataFrame([{"release_id": 1, "track_id": 1}, {"release_id": 2, "track_id": 2},
                          {"release_id": 1, "track_id": 3}, {"release_id": None, "track_id": 4}])
    got = Collect()
    got.processor(builder, parallel=False).process_stream([frame], got.built.append)
    messages = [e.message for e, _ in got.errors]
    assert any("release 1: its rows are not contiguous" in m and "order the stream by release_id" in m
               for m in messages), messages
    assert any("row 3: column 'release_id' is empty" in m for m in messages), messages


def test_a_missing_group_by_column_names_it(builder: DDEXBuilder) -> None:
    from ddex_etl.errors import ConfigError

    with pytest.raises(ConfigError, match="group_by: column 'album' is not in DataFrame"):
        StreamingBatchProcessor(builder=builder).process_stream([pd.DataFrame([{"release_id": 1}])], lambda _: None,
                                                                group_by="album")


def test_an_endless_stream_of_frames_is_read_lazily(builder: DDEXBuilder) -> None:
    """Bounded memory: frames are pulled as batches are built, not read up front."""
    pulled = 0
    base = pd.DataFrame([{"release_id": 0, "track_id": 0, "title": "x"}])

    def endless() -> Iterator[pd.DataFrame]:
        nonlocal pulled
        for n in itertools.count(1):
            pulled += 1
            yield base.assign(release_id=n, track_id=n)

    class Enough(Exception):
        pass

    seen: list[Any] = []

    def stop_after_ten(error: ItemError, item: Any) -> None:
        seen.append(error.id)
        if len(seen) == 10:
            raise Enough

    processor = StreamingBatchProcessor(batch_size=2, max_concurrency=1, builder=builder, parallel=False,
                                        on_error=stop_after_ten)
    with pytest.raises(Enough):
        processor.process_stream(endless(), lambda _: None)
    assert seen == list(range(1, 11)) and pulled <= 14
