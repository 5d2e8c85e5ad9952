"""Bad catalog data: never an invalid document, never a crash; a message naming release, field, value and fix."""
from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from ddex_etl.errors import ReleaseDataError
from ddex_etl.ern import BuildContext, build
from ddex_etl.models import Contributor, Release
from ern_strategies import full_album


def with_track(index: int, **changes: Any) -> Callable[[Release], Release]:
    def change(r: Release) -> Release:
        tracks = list(r.tracks)
        tracks[index] = dataclasses.replace(tracks[index], **changes)
        return dataclasses.replace(r, tracks=tuple(tracks))

    return change


def with_deal(index: int, **changes: Any) -> Callable[[Release], Release]:
    def change(r: Release) -> Release:
        deals = list(r.deals)
        deals[index] = dataclasses.replace(deals[index], **changes)
        return dataclasses.replace(r, deals=tuple(deals))

    return change


def with_release(**changes: Any) -> Callable[[Release], Release]:
    return lambda r: dataclasses.replace(r, **changes)


def with_track_contributor_role(index: int, role: str) -> Callable[[Release], Release]:
    return with_track(index, contributors=(Contributor(3, "Ana Compositora", role, 1),))


# (case, change to a good album, expected field, a word the problem/fix must contain)
CASES: list[tuple[str, Callable[[Release], Release], str, str]] = [
    ("control char, repair off", with_track(3, title="Bad\x07Title"), "tracks[3].title", "repair"),
    ("lone surrogate, repair off", with_release(title="Bad \ud800 title"), "title", "XML 1.0"),
    ("surrounding whitespace, repair off", with_release(title=" Padded "), "title", "whitespace"),
    ("missing ISRC", with_track(3, isrc=None), "tracks[3].isrc", "ISRC"),
    ("malformed ISRC", with_track(3, isrc="US-ABC-12-34567"), "tracks[3].isrc", "USABC1234567"),
    ("lowercase ISRC", with_track(0, isrc="jpto09404900"), "tracks[0].isrc", "JPTO09404900"),
    ("ISRC repeated in the release", with_track(4, isrc="JPTO09404901"), "tracks[4].isrc", "tracks[1]"),
    ("missing ICPN", with_release(icpn=None), "icpn", "ICPN"),
    ("malformed ICPN", with_release(icpn="12345"), "icpn", "12 to 14 digits"),
    ("ICPN with letters", with_release(icpn="0094631432O57"), "icpn", "digits"),
    ("negative duration", with_track(5, duration_seconds=-3), "tracks[5].duration_seconds", "positive"),
    ("zero duration", with_track(5, duration_seconds=0), "tracks[5].duration_seconds", "positive"),
    ("NaN duration", with_track(5, duration_seconds=float("nan")), "tracks[5].duration_seconds", "positive"),
    ("missing duration", with_track(5, duration_seconds=None), "tracks[5].duration_seconds", "positive"),
    ("unknown release type", with_release(release_type="Mixtape"), "release_type", "Album"),
    ("missing release type", with_release(release_type=None), "release_type", "missing"),
    ("unknown role", with_track_contributor_role(2, "Kazooist"), "tracks[2].contributors[0].role", "contributor role"),
    ("unknown release role", with_release(artists=(Contributor(1, "A", "MainArtist", 1), Contributor(2, "B", "Singer", 2))), "artists[1].role", "contributor role"),
    ("unknown commercial model", with_deal(0, commercial_model="RentToOwn"), "deals[0].commercial_model", "SubscriptionModel"),
    ("missing commercial model", with_deal(0, commercial_model=None), "deals[0].commercial_model", "SubscriptionModel"),
    ("unknown use type", with_deal(1, use_types=("Stream", "Teleport")), "deals[1].use_types[1]", "use type"),
    ("no use types", with_deal(1, use_types=()), "deals[1].use_types", "Stream"),
    ("unknown territory", with_deal(0, territories=("GB", "XX")), "deals[0].territories[1]", "territory"),
    ("no territories", with_deal(0, territories=()), "deals[0].territories", "Worldwide"),
    ("deal ends before it starts", with_deal(1, end_date=dt.date(2000, 1, 1)), "deals[1].end_date", "before"),
    ("deal with no start anywhere", lambda r: with_deal(2, start_date=None)(dataclasses.replace(r, release_date=None)), "deals[2].start_date", "release_date"),
    ("unknown parental warning", with_track(1, parental_warning="Spicy"), "tracks[1].parental_warning", "Explicit"),
    ("duplicate positions", with_track(1, disc_number=1, track_number=1), "tracks[1].track_number", "duplicate"),
    ("track number zero", with_track(1, track_number=0), "tracks[1].track_number", "1 or more"),
    ("no tracks", with_release(tracks=()), "tracks", "no tracks"),
    ("no deals", with_release(deals=()), "deals", "no deals"),
    ("missing title", with_release(title=None), "title", "missing"),
    ("empty title", with_release(title="   "), "title", "empty"),
    ("missing track title", with_track(4, title=None), "tracks[4].title", "missing"),
    ("no display artist", with_release(artists=(Contributor(3, "Ana", "Composer", 1),)), "artists", "MainArtist"),
    ("no label", with_release(label=None), "label", "label"),
    ("no genre anywhere", lambda r: dataclasses.replace(r, genre=None, tracks=tuple(dataclasses.replace(t, genre=None) for t in r.tracks)), "genre", "genre"),
    ("malformed MD5", with_track(0, audio_md5="abc"), "tracks[0].audio_md5", "MD5"),
    ("impossible year", with_release(p_line_year=20245), "p_line_year", "year"),
    ("not a date", with_release(release_date="someday"), "release_date", "YYYY-MM-DD"),
    ("number where text belongs", with_track(0, title=["a list"]), "tracks[0].title", "text"),
]


@pytest.mark.parametrize("version", ["4.3", "3.8.2"])
@pytest.mark.parametrize(("case", "change", "field", "hint"), CASES, ids=[c[0] for c in CASES])
def test_bad_data_is_named(case: str, change: Callable[[Release], Release], field: str, hint: str, version: str) -> None:
    bad = change(full_album(release_id=777))
    with pytest.raises(ReleaseDataError) as err:
        build(bad, BuildContext(ern_version=version, repair=False))
    e = err.value
    assert e.release_id == 777
    assert str(e).startswith("release 777: ")
    fields = [p.field for p in e.problems]
    assert field in fields, f"{case}: expected {field} in {fields}"
    problem = next(p for p in e.problems if p.field == field)
    assert hint.lower() in (problem.problem + " " + problem.fix).lower(), str(problem)
    assert problem.fix  # always says what would fix it


def test_every_problem_is_reported_at_once() -> None:
    bad = with_release(icpn="1", release_type="Mixtape", title=None)(with_track(0, isrc="bad")(full_album()))
    with pytest.raises(ReleaseDataError) as err:
        build(bad)
    assert {"icpn", "release_type", "title", "tracks[0].isrc"} <= {p.field for p in err.value.problems}


def test_unknown_value_lists_allowed_values_and_close_matches() -> None:
    with pytest.raises(ReleaseDataError) as err:
        build(with_deal(0, commercial_model="SubscriptionModle")(full_album()))
    problem = err.value.problems[0]
    assert problem.value == "SubscriptionModle"
    assert "did you mean SubscriptionModel" in problem.fix
    assert "PayAsYouGoModel" in problem.fix


def test_catalog_spellings_are_accepted() -> None:
    album = with_deal(0, commercial_model="subscription", use_types=("stream", "PERMANENTDOWNLOAD"), territories=("gb", "ww"))(
        dataclasses.replace(full_album(), release_type="ep")
    )
    xml = build(album).xml
    assert b"<ReleaseType>EP</ReleaseType>" in xml
    # One deal granting both: the download part on every release, the stream on the track releases only.
    assert b"<CommercialModelType>SubscriptionModel</CommercialModelType><UseType>PermanentDownload</UseType>" in xml
    assert b"<CommercialModelType>SubscriptionModel</CommercialModelType><UseType>Stream</UseType>" in xml
    assert b"<TerritoryCode>Worldwide</TerritoryCode><ValidityPeriod>" in xml


def test_version_specific_values_are_checked_per_version() -> None:
    # DubForOnDemandStreaming exists in ERN 4.3's allowed values but not in 4.2's.
    album = with_deal(0, use_types=("DubForOnDemandStreaming",))(full_album())
    build(album, BuildContext(ern_version="4.3"))
    with pytest.raises(ReleaseDataError) as err:
        build(album, BuildContext(ern_version="4.2"))
    assert err.value.problems[0].field == "deals[0].use_types[0]"


@pytest.mark.parametrize(
    "junk",
    [
        with_release(artists=(Contributor(None, None, None, None),)),  # type: ignore[arg-type]
        with_track(0, contributors=(Contributor([1], "x", "Composer", "a"),)),  # type: ignore[arg-type]
        with_track(0, disc_number="1"),
        with_deal(0, territories="GB"),
        with_deal(0, start_date=dt.datetime(2024, 1, 1, 5, 0)),
        with_release(updated_at=dt.datetime(2024, 1, 1), tracks=()),
    ],
)
def test_junk_types_never_crash(junk: Callable[[Release], Release]) -> None:
    try:
        build(junk(full_album()))
    except ReleaseDataError as e:
        assert e.problems
