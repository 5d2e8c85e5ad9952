"""The default extract reads the reference catalog table by table; it must agree with the row contract.

``sql/release_rows.sql`` (the documented contract, what a user's own query
imitates) and ``catalog_read`` (the packaged fast path) are two readings of
the same tables: the same ``Release`` records, the same refusals with the same
messages, the same change times, on clean and on broken data alike.
"""
from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from ddex_etl import extract
from ddex_etl.config import ExtractConfig
from ddex_etl.db import make_engine
from ddex_etl.demo.seed import seed_catalog
from ddex_etl.extract import catalog_read

CONTRACT = ExtractConfig(rows_query=extract.ROWS_SQL)
TABLEWISE = ExtractConfig()
RELEASES = 40


@pytest.fixture()
def engine(db_url: str) -> Iterator[sa.Engine]:
    eng = make_engine(db_url, pool_size=2)
    seed_catalog(eng, RELEASES, seed=21)
    yield eng
    eng.dispose()


def both(engine: sa.Engine, ids: list[int]) -> tuple[tuple[list, list[str]], tuple[list, list[str]]]:
    out = []
    for cfg in (CONTRACT, TABLEWISE):
        with engine.connect() as conn:
            releases, rejects = extract.fetch_releases(conn, cfg, ids)
        out.append((releases, [str(e) for e in rejects]))
    return out[0], out[1]


def execute(engine: sa.Engine, *statements: str) -> None:
    with engine.begin() as conn:
        for s in statements:
            conn.execute(sa.text(s))


def test_the_default_extract_reads_table_by_table() -> None:
    assert TABLEWISE.rows_query is None
    assert set(catalog_read.chunk_queries()) == set(catalog_read.PIECES)


def test_clean_catalog_gives_equal_records(engine: sa.Engine) -> None:
    ids = list(range(1, RELEASES + 1))
    contract, tablewise = both(engine, ids)
    assert contract[1] == tablewise[1] == []
    assert len(contract[0]) == RELEASES
    assert tablewise[0] == contract[0]
    # Not equal by accident: the records carry credits, deals and change times.
    r = tablewise[0][0]
    assert r.tracks and r.tracks[0].contributors and r.deals and r.artists and r.updated_at is not None


def test_broken_values_give_the_same_records_and_refusals(engine: sa.Engine) -> None:
    execute(
        engine,
        # refusals: a negative duration, an artist without a name, a credit without a role
        "UPDATE tracks SET duration_seconds = -5 WHERE release_id = 2 AND track_number = 1",
        "INSERT INTO artists (artist_id, name) VALUES (900001, '')",
        "INSERT INTO track_contributors (track_id, artist_id, role, sequence)"
        " SELECT min(track_id), 900001, 'Composer', 7 FROM tracks WHERE release_id = 3",
        "INSERT INTO release_artists (release_id, artist_id, role, sequence)"
        " SELECT 4, min(artist_id), '', 9 FROM artists WHERE name <> ''",
        # repairs and oddities both paths must read alike
        "INSERT INTO artists (artist_id, name, isni) VALUES (900002, 'Odd, Role\\Person', '')",
        "INSERT INTO track_contributors (track_id, artist_id, role, sequence)"
        " SELECT min(track_id), 900002, 'Mixer, Live\\Remote ', 3 FROM tracks WHERE release_id = 5",
        "UPDATE deals SET territories = ARRAY['US', NULL, ' GB '], commercial_model = ''"
        " WHERE deal_id = (SELECT min(deal_id) FROM deals WHERE release_id = 6)",
        "UPDATE releases SET title = '', genre = '', label_id = NULL WHERE release_id = 7",
        "DELETE FROM tracks WHERE release_id = 8",
        "DELETE FROM deals WHERE release_id = 9",
        "DELETE FROM release_artists WHERE release_id = 9",
        "DELETE FROM track_contributors WHERE track_id IN (SELECT track_id FROM tracks WHERE release_id = 10)",
        "UPDATE releases SET deleted_at = '2025-02-01T00:00:00Z' WHERE release_id = 11",
    )
    ids = list(range(1, 13))
    contract, tablewise = both(engine, ids)
    assert len(contract[1]) == 3 and all(f"release {rid}" in msg for rid, msg in zip((2, 3, 4), contract[1]))
    assert tablewise[1] == contract[1]
    assert tablewise[0] == contract[0]
    odd = next(r for r in tablewise[0] if r.release_id == 5)
    assert any(c.role == "Mixer, Live\\Remote " and c.name == "Odd, Role\\Person" and c.isni is None
               for c in odd.tracks[0].contributors)
    assert next(r for r in tablewise[0] if r.release_id == 8).tracks == ()


def test_a_refusal_keeps_the_input_as_plain_data(engine: sa.Engine) -> None:
    execute(engine, "UPDATE tracks SET duration_seconds = -1 WHERE release_id = 2")
    with engine.connect() as conn:
        _, rejects = extract.fetch_releases(conn, TABLEWISE, [2])
    (err,) = rejects
    rows = err.rows  # type: ignore[attr-defined]
    assert rows and rows[0]["release_id"] == 2 and rows[0]["duration_seconds"] == -1
    assert isinstance(rows[0]["track_contributors"], list) and isinstance(rows[0]["track_contributors"][0], dict)


@pytest.mark.parametrize(
    "change",
    [
        "UPDATE artists SET updated_at = '2031-01-01T00:00:00Z' WHERE artist_id = "
        "(SELECT c.artist_id FROM track_contributors c JOIN tracks t USING (track_id) WHERE t.release_id = 3 LIMIT 1)",
        "UPDATE track_contributors SET updated_at = '2031-01-01T00:00:00Z' WHERE track_id = "
        "(SELECT max(track_id) FROM tracks WHERE release_id = 3)",
        "UPDATE deals SET updated_at = '2031-01-01T00:00:00Z' WHERE release_id = 3",
        "UPDATE labels SET updated_at = '2031-01-01T00:00:00Z' WHERE label_id = (SELECT label_id FROM releases WHERE release_id = 3)",
        "UPDATE release_artists SET updated_at = '2031-01-01T00:00:00Z' WHERE release_id = 3",
    ],
)
def test_a_change_anywhere_in_a_release_moves_its_change_time(engine: sa.Engine, change: str) -> None:
    execute(engine, change)
    contract, tablewise = both(engine, [3])
    assert tablewise[0][0].updated_at.year == 2031
    assert tablewise[0] == contract[0]


def test_queries_see_one_snapshot(engine: sa.Engine) -> None:
    """The pieces are read in one REPEATABLE READ, READ ONLY transaction of their own."""
    seen: list[str] = []
    with engine.connect() as conn:
        dbapi = conn.connection.driver_connection
        original = catalog_read.fetch_chunk

        def spy(d, ids):  # type: ignore[no-untyped-def]
            seen.append(d.execute("SHOW transaction_isolation").fetchone()[0])
            seen.append(d.execute("SHOW transaction_read_only").fetchone()[0])
            return original(d, ids)

        catalog_read.fetch_chunk = spy  # type: ignore[assignment]
        try:
            releases, _ = extract.fetch_releases(conn, TABLEWISE, [1, 2])
        finally:
            catalog_read.fetch_chunk = original  # type: ignore[assignment]
        assert dbapi is not None
    assert seen == ["repeatable read", "on"]
    assert [r.release_id for r in releases] == [1, 2]


@pytest.mark.parametrize(
    "roles",
    [["MainArtist"], ["Composer", "Lyricist"], ["A,B", "C\\"], ["\\", ","], ["with space", "", "x\\,y"]],
)
def test_credit_texts_undo_the_query_escaping(roles: list[str]) -> None:
    """tracks.sql escapes '\\' and ',' in roles; the parser must give every role back unchanged."""
    def escape(role: str) -> str:
        return role.replace("\\", "\\\\").replace(",", "\\,")

    text = ",".join(f"{100 + i} {len(roles) - i} {escape(r)}" for i, r in enumerate(roles))
    expected = sorted((len(roles) - i, r, 100 + i) for i, r in enumerate(roles))
    assert catalog_read._parse_credits(text) == expected
