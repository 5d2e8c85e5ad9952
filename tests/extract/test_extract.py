"""Chunked extract against a real PostgreSQL: whole releases, keyset vs offset, catalog changes, errors."""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from ddex_etl import extract
from ddex_etl.config import ExtractConfig
from ddex_etl.db import make_engine
from ddex_etl.demo.seed import seed_catalog
from ddex_etl.errors import TerminalError
from ddex_etl.extract import KeyChunk, copy_baseline, count_releases, fetch_releases, iter_chunks, iter_key_chunks

RELEASES = 60


@pytest.fixture()
def engine(db_url: str) -> Iterator[sa.Engine]:
    eng = make_engine(db_url, pool_size=2)
    seed_catalog(eng, RELEASES, seed=9)
    yield eng
    eng.dispose()


def run(engine: sa.Engine, conn_sql: str, **params: object) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(conn_sql), params)


def track_counts(engine: sa.Engine) -> dict[int, int]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.text("SELECT release_id, count(*) FROM tracks GROUP BY 1")).all())  # type: ignore[arg-type]


@pytest.mark.parametrize("chunk_size", [1, 7, 25, RELEASES, 500])
def test_keyset_and_offset_give_the_same_whole_releases_in_order(engine: sa.Engine, chunk_size: int) -> None:
    counts = track_counts(engine)
    seen: dict[str, list[int]] = {}
    for mode in ("keyset", "offset"):
        cfg = ExtractConfig(mode=mode, chunk_size=chunk_size)
        ids: list[int] = []
        chunks = list(iter_chunks(engine, cfg))
        for number, (chunk, releases, rejects) in enumerate(chunks):
            assert chunk.number == number
            assert not rejects
            assert [r.release_id for r in releases] == list(chunk.release_ids)
            # Never split: every release comes with all of its tracks, in order.
            for r in releases:
                assert len(r.tracks) == counts[r.release_id]
                positions = [(t.disc_number, t.track_number) for t in r.tracks]
                assert positions == sorted(positions)
            ids += [r.release_id for r in releases]
        sizes = [len(c.release_ids) for c, _, _ in chunks]
        assert all(s == chunk_size for s in sizes[:-1]) and 0 < sizes[-1] <= chunk_size
        seen[mode] = ids
    assert seen["keyset"] == seen["offset"] == list(range(1, RELEASES + 1))


def test_chunks_carry_their_resume_points(engine: sa.Engine) -> None:
    chunks = list(iter_key_chunks(engine, ExtractConfig(chunk_size=25)))
    assert [(c.number, c.last_key, c.next_offset) for c in chunks] == [(0, 25, 25), (1, 50, 50), (2, 60, 60)]
    resumed = list(iter_key_chunks(engine, ExtractConfig(chunk_size=25), after_key=25, offset=25, start_number=1))
    assert resumed == chunks[1:]
    resumed = list(iter_key_chunks(engine, ExtractConfig(mode="offset", chunk_size=25), offset=50, start_number=2))
    assert resumed == chunks[2:]


# A change made after the first chunk (ids 1..10) was read, and what keyset
# paging must then yield in all: (change, sql, ids added, ids removed).
CHANGES = [
    ("insert below the cursor", "INSERT INTO releases (release_id, title, release_type) VALUES (0, 'New', 'Single')",
     set(), set()),  # id 0 waits for the next run
    ("delete a release already read", "DELETE FROM releases WHERE release_id = 3", set(), set()),
    ("delete a release not yet read", "DELETE FROM releases WHERE release_id = 40", set(), {40}),
    ("soft-delete a release not yet read", "UPDATE releases SET deleted_at = now() WHERE release_id = 41",
     set(), {41}),
    ("insert above the cursor", "INSERT INTO releases (release_id, title, release_type) VALUES (1000, 'New', 'EP')",
     {1000}, set()),
]


@pytest.mark.parametrize(("change", "sql", "added", "removed"), CHANGES, ids=[c[0] for c in CHANGES])
def test_keyset_never_skips_or_repeats_when_the_catalog_changes_between_chunks(
    engine: sa.Engine, change: str, sql: str, added: set[int], removed: set[int]
) -> None:
    chunks = iter_key_chunks(engine, ExtractConfig(chunk_size=10))
    ids = list(next(chunks).release_ids)
    assert ids == list(range(1, 11))
    run(engine, sql)
    ids += [rid for chunk in chunks for rid in chunk.release_ids]
    assert len(ids) == len(set(ids)), f"{change}: a release was repeated"
    assert set(ids) == (set(range(1, RELEASES + 1)) | added) - removed


def test_offset_mode_shifts_when_a_release_is_inserted_below_the_cursor(engine: sa.Engine) -> None:
    # Documents why keyset is the default: offsets count rows, so an insert below
    # the current page makes the next page start one release early.
    chunks = iter_key_chunks(engine, ExtractConfig(mode="offset", chunk_size=10))
    first = next(chunks).release_ids
    run(engine, "INSERT INTO releases (release_id, title, release_type) VALUES (0, 'New', 'Single')")
    second = next(chunks).release_ids
    assert first[-1] == second[0] == 10


def test_release_without_tracks_and_soft_deleted_release(engine: sa.Engine) -> None:
    run(engine, "INSERT INTO releases (release_id, title, release_type) VALUES (500, 'Announcement', 'Album')")
    run(engine, "UPDATE releases SET deleted_at = '2025-01-01T00:00:00Z' WHERE release_id = 2")
    cfg = ExtractConfig()
    assert 2 not in [rid for c in iter_key_chunks(engine, cfg) for rid in c.release_ids]
    assert count_releases(engine, cfg) == RELEASES  # 60 - 1 deleted + 1 new
    with engine.connect() as conn:
        releases, rejects = fetch_releases(conn, cfg, [2, 500])
    assert not rejects
    deleted, empty = releases
    assert deleted.deleted_at is not None  # takedowns need the row: the rows query does not filter
    assert empty.release_id == 500 and empty.tracks == () and empty.artists == () and empty.deals == ()


def test_fetch_returns_only_the_requested_releases_and_skips_vanished_ids(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        releases, rejects = fetch_releases(conn, ExtractConfig(), [5, 3, 99999])
        assert fetch_releases(conn, ExtractConfig(), []) == ([], [])
    assert [r.release_id for r in releases] == [3, 5] and not rejects


def test_changed_at_is_the_latest_change_anywhere_in_the_release(engine: sa.Engine) -> None:
    later = "2031-05-06 07:08:09+00"
    with engine.connect() as conn:
        before = fetch_releases(conn, ExtractConfig(), [4])[0][0].updated_at
    assert before is not None and before.year < 2030
    cases = [
        "UPDATE artists SET updated_at = :t WHERE artist_id = (SELECT c.artist_id FROM track_contributors c "
        "JOIN tracks t USING (track_id) WHERE t.release_id = 4 AND c.role = 'Composer' LIMIT 1)",
        "UPDATE deals SET updated_at = :t WHERE release_id = 4",
        "UPDATE labels SET updated_at = :t WHERE label_id = (SELECT label_id FROM releases WHERE release_id = 4)",
    ]
    for sql in cases:
        run(engine, "UPDATE artists SET updated_at = '2024-01-01'")
        run(engine, "UPDATE deals SET updated_at = '2024-01-01'")
        run(engine, "UPDATE labels SET updated_at = '2024-01-01'")
        run(engine, sql, t=later)
        with engine.connect() as conn:
            (release,), _ = fetch_releases(conn, ExtractConfig(), [4])
        assert release.updated_at is not None and release.updated_at.isoformat().startswith("2031-05-06T07:08:09"), sql


def test_a_release_with_unconvertible_values_is_rejected_alone(engine: sa.Engine, tmp_path: Path) -> None:
    # A user's query over a schema with text columns: release 3 has a duration of 'abc'.
    base = extract.ROWS_SQL.read_text(encoding="utf-8")
    custom = base.replace(
        "    t.duration_seconds,",
        "    CASE WHEN r.release_id = 3 THEN 'abc' ELSE t.duration_seconds::text END AS duration_seconds,",
    )
    assert custom != base
    path = tmp_path / "rows.sql"
    path.write_text(custom, encoding="utf-8")
    cfg = ExtractConfig(rows_query=path)
    with engine.connect() as conn:
        releases, rejects = fetch_releases(conn, cfg, [2, 3, 4])
    assert [r.release_id for r in releases] == [2, 4]
    (bad,) = rejects
    assert bad.release_id == 3
    assert bad.problems[0].field == "tracks[0].duration_seconds" and bad.problems[0].value == "abc"
    assert bad.rows[0]["duration_seconds"] == "abc"  # type: ignore[attr-defined]
    with engine.connect() as conn:
        good, _ = fetch_releases(conn, ExtractConfig(), [2, 4])
    assert releases == good  # text durations that do convert give the same records


def test_keyset_query_returning_unordered_ids_is_refused(engine: sa.Engine, tmp_path: Path) -> None:
    path = tmp_path / "keys.sql"
    path.write_text("SELECT release_id FROM releases WHERE release_id > :after ORDER BY release_id DESC LIMIT :limit\n")
    with pytest.raises(TerminalError, match=r"keys\.sql.*strictly ascending"):
        list(iter_key_chunks(engine, ExtractConfig(keys_query=path)))


BROKEN = {
    "keys_query": "SELECT release_id FROM no_such_table WHERE release_id > :after LIMIT :limit\n",
    "rows_query": "SELECT * FROM no_such_table WHERE release_id = ANY(:release_ids);\n",
}


@pytest.mark.parametrize("which", sorted(BROKEN))
def test_a_broken_query_is_a_terminal_error_naming_its_file(engine: sa.Engine, tmp_path: Path, which: str) -> None:
    path = tmp_path / f"{which}.sql"
    path.write_text(BROKEN[which])
    cfg = dataclasses.replace(ExtractConfig(), **{which: path})
    with pytest.raises(TerminalError) as info:
        if which == "keys_query":
            list(iter_key_chunks(engine, cfg))
        else:
            with engine.connect() as conn:
                fetch_releases(conn, cfg, [1])
    assert str(path) in str(info.value) and "no_such_table" in str(info.value)
    assert not info.value.retryable


def test_unreachable_server_is_transient(tmp_path: Path) -> None:
    eng = make_engine("postgresql+psycopg://root@127.0.0.1:1/none", pool_size=1, connect_args={"connect_timeout": 2})
    try:
        with pytest.raises(Exception) as info:
            list(iter_key_chunks(eng, ExtractConfig()))
        assert info.value.retryable, str(info.value)  # type: ignore[attr-defined]
        assert "release_keys.sql" in str(info.value)
    finally:
        eng.dispose()


def test_copy_baseline_reads_every_row(engine: sa.Engine) -> None:
    run(engine, "INSERT INTO releases (release_id, title, release_type) VALUES (500, 'Announcement', 'Album')")
    contract = ExtractConfig(chunk_size=25, rows_query=extract.ROWS_SQL)
    releases, rows, seconds = copy_baseline(engine, contract)
    assert releases == RELEASES + 1
    assert rows == sum(track_counts(engine).values()) + 1  # the trackless release is one row
    assert seconds > 0
    assert copy_baseline(engine, ExtractConfig(chunk_size=25), limit=30)[0] == 30
    # The default extract reads table by table: the baseline copies those same rows.
    releases, rows, _ = copy_baseline(engine, ExtractConfig(chunk_size=25))
    with engine.connect() as conn:
        counts = conn.execute(sa.text(
            "SELECT (SELECT count(*) FROM releases) + (SELECT count(*) FROM tracks)"
            " + (SELECT count(*) FROM release_artists) + (SELECT count(*) FROM deals),"
            " (SELECT count(DISTINCT artist_id) FROM track_contributors)"
        )).one()
    assert releases == RELEASES + 1
    # plus each chunk's artists: at least every artist once, at most once per chunk
    assert counts[0] + counts[1] <= rows <= counts[0] + 3 * counts[1] + 3 * RELEASES


def test_key_chunks_pickle_for_worker_processes() -> None:
    import pickle

    chunk = KeyChunk(3, (1, 2), 2, 40)
    assert pickle.loads(pickle.dumps(chunk)) == chunk
