"""The reference catalog and its demo data, on a real PostgreSQL."""
from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from ddex_etl.db import make_engine
from ddex_etl.demo.seed import TABLES, create_catalog, ean13, grid, isni, seed_catalog

ISRC = re.compile(r"^[A-Z]{2}[A-Z0-9]{3}[0-9]{7}$")


@pytest.fixture()
def engine(db_url: str) -> Iterator[sa.Engine]:
    eng = make_engine(db_url, pool_size=2)
    yield eng
    eng.dispose()


def checksum(engine: sa.Engine) -> dict[str, str]:
    """md5 of every table's rows in key order: equal checksums mean equal catalogs."""
    keys = {
        "labels": "label_id", "artists": "artist_id", "releases": "release_id",
        "release_artists": "release_id, artist_id, role", "tracks": "track_id",
        "track_contributors": "track_id, artist_id, role", "deals": "deal_id",
    }
    with engine.connect() as conn:
        return {
            t: conn.execute(sa.text(f"SELECT md5(coalesce(string_agg(x::text, E'\\n' ORDER BY {k}), '')) FROM {t} x"))
            .scalar_one()
            for t, k in keys.items()
        }


def scalar(engine: sa.Engine, sql: str) -> object:
    with engine.connect() as conn:
        return conn.execute(sa.text(sql)).scalar()


def test_create_catalog_is_idempotent(engine: sa.Engine) -> None:
    for _ in range(2):
        with engine.begin() as conn:
            create_catalog(conn)
    with engine.connect() as conn:
        found = {
            (r.table_name, r.column_name)
            for r in conn.execute(sa.text(
                "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public'"
            ))
        }
    for table in TABLES:
        assert (table, "updated_at") in found, table
    assert ("releases", "deleted_at") in found


def test_same_seed_same_rows_other_seed_other_rows(engine: sa.Engine) -> None:
    first = seed_catalog(engine, 120, seed=3)
    a = checksum(engine)
    again = seed_catalog(engine, 120, seed=3, reset=True)
    assert checksum(engine) == a
    assert (again.releases, again.tracks, again.deals) == (first.releases, first.tracks, first.deals)
    seed_catalog(engine, 120, seed=4, reset=True)
    assert checksum(engine)["tracks"] != a["tracks"]


def test_append_continues_after_the_highest_ids_deterministically(engine: sa.Engine) -> None:
    seed_catalog(engine, 40, seed=5)
    second = seed_catalog(engine, 30, seed=5)
    assert (second.first_release_id, second.last_release_id) == (41, 70)
    assert scalar(engine, "SELECT count(*) FROM releases") == 70
    a = checksum(engine)
    seed_catalog(engine, 40, seed=5, reset=True)
    seed_catalog(engine, 30, seed=5)
    assert checksum(engine) == a


def test_report_counts_what_was_written(engine: sa.Engine) -> None:
    report = seed_catalog(engine, 80, seed=1)
    assert report.releases == scalar(engine, "SELECT count(*) FROM releases") == 80
    assert report.tracks == scalar(engine, "SELECT count(*) FROM tracks")
    assert report.deals == scalar(engine, "SELECT count(*) FROM deals")
    assert report.artists == scalar(engine, "SELECT count(*) FROM artists")
    # About twelve tracks per release on average, like the benchmark's catalog.
    assert 8 <= report.tracks / report.releases <= 16


@pytest.fixture()
def demo(engine: sa.Engine) -> sa.Engine:
    seed_catalog(engine, 300, seed=11)
    return engine


VARIETY = [
    ("albums", "SELECT count(*) FROM releases WHERE release_type = 'Album'"),
    ("singles", "SELECT count(*) FROM releases WHERE release_type = 'Single'"),
    ("EPs", "SELECT count(*) FROM releases WHERE release_type = 'EP'"),
    ("compilations", "SELECT count(*) FROM releases WHERE release_type = 'Compilation'"),
    ("multi-disc sets", "SELECT count(DISTINCT release_id) FROM tracks WHERE disc_number > 1"),
    ("compilations by various artists, each track its own main artist",
     "SELECT count(*) FROM releases r JOIN release_artists ra USING (release_id) JOIN artists a USING (artist_id) "
     "WHERE r.release_type = 'Compilation' AND a.name = 'Various Artists' AND "
     "(SELECT count(DISTINCT c.artist_id) FROM tracks t JOIN track_contributors c USING (track_id) "
     " WHERE t.release_id = r.release_id AND c.role = 'MainArtist') > 3"),
    ("featured artists on tracks", "SELECT count(*) FROM track_contributors WHERE role = 'FeaturedArtist'"),
    ("featured artists on releases", "SELECT count(*) FROM release_artists WHERE role = 'FeaturedArtist'"),
    ("composers", "SELECT count(*) FROM track_contributors WHERE role = 'Composer'"),
    ("lyricists", "SELECT count(*) FROM track_contributors WHERE role = 'Lyricist'"),
    ("producers", "SELECT count(*) FROM track_contributors WHERE role = 'Producer'"),
    ("Japanese titles", r"SELECT count(*) FROM releases WHERE title ~ '[\u3040-\u30ff\u4e00-\u9fff]'"),
    ("accented titles", "SELECT count(*) FROM releases WHERE title ~ '[éèçñãõüöäÉ]'"),
    ("emoji titles", r"SELECT count(*) FROM tracks WHERE title ~ '[\U0001F300-\U0001FAFF]'"),
    ("releases with several deals", "SELECT count(*) FROM (SELECT release_id FROM deals GROUP BY 1 HAVING count(*) > 1) x"),
    ("deals with several territories", "SELECT count(*) FROM deals WHERE cardinality(territories) > 1"),
    ("worldwide deals", "SELECT count(*) FROM deals WHERE 'Worldwide' = ANY (territories)"),
    ("subscription deals", "SELECT count(*) FROM deals WHERE commercial_model = 'SubscriptionModel'"),
    ("ad-supported deals", "SELECT count(*) FROM deals WHERE commercial_model = 'AdvertisementSupportedModel'"),
    ("pay-as-you-go deals", "SELECT count(*) FROM deals WHERE commercial_model = 'PayAsYouGoModel'"),
    ("download deals", "SELECT count(*) FROM deals WHERE 'PermanentDownload' = ANY (use_types)"),
    ("explicit releases", "SELECT count(*) FROM releases WHERE parental_warning = 'Explicit'"),
    ("not-explicit releases", "SELECT count(*) FROM releases WHERE parental_warning = 'NotExplicit'"),
    ("releases with a GRid", "SELECT count(*) FROM releases WHERE grid IS NOT NULL"),
    ("releases without a GRid", "SELECT count(*) FROM releases WHERE grid IS NULL"),
    ("artists with an ISNI", "SELECT count(*) FROM artists WHERE isni IS NOT NULL"),
    ("labels with a DPID", "SELECT count(*) FROM labels WHERE dpid IS NOT NULL"),
    ("remasters with an original release date", "SELECT count(*) FROM releases WHERE original_release_date IS NOT NULL"),
]


def test_demo_catalog_has_variety_and_valid_identifiers(demo: sa.Engine) -> None:
    # One seeded catalog for the whole table of cases (seeding per case would be slow).
    missing = [what for what, sql in VARIETY if not scalar(demo, sql)]
    assert not missing, f"not in 300 demo releases: {', '.join(missing)}"
    with demo.connect() as conn:
        isrcs = [r[0] for r in conn.execute(sa.text("SELECT isrc FROM tracks"))]
        icpns = [r[0] for r in conn.execute(sa.text("SELECT icpn FROM releases"))]
        grids = [r[0] for r in conn.execute(sa.text("SELECT grid FROM releases WHERE grid IS NOT NULL"))]
        isnis = [r[0] for r in conn.execute(sa.text("SELECT isni FROM artists WHERE isni IS NOT NULL"))]
        md5s = [r[0] for r in conn.execute(sa.text("SELECT audio_md5 FROM tracks"))]
        dpids = [r[0] for r in conn.execute(sa.text("SELECT dpid FROM labels WHERE dpid IS NOT NULL"))]
    assert all(ISRC.match(i) for i in isrcs)
    assert len(set(isrcs)) == len(isrcs), "ISRCs are unique"
    assert all(len(i) == 13 and ean13(i[:12]) == i for i in icpns)
    assert all(len(g) == 18 and grid(g[:17]) == g for g in grids)
    assert all(len(i) == 16 and isni(i[:15]) == i for i in isnis)
    assert all(re.fullmatch(r"[0-9a-f]{32}", m) for m in md5s)
    assert all(re.fullmatch(r"PADPIDA[A-Za-z0-9]+", d) for d in dpids)
    # Timestamps come from the seed, not the clock.
    newest = scalar(demo, "SELECT max(updated_at) FROM tracks")
    oldest = scalar(demo, "SELECT min(updated_at) FROM releases")
    assert str(oldest) >= "2024-01-01" and str(newest) < "2026-01-01"


@pytest.mark.parametrize(
    ("function", "body", "expected"),
    [
        (ean13, "400638133393", "4006381333931"),  # GS1's worked example
        (ean13, "003600029145", "0036000291452"),  # UPC-A 036000291452 as EAN-13
        (isni, "000000012281955", "000000012281955X"),  # X check character
        (grid, "A12425GABC1234002", "A12425GABC1234002M"),  # the GRid standard's example
    ],
)
def test_check_digits(function, body: str, expected: str) -> None:  # type: ignore[no-untyped-def]
    assert function(body) == expected


def test_create_catalog_commits_with_the_callers_commit(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        create_catalog(conn)
        conn.commit()
    assert scalar(engine, "SELECT to_regclass('track_contributors') IS NOT NULL") is True


def test_zero_releases_creates_or_empties_the_catalog_only(engine: sa.Engine) -> None:
    seed_catalog(engine, 10, seed=1)
    report = seed_catalog(engine, 0, reset=True)
    assert (report.releases, report.tracks, report.artists) == (0, 0, 0)
    assert scalar(engine, "SELECT count(*) FROM artists") == 0
