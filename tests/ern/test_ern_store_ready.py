"""The store-ready rules, one release that would have broken each.

Each case is a release today's catalog can hold and that used to build a
message DDEX's release-profile rules refuse (or that said something false):
a tie in sequence numbers, one writer in two roles, a barcode with a wrong
check digit, a Japanese title marked as English, no cover art, ...
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest
from ern_strategies import full_album
from lxml import etree
from messages import header, without_header

from ddex_etl.ern import BuildContext, build, build_takedown
from ddex_etl.ern.validate import validate_bytes
from ddex_etl.errors import ConfigError, ReleaseDataError
from ddex_etl.models import Contributor, CoverImage, Deal, Release

VERSIONS = ("4.3", "4.2", "3.8.2")


def parse(xml: bytes) -> etree._Element:
    root = etree.fromstring(xml)
    for el in root.iter():
        if isinstance(el.tag, str) and "}" in el.tag:
            el.tag = el.tag.split("}", 1)[1]
    return root


def album(**changes: object) -> Release:
    return dataclasses.replace(full_album(n_tracks=3, discs=1), **changes)  # type: ignore[arg-type]


def problems(release: Release, version: str = "4.3") -> list[tuple[str, str, str]]:
    with pytest.raises(ReleaseDataError) as err:
        build(release, BuildContext(ern_version=version))
    return [(p.field, p.problem, p.fix) for p in err.value.problems]


# ----------------------------------------------------------------- display artists


def featured_tie() -> Release:
    """The seeded catalog's shape: main and featured artist both at sequence 1, featured with the lower id."""
    base = album()
    main = Contributor(50, "Zoë Main", "MainArtist", 1)
    guest = Contributor(2, "Ana Guest", "FeaturedArtist", 1)
    tracks = tuple(dataclasses.replace(t, contributors=(guest, main)) for t in base.tracks)
    return dataclasses.replace(base, artists=(guest, main), tracks=tracks)


@pytest.mark.parametrize("version", VERSIONS)
def test_main_artist_is_sequence_1_when_sequences_tie(version: str) -> None:
    root = parse(build(featured_tie(), BuildContext(ern_version=version)).xml)
    role = "ArtistRole" if version == "3.8.2" else "DisplayArtistRole"
    for artists in (root.findall(".//Release[1]//DisplayArtist"), root.findall(".//SoundRecording[1]//DisplayArtist")):
        by_seq = {a.get("SequenceNumber"): a.findtext(role) for a in artists}
        assert by_seq == {"1": "MainArtist", "2": "FeaturedArtist"}
    assert "Zoë Main feat. Ana Guest" in [e.text for e in root.iter("DisplayArtistName")]


def test_the_catalogs_sequence_comes_before_the_role() -> None:
    base = featured_tie()
    guest, main = base.artists
    reordered = dataclasses.replace(base, artists=(dataclasses.replace(guest, sequence=1), dataclasses.replace(main, sequence=2)))
    root = parse(build(reordered).xml)
    artists = root.find("ReleaseList/Release").findall("DisplayArtist")
    assert [a.findtext("DisplayArtistRole") for a in artists] == ["FeaturedArtist", "MainArtist"]


@pytest.mark.parametrize("version", VERSIONS)
def test_a_duet_keeps_both_main_artists_in_catalog_order(version: str, schema_dir: Path) -> None:
    # Two MainArtists: DDEX lets a label name more than one; both stay MainArtist,
    # in the catalog's order (then by name), and the display name joins them.
    base = album()
    a, b = Contributor(30, "Nora Duet", "MainArtist", 1), Contributor(8, "Ben Duet", "MainArtist", 1)
    release = dataclasses.replace(base, artists=(b, a), tracks=tuple(dataclasses.replace(t, contributors=()) for t in base.tracks))
    doc = build(release, BuildContext(ern_version=version))
    assert validate_bytes(doc.xml, schema_dir) == []
    root = parse(doc.xml)
    role = "ArtistRole" if version == "3.8.2" else "DisplayArtistRole"
    first = root.find(".//Release[1]//DisplayArtist") if version == "3.8.2" else root.find("ReleaseList/Release/DisplayArtist")
    assert first.get("SequenceNumber") == "1" and first.findtext(role) == "MainArtist"
    assert "Ben Duet & Nora Duet" in [e.text for e in root.iter("DisplayArtistName")]


# ----------------------------------------------------------------- contributors


@pytest.mark.parametrize("version", VERSIONS)
def test_composer_and_lyricist_are_one_contributor_with_two_roles(version: str, schema_dir: Path) -> None:
    base = album()
    writer = (Contributor(3, "Ana Compositora", "Composer", 1), Contributor(3, "Ana Compositora", "Lyricist", 1),
              Contributor(9, "Prod Person", "Producer", 2))
    release = dataclasses.replace(base, tracks=tuple(dataclasses.replace(t, contributors=writer) for t in base.tracks))
    doc = build(release, BuildContext(ern_version=version))
    assert validate_bytes(doc.xml, schema_dir) == []
    recording = parse(doc.xml).find("ResourceList/SoundRecording")
    if version == "3.8.2":  # composer and lyricist write the work: IndirectResourceContributor
        [person] = recording.findall(".//IndirectResourceContributor")
        assert [r.text for r in person.findall("IndirectResourceContributorRole")] == ["Composer", "Lyricist"]
    else:
        people = recording.findall("Contributor")
        refs = [c.findtext("ContributorPartyReference") for c in people]
        assert len(refs) == len(set(refs))
        [ana] = [c for c in people if c.findtext("ContributorPartyReference") == "PA3"]
        assert [r.text for r in ana.findall("Role")] == ["Composer", "Lyricist"]


# ----------------------------------------------------------------- identifiers


@pytest.mark.parametrize(
    ("field", "release", "expected"),
    [
        ("icpn", album(icpn="0094631432058"), "check digit of 009463143205 is 7"),  # EAN-13
        ("icpn", album(icpn="036000291453"), "check digit of 03600029145 is 2"),  # UPC-A
    ],
)
def test_a_wrong_check_digit_rejects_the_release_naming_the_expected_one(field: str, release: Release, expected: str) -> None:
    [(where, problem, fix)] = problems(release)
    assert where == field and expected in problem and "correct" in fix


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("isni", ["0000000121032684", "12"])
def test_a_bad_isni_is_dropped_with_a_warning_naming_the_artist_and_the_fix(version: str, isni: str, schema_dir: Path) -> None:
    """An ISNI is optional: a wrong one leaves the message, the release still ships (ISRC and ICPN still reject)."""
    bad = Contributor(1, "Saeko Shu", "MainArtist", 1, isni)
    base = album()
    release = dataclasses.replace(base, artists=(bad,), tracks=tuple(dataclasses.replace(t, contributors=()) for t in base.tracks))
    doc = build(release, BuildContext(ern_version=version))
    assert validate_bytes(doc.xml, schema_dir) == []
    assert f">{isni}<".encode() not in doc.xml and b"Saeko Shu" in doc.xml
    [warning] = [w for w in doc.warnings if ".isni" in w]
    assert "artist 1 (Saeko Shu)" in warning and "fix: correct artists.isni" in warning
    if len(isni) == 16:
        assert "check character of 000000012103268 is 3" in warning and "0000000121032683" in warning


@pytest.mark.parametrize("version", VERSIONS)
def test_a_bad_grid_or_label_dpid_is_dropped_with_a_warning(version: str, schema_dir: Path) -> None:
    from ddex_etl.models import Label

    release = album(grid="A10302B0001234567X", label=Label(7, "Nimbus & Sons Records", "PADPIDA2014021301W"))
    doc = build(release, BuildContext(ern_version=version))
    assert validate_bytes(doc.xml, schema_dir) == []
    assert b"A10302B0001234567" not in doc.xml and b"PADPIDA2014021301W" not in doc.xml
    assert any("grid:" in w and "check character of A10302B0001234567 is I" in w for w in doc.warnings), doc.warnings
    assert any("label.dpid:" in w and "label 7" in w and "PADPIDA2014021301J" in w for w in doc.warnings), doc.warnings
    good = build(album(label=Label(7, "Nimbus & Sons Records", "PADPIDA2014021301J")), BuildContext(ern_version=version))
    assert (b"PADPIDA2014021301J" in good.xml) == (version != "3.8.2")  # ERN 3 has no label party id


def test_an_isrc_needs_a_country_or_agency_prefix() -> None:
    base = album()
    release = dataclasses.replace(base, tracks=(dataclasses.replace(base.tracks[0], isrc="XQABC2400001"),) + base.tracks[1:])
    [(where, problem, _)] = problems(release)
    assert where == "tracks[0].isrc" and "'XQ'" in problem


# ----------------------------------------------------------------- languages and dates


@pytest.mark.parametrize("version", VERSIONS)
def test_a_japanese_title_is_marked_japanese(version: str, schema_dir: Path) -> None:
    doc = build(album(title="夢のララバイ", language="ja"), BuildContext(ern_version=version, language="en"))
    assert validate_bytes(doc.xml, schema_dir) == []
    root = parse(doc.xml)
    assert root.get("LanguageAndScriptCode") == "en"  # the message's own language
    tag = "Title" if version == "3.8.2" else "DisplayTitle"
    titles = [t for t in root.iter(tag) if t.findtext("TitleText") == "夢のララバイ"]
    assert titles and {t.get("LanguageAndScriptCode") for t in titles} == {"ja"}


def test_a_bad_language_code_is_refused() -> None:
    [(where, problem, _)] = problems(album(language="Japanese!"))
    assert where == "language" and "RFC 5646" in problem


@pytest.mark.parametrize("version", ("4.3", "4.2"))
def test_first_publication_date_comes_from_the_catalog(version: str) -> None:
    root = parse(build(album(original_release_date=dt.date(1994, 1, 1)), BuildContext(ern_version=version)).xml)
    assert {e.text for e in root.iter("FirstPublicationDate")} == {"1994-01-01"}
    compilation = parse(build(album(original_release_date=None, release_type="Compilation"), BuildContext(ern_version=version)).xml)
    assert list(compilation.iter("FirstPublicationDate")) == []  # earlier recordings: unknown, not invented


# ----------------------------------------------------------------- cover art


@pytest.mark.parametrize("version", VERSIONS)
def test_the_front_cover_is_an_image_linked_from_the_release(version: str, schema_dir: Path) -> None:
    doc = build(album(), BuildContext(ern_version=version))
    assert validate_bytes(doc.xml, schema_dir) == []
    root = parse(doc.xml)
    [image] = root.findall("ResourceList/Image")
    assert b"4242_cover.jpg" in doc.xml
    assert b"5d41402abc4b2a76b9719d911017c592" in doc.xml and b"<ImageCodecType>JPEG</ImageCodecType>" in doc.xml
    if version == "3.8.2":
        assert image.findtext("ImageType") == "FrontCoverImage"
        assert root.find(".//Release/ReleaseResourceReferenceList/ReleaseResourceReference[@ReleaseResourceType='SecondaryResource']").text == "A0"
    else:
        assert image.findtext("Type") == "FrontCoverImage"
        assert root.findtext("ReleaseList/Release/ResourceGroup/LinkedReleaseResourceReference") == "A0"


@pytest.mark.parametrize(
    ("cover", "field", "words"),
    [
        (None, "cover_image", "no front cover"),
        (CoverImage("c.jpg", "nothex", 10, 10, "image/jpeg"), "cover_image.md5", "MD5"),
        (CoverImage("c.bmp", "0" * 32, 10, 10, "image/bmp"), "cover_image.mime_type", "image type"),
        (CoverImage("c.jpg", "0" * 32, 0, 10, "image/jpeg"), "cover_image.width", "pixels"),
    ],
)
def test_a_release_without_usable_cover_art_is_rejected(cover: CoverImage | None, field: str, words: str) -> None:
    [(where, problem, fix)] = problems(album(cover_image=cover))
    assert where == field and words in problem + fix


# ----------------------------------------------------------------- ERN 3.8.2 profiles


def test_ern382_profiles_follow_the_release_type_and_the_deals() -> None:
    # Business profiles only for a recipient that asks for them (the attribute is optional).
    assert parse(build(album(), BuildContext(ern_version="3.8.2")).xml).get("BusinessProfileVersionId") is None
    root = parse(build(album(), BuildContext(ern_version="3.8.2", business_profiles=True)).xml)
    assert root.get("ReleaseProfileVersionId") == "CommonReleaseTypes/14/AudioAlbum"
    business = root.get("BusinessProfileVersionId").split()
    assert "CommonDealTypes/14/InteractiveSubscriptionStreamingService" in business
    assert "CommonDealTypes/14/NonInteractiveSubscriptionStreamingService" in business
    single = parse(build(album(release_type="Single"), BuildContext(ern_version="3.8.2")).xml)
    assert single.get("ReleaseProfileVersionId") == "CommonReleaseTypes/14/AudioSingle"
    ep = parse(build(album(release_type="EP"), BuildContext(ern_version="3.8.2")).xml)
    assert [t.text for t in ep.find("ReleaseList/Release").findall("ReleaseType")] == ["Album", "EP"]
    main = root.find("ReleaseList/Release/ReleaseDetailsByTerritory")
    assert [t.get("TitleType") for t in main.findall("Title")] == ["FormalTitle", "DisplayTitle"]
    track = root.findall("ReleaseList/Release")[1]
    assert track.findtext("PLine/PLineText") and track.findtext("CLine/CLineText")
    assert track.findtext("ReleaseDetailsByTerritory/ReleaseDate") == "2024-02-02"
    assert track.findtext("ReleaseDetailsByTerritory/ParentalWarningType")
    assert all(r.get("ReleaseResourceType") for r in root.iter("ReleaseResourceReference"))
    assert root.find("ResourceList/SoundRecording/SoundRecordingDetailsByTerritory/DisplayArtistName") is None


@pytest.mark.parametrize("version", VERSIONS)
def test_a_release_without_a_c_line_ships_alike_in_every_version(version: str, schema_dir: Path) -> None:
    """One policy: the configured default C line (else "<year> <label>"), with a warning, in every version."""
    release = album(c_line_text=None, c_line_year=None)
    doc = build(release, BuildContext(ern_version=version))
    assert validate_bytes(doc.xml, schema_dir) == []
    assert b"<CLineText>2024 Nimbus &amp; Sons Records</CLineText>" in doc.xml
    [warning] = [w for w in doc.warnings if "c_line_text" in w]
    assert "no C line" in warning and "transform.default_c_line" in warning
    configured = build(release, BuildContext(ern_version=version, default_c_line="2024 Aurora Group"))
    assert b"<CLineText>2024 Aurora Group</CLineText>" in configured.xml
    assert any("from transform.default_c_line" in w for w in configured.warnings)
    # A release with its own C line is left alone, and not warned about.
    own = build(album(), BuildContext(ern_version=version, default_c_line="2024 Aurora Group"))
    assert b"Aurora Group" not in own.xml and not any("c_line" in w for w in own.warnings)


# ----------------------------------------------------------------- deals: warnings, not refusals


def test_suspicious_deals_are_warned_about_by_name() -> None:
    base = album()
    deals = (
        Deal(1, ("Worldwide",), "SubscriptionModel", ("OnDemandStream",), dt.date(2024, 1, 20)),  # before 2024-02-02
        Deal(2, ("GB", "US"), "SubscriptionModel", ("OnDemandStream",), dt.date(2024, 2, 2), dt.date(2025, 1, 1)),
        Deal(3, ("FR",), "PayAsYouGoModel", ("PermanentDownload",), dt.date(2024, 2, 2), dt.date(2024, 12, 31)),
        Deal(4, ("FR",), "PayAsYouGoModel", ("PermanentDownload",), dt.date(2025, 1, 1)),  # follows deal 3: fine
    )
    doc = build(dataclasses.replace(base, deals=deals))
    warnings = "\n".join(doc.warnings)
    assert "deal 1 starts 2024-01-20, before the release date 2024-02-02" in warnings
    assert "deals 1 and 2 overlap for OnDemandStream in GB, US" in warnings
    assert "deals 3 and 4" not in warnings and len(doc.warnings) == 2


def test_generic_and_specific_use_types_together_are_warned_about() -> None:
    deals = (Deal(1, ("GB",), "SubscriptionModel", ("Stream",), dt.date(2024, 2, 2)),
             Deal(2, ("US",), "AdvertisementSupportedModel", ("OnDemandStream",), dt.date(2024, 2, 2)))
    [warning] = build(album(deals=deals)).warnings
    assert "generic use type Stream beside the specific OnDemandStream" in warning


# ----------------------------------------------------------------- the message header


def test_the_header_says_when_and_which_delivery() -> None:
    started = dt.datetime(2025, 5, 1, 2, 30, tzinfo=dt.timezone.utc)
    ctx = BuildContext(message_control="TestMessage").for_delivery("run17", started)
    doc = build(album(), ctx)
    h = header(doc.xml)
    assert h == {"MessageId": "PADPIDA0000000001O-4242-run17", "MessageCreatedDateTime": "2025-05-01T02:30:00Z",
                 "MessageControlType": "TestMessage"}
    # Same content, another delivery: a new id and time, the same body checksum.
    again = build(album(), BuildContext(message_control="TestMessage").for_delivery("run18", started + dt.timedelta(days=1)))
    assert header(again.xml)["MessageId"] != h["MessageId"] and again.checksum != doc.checksum
    assert again.body_checksum == doc.body_checksum and without_header(again.xml) == without_header(doc.xml)
    # A change that matters changes it; so does going live.
    assert build(album(title="Other"), ctx).body_checksum != doc.body_checksum
    assert build(album(), dataclasses.replace(ctx, message_control="LiveMessage")).body_checksum != doc.body_checksum
    with pytest.raises(ConfigError):
        BuildContext(message_control="Live")


def test_without_a_delivery_the_id_follows_the_content() -> None:
    a, b = build(album()), build(album())
    assert a.message_id == b.message_id and a.xml == b.xml
    assert build(album(title="Other")).message_id != a.message_id
    assert header(a.xml)["MessageCreatedDateTime"] == "2024-06-01T10:30:15Z"  # the latest change, no clock


def test_a_takedown_never_invents_a_deal() -> None:
    doc = build_takedown(album(deals=(), deleted_at=dt.datetime(2025, 3, 1, tzinfo=dt.timezone.utc)))
    assert b"<DealList>" not in doc.xml and b"Worldwide" not in doc.xml.split(b"</ReleaseList>")[1]


# ----------------------------------------------------------------- style-guide warnings (nothing rejected)


def _warned(release: Release, words: str, version: str = "4.3") -> list[str]:
    doc = build(release, BuildContext(ern_version=version))
    return [w for w in doc.warnings if words in w]


def test_various_artists_as_a_track_artist_is_warned_about() -> None:
    va = Contributor(99, "Various Artists", "MainArtist", 1)
    base = album(release_type="Compilation")
    release = dataclasses.replace(base, artists=(va,), tracks=tuple(dataclasses.replace(t, contributors=()) for t in base.tracks))
    [w] = _warned(release, "Various Artists")
    assert "track(s) 1, 2, 3" in w and "fix: credit each track's own performers" in w
    assert _warned(album(), "Various Artists") == []


def test_an_explicit_release_without_an_explicit_track_is_warned_about() -> None:
    base = album(parental_warning="Explicit")
    clean = dataclasses.replace(base, tracks=tuple(dataclasses.replace(t, parental_warning="NotExplicit") for t in base.tracks))
    [w] = _warned(clean, "marked Explicit")
    assert "fix:" in w
    assert _warned(base, "marked Explicit") == []  # track 3 of the album is explicit


def test_a_p_line_year_after_first_publication_is_warned_about() -> None:
    [w] = _warned(album(original_release_date=dt.date(1990, 5, 1)), "P line year")
    assert "1994" in w and "1990-05-01" in w
    assert _warned(album(), "P line year") == []


@pytest.mark.parametrize(
    ("release_type", "tracks", "seconds", "warned"),
    [("Single", 4, 200, True), ("Single", 3, 200, False), ("EP", 3, 200, True), ("EP", 3, 700, False),
     ("EP", 5, 200, False), ("EP", 7, 200, True), ("Album", 1, 200, False)],
)
def test_singles_and_eps_outside_their_track_count_are_warned_about(release_type: str, tracks: int, seconds: int, warned: bool) -> None:
    base = full_album(n_tracks=tracks, discs=1)
    release = dataclasses.replace(
        base, release_type=release_type, tracks=tuple(dataclasses.replace(t, duration_seconds=seconds) for t in base.tracks)
    )
    assert bool(_warned(release, "stores expect")) == warned


def test_a_subscription_deal_with_permanent_downloads_is_warned_about() -> None:
    release = album(deals=(Deal(1, ("GB",), "SubscriptionModel", ("OnDemandStream", "PermanentDownload"), dt.date(2024, 2, 2)),))
    [w] = _warned(release, "PermanentDownload under SubscriptionModel")
    assert "deal 1" in w and "fix:" in w


# ----------------------------------------------------------------- prices and file paths


@pytest.mark.parametrize("version", VERSIONS)
def test_download_deals_carry_their_price_streaming_deals_none(version: str, schema_dir: Path) -> None:
    deals = (
        Deal(1, ("GB",), "PayAsYouGoModel", ("PermanentDownload",), dt.date(2024, 2, 2), price_code="FRONTLINE"),
        Deal(2, ("US",), "PayAsYouGoModel", ("PermanentDownload",), dt.date(2024, 2, 2), wholesale_price="0.69", currency="USD"),
        Deal(3, ("DE",), "SubscriptionModel", ("OnDemandStream",), dt.date(2024, 2, 2), price_code="IGNORED"),
    )
    doc = build(album(deals=deals), BuildContext(ern_version=version))
    assert validate_bytes(doc.xml, schema_dir) == []
    root = parse(doc.xml)
    [downloads, streams] = root.findall("DealList/ReleaseDeal")
    prices = downloads.findall("Deal/DealTerms/PriceInformation")
    assert len(prices) == 2 and streams.find(".//PriceInformation") is None
    code = "PriceType" if version == "3.8.2" else "PriceCode"
    assert prices[0].findtext(code) == "FRONTLINE" and prices[0].find(code).get("Namespace")
    wholesale = prices[1].find("WholesalePricePerUnit")
    assert wholesale.text == "0.69" and wholesale.get("CurrencyCode") == "USD"
    assert any("deal 3 has a price but grants no download" in w for w in doc.warnings)


@pytest.mark.parametrize(
    ("deal", "field"),
    [(Deal(1, ("GB",), "PayAsYouGoModel", ("PermanentDownload",), wholesale_price="0.69"), "deals[0].currency"),
     (Deal(1, ("GB",), "PayAsYouGoModel", ("PermanentDownload",), wholesale_price="-1", currency="EUR"), "deals[0].wholesale_price"),
     (Deal(1, ("GB",), "PayAsYouGoModel", ("PermanentDownload",), wholesale_price="cheap", currency="EUR"), "deals[0].wholesale_price"),
     (Deal(1, ("GB",), "PayAsYouGoModel", ("PermanentDownload",), wholesale_price="0.69", currency="euro"), "deals[0].currency")],
)
def test_a_bad_price_rejects_the_release_naming_the_deal(deal: Deal, field: str) -> None:
    [(where, problem, fix)] = problems(album(deals=(deal,)))
    assert where == field and "deal 1" in problem and "deals." in fix


def test_ern382_splits_file_path_and_name(schema_dir: Path) -> None:
    base = album(cover_image=CoverImage("resources/cover.jpg", "5d41402abc4b2a76b9719d911017c592", 3000, 3000, "image/jpeg"))
    release = dataclasses.replace(base, tracks=(dataclasses.replace(base.tracks[0], audio_file="resources/01-01.wav"),) + base.tracks[1:])
    doc = build(release, BuildContext(ern_version="3.8.2"))
    assert validate_bytes(doc.xml, schema_dir) == []
    root = parse(doc.xml)
    files = [(f.findtext("FileName"), f.findtext("FilePath")) for f in root.iter("File")]
    assert ("01-01.wav", "resources/") in files and ("cover.jpg", "resources/") in files
    assert ("4242_01_002.flac", None) in files  # no folder: no FilePath


@pytest.mark.parametrize("version", VERSIONS)
def test_one_isni_on_two_artists_is_kept_for_the_first_only(version: str, schema_dir: Path) -> None:
    """Hypothesis found it (ERN 3.8.2 rules 1028-1, 1101-1: one PartyId twice among a recording's contributors)."""
    from ddex_etl.ern.identifiers import isni_check_character

    base = album()
    isni = "000000012345678" + isni_check_character("000000012345678")
    composer = Contributor(3, "Ana Compositora", "Composer", 1, isni)
    producer = Contributor(77, "Other Person", "Producer", 2, isni)
    release = dataclasses.replace(base, tracks=tuple(dataclasses.replace(t, contributors=(composer, producer)) for t in base.tracks))
    doc = build(release, BuildContext(ern_version=version))
    assert validate_bytes(doc.xml, schema_dir) == []
    [w] = [w for w in doc.warnings if "also the ISNI" in w]
    assert "artist 77 (Other Person)" in w and "fix:" in w


def test_ern382_streaming_business_profiles_leave_prices_out() -> None:
    deals = (
        Deal(1, ("GB",), "PayAsYouGoModel", ("PermanentDownload",), dt.date(2024, 2, 2), price_code="FRONTLINE"),
        Deal(2, ("GB",), "SubscriptionModel", ("OnDemandStream",), dt.date(2024, 2, 2)),
    )
    plain = build(album(deals=deals), BuildContext(ern_version="3.8.2"))
    assert b"<PriceInformation>" in plain.xml
    declared = build(album(deals=deals), BuildContext(ern_version="3.8.2", business_profiles=True))
    assert b"<PriceInformation>" not in declared.xml
    assert any("rule 2301-1" in w for w in declared.warnings)
    downloads_only = build(album(deals=deals[:1]), BuildContext(ern_version="3.8.2", business_profiles=True))
    assert b"<PriceInformation>" in downloads_only.xml


def test_the_dpid_check_character_reproduces_every_dpid_in_ddex_samples() -> None:
    import re

    from ddex_etl.dpid import dpid_problem

    samples = Path(__file__).resolve().parents[2].parent / "shared" / "ddex" / "samples"
    if not samples.is_dir():
        pytest.skip(f"DDEX's samples are not in {samples} (DDEX's files are never copied into the repo)")
    found = {m for f in samples.rglob("*.xml") for m in re.findall(r"PADPIDA[A-Za-z0-9]+", f.read_text(encoding="utf-8"))}
    real = {d for d in found if len(d) == 18}  # the samples' 16- and 17-character ids are placeholders
    assert len(real) >= 30
    assert {d: dpid_problem(d) for d in real if dpid_problem(d)} == {}
    assert dpid_problem("PADPIDA0000000001X") is not None  # the old shipped default
