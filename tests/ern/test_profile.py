"""Store-ready messages: DDEX's own release-profile rules accept what we build, in every version.

The rules are DDEX's Schematron compiled to XSLT 2.0 (``../shared/ddex/schematron``),
run by DDEX's checking script ``../shared/tools/ddex-profile-check`` exactly
as a store's validator would: by the message's ReleaseProfileVersionId. Both
are DDEX's files, not ours: the tests skip, saying so, where ``../shared`` is
absent.

ERN 3.8.2 messages are checked twice: as most stores get them (no
``BusinessProfileVersionId``: DDEX's validator runs business-profile rules
only on request) and with the business profiles declared, as a recipient
with ``business_profiles = true`` gets them. The checker reports, without
counting them, the business-profile rules that demand the AudioSingle release
profile for every streaming service (a known defect of DDEX's rules: they
contradict the album profile's rule 1129-1).

Every message also links its streaming deals to the track releases only
(``streams_on_track_releases_only``).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest
from ern_strategies import full_album, releases
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ddex_etl.ern import BuildContext, build, build_takedown
from ddex_etl.ern.validate import validate_bytes
from ddex_etl.models import Deal, Release

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
TOOL = SHARED / "tools" / "ddex-profile-check"
RULES = SHARED / "ddex" / "schematron"
VERSIONS = ("4.3", "4.2", "3.8.2")
# (ERN version, declare business profiles): every way a message is written.
FLAVOURS = (("4.3", False), ("4.2", False), ("3.8.2", False), ("3.8.2", True))
STREAMING = {"Stream", "OnDemandStream", "NonInteractiveStream", "ContentInfluencedStream", "TimeInfluencedStream", "Simulcast", "Webcast"}

needs_rules = pytest.mark.skipif(
    not (TOOL.is_file() and RULES.is_dir()),
    reason=f"DDEX's profile rules and checking tool are not in {SHARED} (DDEX's files are never copied into the repo)",
)
pytestmark = needs_rules


def profile_check(folder: Path) -> dict:
    """DDEX's checking script over a folder: its JSON report."""
    out = subprocess.run(
        [sys.executable, str(TOOL), "--json", str(folder)], capture_output=True, text=True, timeout=900
    )
    assert out.returncode in (0, 1), out.stderr
    return json.loads(out.stdout)


def serious(report: dict, allowed: tuple[str, ...] = ()) -> list[dict]:
    """The counted Fatal/Error failures, less the allowed rule numbers."""
    return [
        r for r in report["rules"]
        if r["role"].lower() in ("fatal error", "error") and not r["not_counted"]
        and not any(f"Rule {rule})" in r["text"] for rule in allowed)
    ]


def streams_on_track_releases_only(xml: bytes) -> None:
    """No streaming use type is linked to the main release (R0); downloads are."""
    from lxml import etree

    root = etree.fromstring(xml)
    for rd in root.iter("{*}ReleaseDeal"):
        refs = [e.text for e in rd.iter("{*}DealReleaseReference")]
        uses = {e.text for e in rd.iter("{*}UseType")}
        if "R0" in refs:
            assert not uses & STREAMING, f"streaming {sorted(uses & STREAMING)} linked to the main release"


def write(folder: Path, docs: list) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for doc in docs:
        (folder / f"{doc.release_id}-{doc.kind}.xml").write_bytes(doc.xml)
    return folder


# ----------------------------------------------------------------- the seeded catalog, every version


@pytest.mark.parametrize(("version", "business"), FLAVOURS)
def test_seeded_catalog_passes_ddex_profile_rules(version: str, business: bool, db_url: str, tmp_path: Path, schema_dir: Path) -> None:
    from ddex_etl import run as run_api
    from ddex_etl.config import Config, DatabaseConfig, LoadConfig, RunConfig, TransformConfig
    from ddex_etl.db import make_engine
    from ddex_etl.demo.seed import seed_catalog

    engine = make_engine(db_url)
    try:
        seed_catalog(engine, releases=60, seed=13)
    finally:
        engine.dispose()
    cfg = Config(
        database=DatabaseConfig(url=db_url),
        transform=TransformConfig(ern_version=version, business_profiles=business),
        load=LoadConfig(directory=tmp_path / "out"),
        run=RunConfig(workers=1),
    )
    report = run_api.run(cfg, progress=False)
    # The same releases ship in every version (one C line policy).
    assert report.built == 60 and report.rejected == 0
    files = sorted((tmp_path / "out").glob("*.xml"))
    for f in files[:10]:
        assert validate_bytes(f.read_bytes(), schema_dir) == [], f.name
    declared = 0
    for f in files:
        streams_on_track_releases_only(f.read_bytes())
        declared += b"BusinessProfileVersionId=" in f.read_bytes()
    # Business profiles only for a recipient that asks for them.
    assert (declared > 0) == business
    result = profile_check(tmp_path / "out")
    assert result["files"] == 60
    assert serious(result) == [] and result["failing_files"] == 0


# ----------------------------------------------------------------- generated releases


def test_generated_releases_pass_ddex_profile_rules(tmp_path: Path) -> None:
    """Property-generated releases (albums and singles, duets, multi-role writers, cover art, non-English titles,
    generic and specific use types mixed), every version, with and without declared business profiles."""
    built: dict[tuple[str, bool], list] = {f: [] for f in FLAVOURS}

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(release=releases(), n=st.integers(0, 10**9))
    def collect(release: Release, n: int) -> None:
        release = dataclasses.replace(release, release_id=n * 10 + len(built[FLAVOURS[0]]))  # unique file names
        for v, business in FLAVOURS:
            built[(v, business)].append(build(release, BuildContext(ern_version=v, business_profiles=business)))

    collect()
    for (v, business), docs in built.items():
        assert any(b"<ReleaseType>Single</ReleaseType>" in d.xml for d in docs) and any(b"TrackRelease" in d.xml for d in docs)
        for d in docs:
            streams_on_track_releases_only(d.xml)
            if v == "3.8.2":  # the generic Stream is written as its specific use types
                assert b"<UseType>Stream</UseType>" not in d.xml
        result = profile_check(write(tmp_path / f"{v.replace('.', '')}{'-bp' if business else ''}", docs))
        failures = serious(result)
        # A one-track "album" cannot be an ERN 3 Audio Album (rule 1132-1 wants
        # two recordings or more): the catalog calls it an album, we say so.
        failures = [f for f in failures if not (v == "3.8.2" and "Rule 1132-1" in f["text"])]
        assert failures == [], f"ERN {v}{' with business profiles' if business else ''}: {failures[:3]}"


# ----------------------------------------------------------------- takedowns of each kind


def takedown_cases() -> dict[str, Release]:
    album = full_album()
    on = dt.datetime(2025, 3, 1, 8, 0, tzinfo=dt.timezone.utc)
    return {
        "deleted": dataclasses.replace(album, deleted_at=on),
        "deals-ended": dataclasses.replace(
            album, deals=tuple(dataclasses.replace(d, end_date=dt.date(2025, 1, 31)) for d in album.deals)
        ),
        "no-deals": dataclasses.replace(album, deals=(), deleted_at=on),
        "future-deal": dataclasses.replace(
            album, deleted_at=on,
            deals=album.deals + (Deal(9, ("US",), "SubscriptionModel", ("OnDemandStream",), dt.date(2026, 1, 1)),),
        ),
    }


@pytest.mark.parametrize(("version", "business"), FLAVOURS)
def test_takedowns_of_each_kind_pass_ddex_profile_rules(version: str, business: bool, tmp_path: Path, schema_dir: Path) -> None:
    ctx = BuildContext(ern_version=version, created=dt.datetime(2025, 3, 1, 9, 0, tzinfo=dt.timezone.utc), business_profiles=business)
    docs = []
    for n, (kind, release) in enumerate(takedown_cases().items()):
        doc = build_takedown(dataclasses.replace(release, release_id=n + 1), ctx)
        assert validate_bytes(doc.xml, schema_dir) == [], kind
        assert b"<UpdateIndicator>" not in doc.xml and b"<TakeDown>" not in doc.xml, kind
        docs.append(doc)
    # The future deal (starting after the takedown) is not sent; the others end on 2025-02-28.
    end = b"<EndDateTime>2025-02-28T23:59:59</EndDateTime>" if version == "4.3" else b"<EndDate>2025-02-28</EndDate>"
    assert b"2026-01-01" not in docs[3].xml and end in docs[3].xml
    # Deals that had already ended keep their own end date.
    assert b"2025-01-31" in docs[1].xml and b"2025-02-28" not in docs[1].xml
    for doc in docs:
        streams_on_track_releases_only(doc.xml)
    result = profile_check(write(tmp_path / "td", docs))
    assert serious(result) == []


# ----------------------------------------------------------------- the Python API


def test_ddexbuilder_output_passes_ddex_profile_rules(tmp_path: Path) -> None:
    from ddex_etl import DDEXBuilder

    release = {
        "release_id": 1, "icpn": "0602445790005", "title": "Northern Lights", "release_type": "Single",
        "label": {"label_id": 1, "name": "Aurora Records"}, "genre": "Electronic", "release_date": "2025-03-01",
        "p_line_text": "2025 Aurora Records", "c_line_text": "2025 Aurora Records", "language": "en",
        "cover_image": {"file": "covers/1.jpg", "md5": "5d41402abc4b2a76b9719d911017c592", "width": 3000,
                        "height": 3000, "mime_type": "image/jpeg"},
        "artists": [{"artist_id": 1, "name": "Nova", "role": "MainArtist"}],
        "tracks": [{"track_id": 1, "disc_number": 1, "track_number": 1, "isrc": "GBAYE2500001", "title": "Aurora",
                    "duration_seconds": "3:57", "contributors": [
                        {"artist_id": 2, "name": "Ana Writer", "role": "Composer"},
                        {"artist_id": 2, "name": "Ana Writer", "role": "Lyricist"}]}],
        "deals": [{"territories": ["Worldwide"], "commercial_model": "SubscriptionModel",
                   "use_types": ["OnDemandStream"], "start_date": "2025-03-01"}],
    }
    for v in VERSIONS:
        with DDEXBuilder(version=v) as builder:
            result = builder.build_batch([release, {**release, "release_id": 2, "release_type": "Album",
                                                    "tracks": release["tracks"] * 1 + [{**release["tracks"][0], "track_id": 2, "track_number": 2, "isrc": "GBAYE2500002"}]}],
                                         parallel=False)
        assert result.errors == []
        folder = tmp_path / v.replace(".", "")
        folder.mkdir()
        for item in result.success:
            (folder / f"{item.id}.xml").write_bytes(item.xml_bytes)
        assert serious(profile_check(folder)) == [], v


# ----------------------------------------------------------------- etl validate --profile


def test_etl_validate_profile_reports_rule_failures_per_file(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from ddex_etl.cli import cli

    good = build(full_album())
    (tmp_path / "good.xml").write_bytes(good.xml)
    # A message without its cover image: what DDEX's rule 1053-1 refuses.
    start = good.xml.index(b"<Image>")
    end = good.xml.index(b"</Image>") + len(b"</Image>")
    broken = good.xml[:start] + good.xml[end:]
    (tmp_path / "no-cover.xml").write_bytes(broken.replace(b"<LinkedReleaseResourceReference>A0</LinkedReleaseResourceReference>", b""))
    runner = CliRunner()
    res = runner.invoke(cli, ["validate", str(tmp_path), "--profile", "--rules-dir", str(RULES)])
    assert res.exit_code == 1, res.output
    assert "no-cover.xml: FAILS 1 profile rule" in res.output and "Rule 1053-1" in res.output
    assert "good.xml" not in res.output.split("no-cover.xml")[0] or "good.xml: FAILS" not in res.output
    assert "2 files: 1 valid, 1 invalid" in res.output
    ok = runner.invoke(cli, ["-v", "validate", str(tmp_path / "good.xml"), "--profile", "--rules-dir", str(RULES)])
    assert ok.exit_code == 0 and "passes DDEX's profile rules" in ok.output
    missing = runner.invoke(cli, ["validate", str(tmp_path), "--profile"])
    assert missing.exit_code == 2 and "--rules-dir" in missing.output


def test_etl_validate_profile_says_why_each_uncounted_rule_does_not_count(tmp_path: Path) -> None:
    """Issue 23: "advice (not counted): ... 24,224 Error" with no reason read as a failure on every 4.3 message."""
    from click.testing import CliRunner

    from ddex_etl.cli import cli
    from ddex_etl.cli.validate import not_counted_summary
    from ddex_etl.ern.profile import NOT_COUNTED, _failure

    (tmp_path / "a.xml").write_bytes(build(full_album(), BuildContext(ern_version="4.3")).xml)
    res = CliRunner().invoke(cli, ["validate", str(tmp_path), "--profile", "--rules-dir", str(RULES)])
    assert res.exit_code == 0, res.output
    assert "not counted (these do not make a file fail):" in res.output
    [line] = [x for x in res.output.splitlines() if "written for ERN 4.1" in x]
    assert " Error: written for ERN 4.1" in line and "ERN 4.3 moved" in line
    assert "advice (not counted)" not in res.output
    # each reason the shared checker gives has its words here
    assert _failure("Error", "x (Rule 2299-1)", "/", "ern382/BusinessProfile.xsl", False).reason == "ddex-defect"
    assert _failure("Error", "An ISRC must be a string starting with an ISO 3166 code", "/", "ern382/AudioSingle.xsl",
                    False).reason == "out-of-date"
    assert _failure("Warning", "w", "/", "ern4/Audio.xsl", True).reason == "advice"
    counted = _failure("Error", "t", "/ReleaseList", "ern4/Audio.xsl", True)
    assert counted.counted and counted.reason == ""
    text = not_counted_summary({("ddex-defect", "Error"): 7, ("advice", "Warning"): 2, ("ern41", "Error"): 24224})
    assert text.splitlines()[1] == f"  7 Error: {NOT_COUNTED['ddex-defect']}"
    assert text.splitlines()[2] == f"  24,224 Error: {NOT_COUNTED['ern41']}"
    assert text.splitlines()[3] == f"  2 Warning: {NOT_COUNTED['advice']}"
