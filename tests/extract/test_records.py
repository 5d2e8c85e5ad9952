"""Rows and dicts -> Release records: grouping, conversion, and refusals that name release and field."""
from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from ddex_etl import extract
from ddex_etl.config import ExtractConfig
from ddex_etl.db import make_engine
from ddex_etl.demo.seed import seed_catalog
from ddex_etl.errors import ReleaseDataError
from ddex_etl.extract.records import CONTRACT_COLUMNS, RowOrderError, iter_release_results, release_from_dict, releases_from_rows
from ddex_etl.models import Contributor, Deal, Label, Release, Track

UTC = dt.timezone.utc
ARTISTS = [{"artist_id": 7, "name": "Zoë Lindqvist", "isni": None, "role": "MainArtist", "sequence": 1}]
DEALS = [{
    "deal_id": 3, "territories": ["Worldwide"], "commercial_model": "SubscriptionModel",
    "use_types": ["OnDemandStream", "NonInteractiveStream"], "start_date": "2024-01-05", "end_date": None,
    "updated_at": "2024-02-01T10:00:00+00:00",
}]
COMPOSER = {"artist_id": 9, "name": "山田 花子", "isni": "000000012281955X", "role": "Composer", "sequence": 1}


def row(release_id: Any = 1, track_id: Any = 10, track_number: Any = 1, **over: Any) -> dict[str, Any]:
    """One contract row (one track of a release), values as PostgreSQL gives them."""
    r: dict[str, Any] = {
        "release_id": release_id, "icpn": "4006381333931", "grid": None, "catalog_number": "AUR-1",
        "title": "夜明けの歌", "version_title": None, "release_type": "Album", "label_id": 2,
        "label_name": "Aurora Records", "label_dpid": "PADPIDA2014120301L", "genre": "Pop", "subgenre": None,
        "release_date": dt.date(2024, 1, 5), "original_release_date": None, "p_line_year": 2024,
        "p_line_text": "2024 Aurora Records", "c_line_year": 2024, "c_line_text": "2024 Aurora Records",
        "parental_warning": "NotExplicit", "language": "ja", "release_artists": ARTISTS, "deals": DEALS,
        "changed_at": dt.datetime(2024, 3, 1, 12, 0, tzinfo=UTC), "deleted_at": None,
        "cover_file": "covers/1.jpg", "cover_md5": "5d41402abc4b2a76b9719d911017c592", "cover_width": 1400,
        "cover_height": 1400, "cover_mime_type": "image/jpeg",
        "track_id": track_id, "disc_number": 1, "track_number": track_number, "isrc": "JPAB12400001",
        "track_title": f"Track {track_number}", "track_version_title": None, "duration_seconds": 237,
        "track_genre": "Pop", "track_parental_warning": "NotExplicit", "track_p_line_year": 2024,
        "track_p_line_text": "2024 Aurora Records", "audio_file": "a.flac", "audio_md5": "0" * 32,
        "track_contributors": [ARTISTS[0], COMPOSER],
    }
    r.update(over)
    return r


def test_rows_group_into_releases_with_typed_records() -> None:
    rows = [row(1, 10, 1), row(1, 11, 2), row(2, 20, 1, title="Été Éternel")]
    releases = list(releases_from_rows(rows))
    assert [r.release_id for r in releases] == [1, 2]
    first = releases[0]
    assert first.title == "夜明けの歌"
    assert first.label == Label(2, "Aurora Records", "PADPIDA2014120301L")
    assert first.artists == (Contributor(7, "Zoë Lindqvist", "MainArtist", 1, None),)
    assert first.deals == (
        Deal(3, ("Worldwide",), "SubscriptionModel", ("OnDemandStream", "NonInteractiveStream"),
             dt.date(2024, 1, 5), None, dt.datetime(2024, 2, 1, 10, 0, tzinfo=UTC)),
    )
    assert first.updated_at == dt.datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
    assert [t.track_number for t in first.tracks] == [1, 2]
    assert first.tracks[0].contributors[1] == Contributor(9, "山田 花子", "Composer", 1, "000000012281955X")
    assert releases[1].title == "Été Éternel"


def test_release_without_tracks_is_one_row_with_null_track_columns() -> None:
    nulls = {c: None for c in CONTRACT_COLUMNS[CONTRACT_COLUMNS.index("track_id"):]}
    (release,) = releases_from_rows([row(5, **nulls)])
    assert release.release_id == 5 and release.tracks == ()


def test_json_columns_as_text_or_lists_give_equal_records() -> None:
    as_lists = [row(1, 10, 1), row(1, 11, 2)]
    as_text = [
        {k: json.dumps(v) if k in ("release_artists", "deals", "track_contributors") else v for k, v in r.items()}
        for r in as_lists
    ]
    assert list(releases_from_rows(as_text)) == list(releases_from_rows(as_lists))


@pytest.mark.parametrize("absent", [None, "", math.nan])
def test_none_nan_and_empty_string_mean_absent(absent: Any) -> None:
    (release,) = releases_from_rows([row(grid=absent, subgenre=absent, track_version_title=absent,
                                         duration_seconds=absent, deals=absent, original_release_date=absent)])
    assert release.grid is None and release.subgenre is None and release.deals == ()
    assert release.original_release_date is None
    assert release.tracks[0].version_title is None and release.tracks[0].duration_seconds is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [(237, 237), (237.0, 237), (237.5, 237.5), ("237", 237), (Decimal("237"), 237), ("3:57", 237),
     ("1:00:00", 3600), ("PT3M57S", 237), ("pt1h", 3600)],
)
def test_durations_in_common_shapes(value: Any, expected: float) -> None:
    (release,) = releases_from_rows([row(duration_seconds=value)])
    assert release.tracks[0].duration_seconds == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("2024-01-05", dt.date(2024, 1, 5)), ("2024-01-05 00:00:00", dt.date(2024, 1, 5)),
     (dt.datetime(2024, 1, 5, 13, 0), dt.date(2024, 1, 5)), (pd.Timestamp("2024-01-05"), dt.date(2024, 1, 5))],
)
def test_dates_in_common_shapes(value: Any, expected: dt.date) -> None:
    (release,) = releases_from_rows([row(release_date=value)])
    assert release.release_date == expected


# (column, bad value, field named in the refusal)
BAD_VALUES = [
    ("duration_seconds", "abc", "tracks[0].duration_seconds"),
    ("duration_seconds", -5, "tracks[0].duration_seconds"),
    ("release_date", "not a date", "release_date"),
    ("release_date", "2024-02-30", "release_date"),
    ("p_line_year", "MMXXIV", "p_line_year"),
    ("track_number", 2.5, "tracks[0].track_number"),
    ("disc_number", "one", "tracks[0].disc_number"),
    ("changed_at", "yesterday", "changed_at"),
    ("deals", "{not json", "deals"),
    ("deals", '{"deal_id": 1}', "deals"),
    ("deals", [{"deal_id": 1, "start_date": "soon"}], "deals[0].start_date"),
    ("release_artists", [{"artist_id": "x", "name": "A", "role": "MainArtist"}], "release_artists[0].artist_id"),
    ("release_artists", [{"artist_id": 1, "role": "MainArtist"}], "release_artists[0].name"),
    ("track_contributors", [{"artist_id": 1, "name": "A"}], "tracks[0].contributors[0].role"),
    ("track_contributors", ["Anna"], "tracks[0].contributors[0]"),
    ("label_name", None, "label_name"),
    ("track_id", None, "tracks[0].track_id"),
    ("title", {"en": "x"}, "title"),
]


@pytest.mark.parametrize(("column", "value", "field"), BAD_VALUES, ids=[f"{c}={v!r}" for c, v, _ in BAD_VALUES])
def test_bad_value_refuses_the_release_naming_release_and_field(column: str, value: Any, field: str) -> None:
    with pytest.raises(ReleaseDataError) as info:
        list(releases_from_rows([row(42, **{column: value})]))
    err = info.value
    assert err.release_id == 42
    assert field in [p.field for p in err.problems]
    assert "release 42" in str(err) and field in str(err)
    assert all(p.fix for p in err.problems)


def test_one_bad_release_does_not_stop_the_others() -> None:
    # Release columns are read from a release's first row (they repeat on every row).
    rows = [row(1), row(2, release_date="bad"), row(2, 21, 2, duration_seconds="abc"), row(3)]
    results = list(iter_release_results(rows))
    assert [type(r).__name__ for r in results] == ["Release", "ReleaseDataError", "Release"]
    bad = results[1]
    assert isinstance(bad, ReleaseDataError)
    assert {p.field for p in bad.problems} == {"release_date", "tracks[1].duration_seconds"}
    assert [r["track_id"] for r in bad.rows] == [10, 21]  # type: ignore[attr-defined]


@pytest.mark.parametrize("release_id", [None, "R-1", math.nan])
def test_rows_without_a_usable_release_id_are_refused(release_id: Any) -> None:
    results = list(iter_release_results([row(1), row(release_id), row(3)]))
    assert isinstance(results[1], ReleaseDataError)
    assert results[1].problems[0].field == "release_id"
    assert [r.release_id for r in results if isinstance(r, Release)] == [1, 3]


def test_release_ids_that_reappear_non_contiguously_are_a_query_error() -> None:
    with pytest.raises(RowOrderError, match="release 1.*ORDER BY release_id"):
        list(releases_from_rows([row(1, 10), row(2, 20), row(1, 11, 2)]))


def test_sequences_with_a_column_list_in_any_order() -> None:
    cols = list(reversed(CONTRACT_COLUMNS))
    rows = [tuple(r[c] for c in cols) for r in (row(1, 10, 1), row(1, 11, 2))]
    assert list(releases_from_rows(rows, cols)) == list(releases_from_rows([row(1, 10, 1), row(1, 11, 2)]))


# --- one release as a nested dict


def test_release_from_dict_equals_the_rows_path() -> None:
    nested = {
        "release_id": 1, "icpn": "4006381333931", "catalog_number": "AUR-1", "title": "夜明けの歌",
        "release_type": "Album", "label": {"label_id": 2, "name": "Aurora Records", "dpid": "PADPIDA2014120301L"},
        "genre": "Pop", "release_date": "2024-01-05", "p_line_year": 2024, "p_line_text": "2024 Aurora Records",
        "c_line_year": "2024", "c_line_text": "2024 Aurora Records", "parental_warning": "NotExplicit",
        "language": "ja", "artists": ARTISTS, "deals": json.dumps(DEALS), "updated_at": "2024-03-01T12:00:00+00:00",
        "cover_image": {"file": "covers/1.jpg", "md5": "5d41402abc4b2a76b9719d911017c592", "width": 1400,
                        "height": "1400", "mime_type": "image/jpeg"},
        "tracks": [
            {"track_id": n + 9, "disc_number": 1, "track_number": n, "isrc": "JPAB12400001", "title": f"Track {n}",
             "duration_seconds": "3:57", "genre": "Pop", "parental_warning": "NotExplicit", "p_line_year": 2024,
             "p_line_text": "2024 Aurora Records", "audio_file": "a.flac", "audio_md5": "0" * 32,
             "contributors": [ARTISTS[0], COMPOSER]}
            for n in (1, 2)
        ],
    }
    expected = list(releases_from_rows([row(1, 10, 1), row(1, 11, 2)]))[0]
    assert release_from_dict(nested) == expected
    # The prefixed track keys of the row contract work too.
    prefixed = {**nested, "tracks": [{("track_" + k if k in ("title", "genre") else k): v for k, v in t.items()}
                                     for t in nested["tracks"]]}
    prefixed["tracks"] = [{**t, "track_parental_warning": t.pop("parental_warning")} for t in prefixed["tracks"]]
    assert release_from_dict(prefixed) == expected


def test_release_from_dict_refuses_bad_values_with_every_problem() -> None:
    with pytest.raises(ReleaseDataError) as info:
        release_from_dict({"release_id": 8, "title": "X", "release_date": "someday",
                           "tracks": [{"track_id": 1, "track_number": 1, "duration_seconds": "abc"}, "not a track"]})
    assert info.value.release_id == 8
    assert {p.field for p in info.value.problems} == {"release_date", "tracks[0].duration_seconds", "tracks[1]"}


def test_release_from_dict_needs_a_release_id() -> None:
    with pytest.raises(ReleaseDataError, match="release_id"):
        release_from_dict({"title": "No id"})


def test_a_release_record_passes_through() -> None:
    rel = Release(release_id=1, title="T", release_type="Single", tracks=(Track(1, 1, 1, None, "T"),))
    assert release_from_dict(rel) is rel  # type: ignore[arg-type]


# --- the same catalog through PostgreSQL rows and through a CSV read with pandas


@pytest.fixture()
def catalog_rows(db_url: str) -> Iterator[list[dict[str, Any]]]:
    engine = make_engine(db_url, pool_size=1)
    seed_catalog(engine, 40, seed=2)
    query = extract.rows_query(ExtractConfig())
    with engine.connect() as conn:
        result = conn.execute(sa.text(query.text), {"release_ids": list(range(1, 41))})
        rows = [dict(r._mapping) for r in result]
    engine.dispose()
    yield rows


@pytest.mark.parametrize("read", ["inferred dtypes", "all strings"])
def test_rows_and_a_csv_read_with_pandas_give_equal_releases(
    catalog_rows: list[dict[str, Any]], tmp_path: Path, read: str
) -> None:
    from_db = list(releases_from_rows(catalog_rows))
    assert len(from_db) == 40
    path = tmp_path / "catalog.csv"
    pd.DataFrame(catalog_rows).to_csv(path, index=False)
    if read == "all strings":
        frame = pd.read_csv(path, dtype=str)
    else:
        # Codes with leading zeros must be read as text, as with any CSV of identifiers.
        frame = pd.read_csv(path, dtype={"icpn": str, "grid": str, "catalog_number": str, "isrc": str})
    from_csv = list(releases_from_rows(frame.to_dict("records")))
    assert from_csv == from_db


@pytest.mark.parametrize(
    "territories", [["US", "GB"], '["US", "GB"]', "US,GB", "US, GB", "{US,GB}", "US GB"],
)
def test_territory_lists_in_common_shapes(territories: Any) -> None:
    deal = {**DEALS[0], "territories": territories}
    (release,) = releases_from_rows([row(deals=json.dumps([deal]) if isinstance(territories, list) else [deal])])
    assert release.deals[0].territories == ("US", "GB")
