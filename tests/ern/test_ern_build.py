"""The ERN builder on complete albums: schema-valid for every version, content where it belongs, deterministic."""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from ern_strategies import full_album
from lxml import etree

from ddex_etl.config import TransformConfig
from ddex_etl.ern import BuildContext, build, build_takedown, context_from_config
from ddex_etl.ern.validate import validate_bytes
from ddex_etl.errors import ConfigError
from ddex_etl.models import Contributor, Party

VERSIONS = ["4.3", "4.2", "3.8.2"]
NS = {"4.3": "http://ddex.net/xml/ern/43", "4.2": "http://ddex.net/xml/ern/42", "3.8.2": "http://ddex.net/xml/ern/382"}


def parse(xml: bytes) -> etree._Element:
    return etree.fromstring(xml)


def texts(root: etree._Element, path: str) -> list[str]:
    return [e.text or "" for e in root.iterfind(path)]


@pytest.mark.parametrize("version", VERSIONS)
def test_full_album_is_valid(version: str, schema_dir: Path) -> None:
    doc = build(full_album(), BuildContext(ern_version=version))
    assert validate_bytes(doc.xml, schema_dir, version) == []
    assert doc.xml.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    assert doc.checksum == hashlib.sha256(doc.xml).hexdigest()
    assert doc.kind == "NewReleaseMessage" and doc.ern_version == version and doc.release_id == 4242
    assert doc.warnings == ()
    root = parse(doc.xml)
    assert root.tag == f"{{{NS[version]}}}NewReleaseMessage"
    assert texts(root, "MessageHeader/MessageId") == [doc.message_id]
    assert texts(root, "MessageHeader/MessageCreatedDateTime") == ["2024-06-01T10:30:15Z"]
    assert texts(root, "MessageHeader/MessageSender/PartyId") == ["PADPIDA0000000001O"]
    assert texts(root, "MessageHeader/MessageRecipient/PartyName/FullName") == ["Demo Store"]


def test_ern43_root_and_parties() -> None:
    root = parse(build(full_album()).xml)
    assert root.get("AvsVersionId") == "3"
    assert root.get("LanguageAndScriptCode") == "en"
    assert root.get("ReleaseProfileVersionId") == "Audio"
    names = texts(root, "PartyList/Party/PartyName/FullName")
    # Every artist, contributor and label once.
    assert sorted(names) == sorted(
        ["Saeko Shu", "Les Étoiles", "Prod Person", "Ana Compositora", "Léa Lyric", "DJ Feature", "Nimbus & Sons Records"]
    )
    refs = set(texts(root, "PartyList/Party/PartyReference"))
    used = set(texts(root, ".//ArtistPartyReference")) | set(texts(root, ".//ContributorPartyReference"))
    used |= set(texts(root, ".//ReleaseLabelReference"))
    assert used == refs
    assert texts(root, "PartyList/Party[PartyReference='PA1']/PartyId/ISNI") == ["0000000121032683"]
    assert texts(root, "PartyList/Party[PartyReference='PL7']/PartyId/DPID") == ["PADPIDA2014021301J"]


def test_ern43_sound_recordings() -> None:
    root = parse(build(full_album()).xml)
    recs = root.findall("ResourceList/SoundRecording")
    assert len(recs) == 12
    first = recs[0]
    assert texts(first, "SoundRecordingEdition/ResourceId/ISRC") == ["JPTO09404900"]
    assert texts(first, "DisplayTitleText") == ["Yume no Lullaby 1 (Remastered 2024)"]
    assert texts(first, "DisplayTitle/TitleText") == ["Yume no Lullaby 1"]
    assert texts(first, "DisplayTitle/SubTitle") == ["Remastered 2024"]
    assert texts(first, "Duration") == ["PT3M0S"]
    # No track artists: the release's display artists are used.
    assert texts(first, "DisplayArtistName") == ["Saeko Shu & Les Étoiles"]
    assert [(c.findtext("ContributorPartyReference"), c.findtext("Role")) for c in first.iterfind("Contributor")] == [
        ("PA3", "Composer"),
        ("PA4", "Lyricist"),
        ("PA9", "StudioProducer"),  # release-level producer credited on every recording
    ]
    assert texts(first, "ParentalWarningType") == ["NotExplicit"]  # from the release
    assert texts(first, "SoundRecordingEdition/PLine/PLineText") == ["(P) 1994 Nimbus & Sons"]
    assert texts(first, "SoundRecordingEdition/TechnicalDetails/DeliveryFile/File/URI") == ["4242_01_001.flac"]
    assert texts(first, "SoundRecordingEdition/TechnicalDetails/DeliveryFile/File/HashSum/HashSumValue") == ["0" * 32]
    second = recs[1]
    assert texts(second, "DisplayArtistName") == ["Saeko Shu feat. DJ Feature"]
    assert [(a.findtext("ArtistPartyReference"), a.findtext("DisplayArtistRole")) for a in second.iterfind("DisplayArtist")] == [
        ("PA1", "MainArtist"),
        ("PA5", "FeaturedArtist"),
    ]
    assert texts(recs[2], "ParentalWarningType") == ["Explicit"]
    assert texts(recs[4], "DisplayTitle/TitleText") == ["Rock & Roll <Live> 5"]


def test_ern43_release_and_deals() -> None:
    root = parse(build(full_album()).xml)
    rel = root.find("ReleaseList/Release")
    assert texts(rel, "ReleaseId/ICPN") == ["0094631432057"]
    assert texts(rel, "ReleaseId/GRid") == ["A10302B0001234567I"]
    assert texts(rel, "ReleaseId/CatalogNumber") == ["NIM-001"]
    assert texts(rel, "ReleaseType") == ["Album"]
    assert texts(rel, "Genre/GenreText") == ["Pop"] and texts(rel, "Genre/SubGenre") == ["J-Pop"]
    assert texts(rel, "ReleaseDate") == ["2024-02-02"] and texts(rel, "OriginalReleaseDate") == ["1994-01-01"]
    assert texts(rel, "CLine/CLineText") == ["(C) 2024 Nimbus & Sons"]
    assert texts(rel, "Duration") == ["PT43M42S"]
    discs = rel.findall("ResourceGroup/ResourceGroup")
    assert [d.findtext("SequenceNumber") for d in discs] == ["1", "2"]
    assert texts(discs[1], "ResourceGroupContentItem/ReleaseResourceReference") == [f"A{i}" for i in range(7, 13)]
    assert texts(discs[1], "ResourceGroupContentItem/SequenceNumber") == [str(i) for i in range(1, 7)]
    tr = root.findall("ReleaseList/TrackRelease")
    assert len(tr) == 12
    assert texts(tr[1], "Genre/GenreText") == ["J-Pop"] and texts(tr[0], "Genre/GenreText") == ["Pop"]
    # Downloads on the main release and the track releases; streaming on the track releases only.
    downloads, streams = root.findall("DealList/ReleaseDeal")
    assert texts(downloads, "DealReleaseReference") == ["R0"] + [f"R{i}" for i in range(1, 13)]
    assert texts(downloads, ".//UseType") == ["PermanentDownload"]
    # ERN 4.3 deprecates StartDate/EndDate: DDEX's inclusive days as date-times.
    assert texts(downloads, ".//StartDateTime") == ["2024-02-02T00:00:00"]
    assert texts(downloads, ".//EndDateTime") == ["2030-12-31T23:59:59"]
    assert downloads.find(".//StartDate") is None and downloads.find(".//EndDate") is None
    assert texts(streams, "DealReleaseReference") == [f"R{i}" for i in range(1, 13)]
    first, third = streams.findall("Deal")
    assert texts(first, ".//TerritoryCode") == ["GB", "JP", "US"]
    assert texts(first, ".//UseType") == ["OnDemandStream", "NonInteractiveStream"]
    # A deal without a start date starts on the release date.
    assert texts(third, ".//StartDateTime") == ["2024-02-02T00:00:00"]
    assert texts(third, ".//CommercialModelType") == ["AdvertisementSupportedModel"]


def test_ern42_differs_where_the_schema_does() -> None:
    root = parse(build(full_album(), BuildContext(ern_version="4.2")).xml)
    assert root.get("AvsVersionId") is None
    rec = root.find("ResourceList/SoundRecording")
    assert texts(rec, "ResourceId/ISRC") == ["JPTO09404900"]
    assert texts(rec, "TechnicalDetails/File/URI") == ["4242_01_001.flac"]


def test_ern382_structure() -> None:
    root = parse(build(full_album(), BuildContext(ern_version="3.8.2")).xml)
    assert root.get("MessageSchemaVersionId") == "ern/382"
    assert root.find("PartyList") is None
    rec = root.find("ResourceList/SoundRecording")
    assert texts(rec, "SoundRecordingId/ISRC") == ["JPTO09404900"]
    details = rec.find("SoundRecordingDetailsByTerritory")
    assert texts(details, "IndirectResourceContributor/IndirectResourceContributorRole") == ["Composer", "Lyricist"]
    assert texts(details, "ResourceContributor/ResourceContributorRole") == ["Producer"]
    assert texts(details, "DisplayArtist/PartyName/FullName") == ["Saeko Shu", "Les Étoiles"]
    assert texts(details, "DisplayArtist/PartyId") == ["0000000121032683"]
    assert texts(details, "TechnicalSoundRecordingDetails/File/HashSum/HashSumAlgorithmType") == ["MD5"]
    releases = root.findall("ReleaseList/Release")
    assert len(releases) == 13 and releases[0].get("IsMainRelease") == "true"
    assert texts(releases[1], "ReleaseType") == ["TrackRelease"]
    downloads, streams = root.findall("DealList/ReleaseDeal")
    assert texts(downloads, "DealReleaseReference")[0] == "R0" and texts(downloads, ".//UseType") == ["PermanentDownload"]
    assert "R0" not in texts(streams, "DealReleaseReference")
    assert texts(streams, "Deal/DealTerms/Usage/UseType")[:2] == ["OnDemandStream", "NonInteractiveStream"]


@pytest.mark.parametrize("version", VERSIONS)
def test_compilation_is_a_multi_artist_album(version: str, schema_dir: Path) -> None:
    doc = build(dataclasses.replace(full_album(), release_type="Compilation"), BuildContext(ern_version=version))
    assert validate_bytes(doc.xml, schema_dir) == []
    root = parse(doc.xml)
    assert texts(root, ".//ReleaseType")[0] == "Album"
    assert texts(root, ".//IsMultiArtistCompilation") == ["true"]


def test_same_records_same_bytes_in_a_new_process() -> None:
    here = Path(__file__).resolve().parents[1]  # tests/, where ern_strategies.py lives
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(here)!r})
        from ern_strategies import full_album
        from ddex_etl.ern import BuildContext, build
        for v in ("4.3", "4.2", "3.8.2"):
            sys.stdout.write(build(full_album(), BuildContext(ern_version=v)).checksum + "\\n")
        """
    )
    env_seed = {"PYTHONHASHSEED": "random"}
    import os

    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={**os.environ, **env_seed}
    ).stdout.split()
    assert out == [build(full_album(), BuildContext(ern_version=v)).checksum for v in VERSIONS]


def test_input_order_of_deals_and_credits_does_not_change_bytes() -> None:
    album = full_album()
    shuffled = dataclasses.replace(
        album,
        deals=tuple(reversed(album.deals)),
        artists=tuple(reversed(album.artists)),
        tracks=tuple(dataclasses.replace(t, contributors=tuple(reversed(t.contributors))) for t in reversed(album.tracks)),
    )
    assert build(shuffled).xml == build(album).xml


def test_message_id_follows_content_and_created_time_follows_data() -> None:
    album = full_album()
    a = build(album)
    b = build(dataclasses.replace(album, title="Another Title"))
    assert a.message_id != b.message_id
    assert a.message_id.startswith("PADPIDA0000000001O-4242-")
    later = dataclasses.replace(album, deals=album.deals + (dataclasses.replace(album.deals[0], deal_id=9, updated_at=dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=2)))),))
    assert b"<MessageCreatedDateTime>2025-01-02T01:04:05Z</MessageCreatedDateTime>" in build(later).xml
    undated = dataclasses.replace(
        album, updated_at=None, tracks=tuple(dataclasses.replace(t, updated_at=None) for t in album.tracks)
    )
    ctx = BuildContext(default_created=dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc))
    assert b"<MessageCreatedDateTime>2020-01-01T00:00:00Z</MessageCreatedDateTime>" in build(undated, ctx).xml


@pytest.mark.parametrize("version", VERSIONS)
def test_repair_strips_control_characters_and_whitespace_with_warnings(version: str, schema_dir: Path) -> None:
    album = full_album()
    dirty = dataclasses.replace(
        album,
        title="  Yume\x00 no\x1b Lullaby ",
        tracks=(dataclasses.replace(album.tracks[0], title="Bad\x0bTitle\ufffe"),) + album.tracks[1:],
    )
    doc = build(dirty, BuildContext(ern_version=version))
    assert validate_bytes(doc.xml, schema_dir) == []
    assert b"Yume no Lullaby" in doc.xml and b"BadTitle" in doc.xml
    assert len(doc.warnings) == 3
    assert all(w.startswith("release 4242: ") for w in doc.warnings)
    assert any("tracks[0].title" in w and "control characters" in w for w in doc.warnings)
    assert any(w.startswith("release 4242: title: removed surrounding whitespace") for w in doc.warnings)


def test_context_from_config_and_bad_context() -> None:
    tc = TransformConfig(ern_version="3.8.2", sender_dpid="PADPIDA2014021301J", sender_name="Me", language="fr", repair=False,
                         business_profiles=True, default_c_line="2025 Me")
    ctx = context_from_config(tc)
    assert ctx == BuildContext(ern_version="3.8.2", sender=Party("PADPIDA2014021301J", "Me"), language="fr", repair=False,
                               business_profiles=True, default_c_line="2025 Me")
    with pytest.raises(ConfigError) as err:
        BuildContext(ern_version="4.1", language="english!", sender=Party("nope", "x"), recipient=Party("PADPIDA2014021301J", "Store\x00"))
    assert len(err.value.problems) == 4
    assert "recipient" in err.value.problems[3] and "control characters" in err.value.problems[3]
    # A DPID's last character is its ISO 7064 MOD 37,36 check character.
    with pytest.raises(ConfigError) as err:
        BuildContext(sender=Party("PADPIDA2014021301W", "Me"), recipient=Party("PADPIDA2X", "Store"))
    assert "check character W" in err.value.problems[0] and "PADPIDA2014021301J" in err.value.problems[0]
    assert "18 characters" in err.value.problems[1]


@pytest.mark.parametrize("version", VERSIONS)
def test_takedown_is_valid(version: str, schema_dir: Path) -> None:
    album = dataclasses.replace(full_album(), deleted_at=dt.datetime(2025, 3, 1, 8, 0, tzinfo=dt.timezone.utc))
    doc = build_takedown(album, BuildContext(ern_version=version))
    assert validate_bytes(doc.xml, schema_dir) == []
    assert doc.kind == "TakeDown"
    root = parse(doc.xml)
    # Every version: a plain NewReleaseMessage (no UpdateIndicator, no TakeDown
    # flag) whose deals end the day before the takedown: DDEX dates are inclusive.
    assert texts(root, "UpdateIndicator") == [] and texts(root, ".//DealTerms/TakeDown") == []
    if version == "4.3":
        assert set(texts(root, ".//DealTerms/ValidityPeriod/EndDateTime")) == {"2025-02-28T23:59:59"}
        assert "2024-02-02T00:00:00" in texts(root, ".//DealTerms/ValidityPeriod/StartDateTime")
    else:
        assert set(texts(root, ".//DealTerms/ValidityPeriod/EndDate")) == {"2025-02-28"}
        assert "2024-02-02" in texts(root, ".//DealTerms/ValidityPeriod/StartDate")
    # The catalog's deals only: three deals, none invented, their own starts kept.
    assert len(root.findall("DealList/ReleaseDeal/Deal")) == 3
    # Without any deal on record, nothing is invented: no DealList at all ("no deal = no deal").
    no_deals = build_takedown(dataclasses.replace(album, deals=()), BuildContext(ern_version=version))
    assert validate_bytes(no_deals.xml, schema_dir) == []
    assert parse(no_deals.xml).find("DealList") is None


def test_takedown_of_a_bad_release_names_the_problem() -> None:
    from ddex_etl.errors import ReleaseDataError

    with pytest.raises(ReleaseDataError) as err:
        build_takedown(dataclasses.replace(full_album(), icpn=None))
    assert "icpn" in str(err.value)


@pytest.mark.parametrize("version", VERSIONS)
def test_values_cached_from_earlier_releases_never_leak_into_later_ones(version: str) -> None:
    # Party entries, credits and deal terms are kept per process: an artist
    # renamed (and its ISNI dropped) or a deal moved after an earlier build
    # must show its new values, and the earlier album must still build as before.
    ctx = BuildContext(ern_version=version)
    album = full_album()
    before = build(album, ctx).xml

    def renamed(c: Contributor) -> Contributor:
        return dataclasses.replace(c, name="Saeko S.", isni=None) if c.artist_id == 1 else c

    changed = dataclasses.replace(
        album,
        artists=tuple(map(renamed, album.artists)),
        tracks=tuple(dataclasses.replace(t, contributors=tuple(map(renamed, t.contributors))) for t in album.tracks),
        deals=tuple(dataclasses.replace(d, start_date=dt.date(2019, 5, 6)) for d in album.deals),
    )
    xml = build(changed, ctx).xml
    assert b"Saeko S." in xml and b"Saeko Shu" not in xml and b"0000000121032683" not in xml
    root = parse(xml)
    assert set(texts(root, ".//StartDate")) | {d[:10] for d in texts(root, ".//StartDateTime")} == {"2019-05-06"}
    assert build(album, ctx).xml == before
