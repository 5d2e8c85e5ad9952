"""A catalog of its own shape (own schema, table and column names), read through the three queries of
docs/column-contract.md alone: a full run, an incremental run with a takedown, and a quiet night."""
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from ddex_etl.cli import cli
from ddex_etl.demo.seed import ean13

DOCS = Path(__file__).resolve().parents[2] / "docs" / "column-contract.md"

CATALOG = """
CREATE SCHEMA label;
CREATE TABLE label.imprint (
    imprint_no bigint PRIMARY KEY, imprint_name text NOT NULL, modified timestamptz NOT NULL DEFAULT now());
CREATE TABLE label.performer (
    performer_no bigint PRIMARY KEY, stage_name text NOT NULL, modified timestamptz NOT NULL DEFAULT now());
CREATE TABLE label.album (
    album_no bigint PRIMARY KEY, barcode text NOT NULL, headline text NOT NULL, format text NOT NULL,
    imprint_no bigint NOT NULL REFERENCES label.imprint, performer_no bigint NOT NULL REFERENCES label.performer,
    style text NOT NULL, out_on date NOT NULL,
    modified timestamptz NOT NULL DEFAULT now(), withdrawn timestamptz,
    artwork text NOT NULL, artwork_md5 text NOT NULL);
CREATE TABLE label.song (
    song_no bigint PRIMARY KEY, album_no bigint NOT NULL REFERENCES label.album, side integer NOT NULL,
    pos integer NOT NULL, isrc_code text NOT NULL, headline text NOT NULL, length_s integer NOT NULL,
    modified timestamptz NOT NULL DEFAULT now());
CREATE TABLE label.offer (
    offer_no bigint PRIMARY KEY, album_no bigint NOT NULL REFERENCES label.album, region text NOT NULL,
    model text NOT NULL, usage text NOT NULL, from_day date NOT NULL, until_day date,
    modified timestamptz NOT NULL DEFAULT now());
"""

# Written from docs/column-contract.md, sections 1, 2 and 3.
KEYS_SQL = """
SELECT album_no AS release_id FROM label.album
WHERE album_no > :after AND withdrawn IS NULL
ORDER BY album_no
LIMIT :limit
"""

ROWS_SQL = """
SELECT a.album_no AS release_id, a.barcode AS icpn, a.headline AS title, a.format AS release_type,
       i.imprint_no AS label_id, i.imprint_name AS label_name, a.style AS genre, a.out_on AS release_date,
       json_build_array(json_build_object('artist_id', p.performer_no, 'name', p.stage_name,
                                          'role', 'MainArtist', 'sequence', 1)) AS release_artists,
       (SELECT json_agg(json_build_object('deal_id', o.offer_no, 'territories', json_build_array(o.region),
                                          'commercial_model', o.model, 'use_types', json_build_array(o.usage),
                                          'start_date', o.from_day, 'end_date', o.until_day) ORDER BY o.offer_no)
        FROM label.offer o WHERE o.album_no = a.album_no) AS deals,
       GREATEST(a.modified, i.modified, p.modified,
                (SELECT max(s2.modified) FROM label.song s2 WHERE s2.album_no = a.album_no),
                (SELECT max(o2.modified) FROM label.offer o2 WHERE o2.album_no = a.album_no)) AS changed_at,
       a.withdrawn AS deleted_at,
       a.artwork AS cover_file, a.artwork_md5 AS cover_md5, 'image/jpeg' AS cover_mime_type,
       s.song_no AS track_id, s.side AS disc_number, s.pos AS track_number, s.isrc_code AS isrc,
       s.headline AS track_title, s.length_s AS duration_seconds,
       json_build_array(json_build_object('artist_id', p.performer_no, 'name', p.stage_name,
                                          'role', 'MainArtist', 'sequence', 1)) AS track_contributors
FROM label.album a
JOIN label.imprint i ON i.imprint_no = a.imprint_no
JOIN label.performer p ON p.performer_no = a.performer_no
LEFT JOIN label.song s ON s.album_no = a.album_no
WHERE a.album_no = ANY(:release_ids)
ORDER BY a.album_no, s.side, s.pos
"""

CHANGED_KEYS_SQL = """
WITH changed AS (
    SELECT album_no AS release_id FROM label.album WHERE modified > :since AND modified <= :until
    UNION
    SELECT album_no FROM label.album WHERE withdrawn > :since AND withdrawn <= :until
    UNION
    SELECT album_no FROM label.song WHERE modified > :since AND modified <= :until
    UNION
    SELECT album_no FROM label.offer WHERE modified > :since AND modified <= :until
    UNION
    SELECT a.album_no FROM label.album a JOIN label.performer p ON p.performer_no = a.performer_no
    WHERE p.modified > :since AND p.modified <= :until
    UNION
    SELECT a.album_no FROM label.album a JOIN label.imprint i ON i.imprint_no = a.imprint_no
    WHERE i.modified > :since AND i.modified <= :until
    UNION
    SELECT o.album_no FROM label.offer o GROUP BY o.album_no
    HAVING bool_and(o.until_day IS NOT NULL)
       AND max(o.until_day) >= CAST(:since AS timestamptz)::date
       AND max(o.until_day) < CAST(:until AS timestamptz)::date
)
SELECT release_id FROM changed
WHERE release_id > :after
ORDER BY release_id
LIMIT :limit
"""

ALBUMS = 8


@pytest.fixture()
def catalog(db_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(CATALOG)
        conn.execute(sa.text("INSERT INTO label.imprint VALUES (1, 'Harbour Tapes', now() - interval '1 day')"))
        for n in range(1, ALBUMS + 1):
            conn.execute(
                sa.text("INSERT INTO label.performer VALUES (:n, :name, now() - interval '1 day')"),
                {"n": n, "name": f"Performer {n}"},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO label.album VALUES (:n, :upc, :title, 'Album', 1, :n, 'Jazz', DATE '2025-03-01',"
                    " now() - interval '1 day', NULL, :art, md5(:art))"
                ),
                {"n": n, "upc": ean13(f"{860000000000 + n:012d}"), "title": f"Album {n}", "art": f"covers/{n}.jpg"},
            )
            for pos in (1, 2):
                conn.execute(
                    sa.text(
                        "INSERT INTO label.song VALUES (:id, :n, 1, :pos, :isrc, :title, 200, now() - interval '1 day')"
                    ),
                    {"id": n * 10 + pos, "n": n, "pos": pos, "isrc": f"GBHTP25{n:03d}{pos:02d}", "title": f"Song {n}.{pos}"},
                )
            conn.execute(
                sa.text(
                    "INSERT INTO label.offer VALUES (:n, :n, 'Worldwide', 'SubscriptionModel', 'OnDemandStream',"
                    " DATE '2025-03-01', NULL, now() - interval '1 day')"
                ),
                {"n": n},
            )
    yield engine
    engine.dispose()


def etl(args: list[str]) -> Result:
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def sql(engine: sa.Engine, text: str, **params: Any) -> list[Any]:
    with engine.begin() as conn:
        result = conn.execute(sa.text(text), params)
        return list(result) if result.returns_rows else []


def test_the_docs_name_every_parameter_of_the_changed_keys_query() -> None:
    text = DOCS.read_text(encoding="utf-8")
    section = text.split("## 3. The changed-keys query")[1].split("\n## ")[0]
    for name in (":since", ":until", ":after", ":limit", "changed_keys_query", "takedown"):
        assert name in section, f"docs/column-contract.md section 3 does not mention {name}"


def test_full_incremental_and_takedowns_on_a_catalog_of_its_own_shape(
    catalog: sa.Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("ETL_") and not name.startswith("ETL_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ETL_DATABASE_URL", db_url)
    (tmp_path / "sql").mkdir()
    (tmp_path / "sql" / "keys.sql").write_text(KEYS_SQL)
    (tmp_path / "sql" / "rows.sql").write_text(ROWS_SQL)
    (tmp_path / "sql" / "changed.sql").write_text(CHANGED_KEYS_SQL)
    (tmp_path / "etl.toml").write_text(
        '[extract]\nchunk_size = 3\nkeys_query = "sql/keys.sql"\nrows_query = "sql/rows.sql"\n'
        'changed_keys_query = "sql/changed.sql"\n'
        '[load]\ntarget = "table"\n[run]\nworkers = 1\nretry_delay = 0.01\nwatermark_lag_seconds = 0\n'
    )
    checked = etl(["config", "check"])
    assert checked.exit_code == 0, checked.output
    assert 'changed_keys_query = "' in checked.stdout

    full = etl(["run", "--full", "--no-progress", "--json"])
    assert full.exit_code == 0, full.output
    summary = json.loads(full.stdout)
    assert (summary["mode"], summary["built"], summary["rejected"]) == ("full", ALBUMS, 0)

    # What changes overnight: a song title (album 2), a performer's name (album 5), a withdrawal
    # (album 3), and album 7's only offer ending yesterday, entered long ago (only the date crossed).
    sql(catalog, "UPDATE label.song SET headline = 'Song 2.1 (remastered)', modified = now() WHERE song_no = 21")
    sql(catalog, "UPDATE label.performer SET stage_name = 'The Fifth', modified = now() WHERE performer_no = 5")
    sql(catalog, "UPDATE label.album SET withdrawn = now(), modified = now() WHERE album_no = 3")
    sql(catalog, "UPDATE label.offer SET until_day = current_date - 1 WHERE album_no = 7")
    # The full run's window ended three days ago, so yesterday's end date lies in the next window.
    sql(catalog, "UPDATE ddex_etl.runs SET watermark_to = now() - interval '3 days' WHERE id = :r",
        r=summary["run_id"])
    sql(catalog, "UPDATE label.album SET modified = now() - interval '4 days' WHERE album_no NOT IN (3)")
    sql(catalog, "UPDATE label.song SET modified = now() - interval '4 days' WHERE song_no <> 21")
    sql(catalog, "UPDATE label.performer SET modified = now() - interval '4 days' WHERE performer_no <> 5")
    sql(catalog, "UPDATE label.imprint SET modified = now() - interval '4 days'")
    sql(catalog, "UPDATE label.offer SET modified = now() - interval '4 days'")

    inc = etl(["run", "--incremental", "--no-progress", "--json"])
    assert inc.exit_code == 0, inc.output
    summary = json.loads(inc.stdout)
    assert {k: summary[k] for k in ("mode", "built", "takedowns", "rejected")} == {
        "mode": "incremental", "built": 2, "takedowns": 2, "rejected": 0,
    }
    kinds = {
        int(r[0]): r[1]
        for r in sql(catalog, "SELECT release_id, kind FROM ddex_etl.documents WHERE run_id = :r", r=summary["run_id"])
    }
    assert kinds == {2: "NewReleaseMessage", 5: "NewReleaseMessage", 3: "TakeDown", 7: "TakeDown"}
    xml = sql(catalog, "SELECT document FROM ddex_etl.documents WHERE release_id = 2")[0][0]
    assert "Song 2.1 (remastered)" in (xml if isinstance(xml, str) else bytes(xml).decode())

    quiet = etl(["run", "--incremental", "--no-progress", "--json"])
    assert quiet.exit_code == 0, quiet.output
    summary = json.loads(quiet.stdout)
    assert (summary["built"], summary["takedowns"], summary["unchanged"]) == (0, 0, 0)
