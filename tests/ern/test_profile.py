"""Store-ready messages: DDEX's own release-profile rules accept what we build, in every version.

The rules are DDEX's Schematron compiled to XSLT 2.0 (``../shared/ddex/schematron``),
run by DDEX's checking script ``../shared/tools/ddex-profile-check`` exactly
as a store's validator would: by the message's ReleaseProfileVersionId. Both
are DDEX's files, not ours: the tests skip, saying so, where ``../shared`` is
absent.

One contradiction inside DDEX's ERN 3 rules cannot be met by any truthful
message, and is the only failure allowed (``ERN3_CONTRADICTION``): the
Business Profile 1.4 rules for streaming services (2299-1, 2303-1, ...)
demand ``ReleaseProfileVersionId = CommonReleaseTypes/14/AudioSingle``, while
the release profile for albums demands ``CommonReleaseTypes/14/AudioAlbum``
(rule 1129-1) and its single profile demands a ``Single`` release (rule
1067-1). An album with a streaming deal fails one or the other; we declare
the album profile, which is true.
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
# Business Profile 1.4 rules that demand the AudioSingle release profile for
# any streaming deal (see the module docstring): failed only by non-single
# ERN 3.8.2 messages with streaming deals.
ERN3_CONTRADICTION = ("2299-1", "2303-1", "2307-1", "2311-1", "2315-1", "2326-1", "2329-1", "2332-1")

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


def write(folder: Path, docs: list) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for doc in docs:
        (folder / f"{doc.release_id}-{doc.kind}.xml").write_bytes(doc.xml)
    return folder


# ----------------------------------------------------------------- the seeded catalog, every version


@pytest.mark.parametrize("version", VERSIONS)
def test_seeded_catalog_passes_ddex_profile_rules(version: str, db_url: str, tmp_path: Path, schema_dir: Path) -> None:
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
        transform=TransformConfig(ern_version=version),
        load=LoadConfig(directory=tmp_path / "out"),
        run=RunConfig(workers=1),
    )
    report = run_api.run(cfg, progress=False)
    assert report.built == 60 and report.rejected == 0
    files = sorted((tmp_path / "out").glob("*.xml"))
    for f in files[:10]:
        assert validate_bytes(f.read_bytes(), schema_dir) == [], f.name
    result = profile_check(tmp_path / "out")
    assert result["files"] == 60
    if version == "3.8.2":
        assert serious(result, ERN3_CONTRADICTION) == []
        # Only non-single messages carry the contradiction.
        for f in files:
            if b'ReleaseProfileVersionId="CommonReleaseTypes/14/AudioSingle"' in f.read_bytes():
                assert serious(profile_check(f)) == [], f.name
    else:
        assert serious(result) == [] and result["failing_files"] == 0


# ----------------------------------------------------------------- generated releases


def test_generated_releases_pass_ddex_profile_rules(tmp_path: Path) -> None:
    """Property-generated releases (duets, multi-role writers, cover art, non-English titles), all versions."""
    built: dict[str, list] = {v: [] for v in VERSIONS}

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(release=releases(), n=st.integers(0, 10**9))
    def collect(release: Release, n: int) -> None:
        release = dataclasses.replace(release, release_id=n * 10 + len(built["4.3"]))  # unique file names
        for v in VERSIONS:
            built[v].append(build(release, BuildContext(ern_version=v)))

    collect()
    for v in VERSIONS:
        docs = built[v]
        if v == "3.8.2":
            # A generic use type (Stream) beside specific ones breaks ERN 3's
            # business profile whatever we write: the builder warns the label
            # instead (asserted here), and such releases are left out.
            mixed = [d for d in docs if any("generic use type" in w for w in d.warnings)]
            docs = [d for d in docs if d not in mixed]
            assert len(docs) >= 5, "too few releases left to check"
        result = profile_check(write(tmp_path / v.replace(".", ""), docs))
        failures = serious(result, ERN3_CONTRADICTION if v == "3.8.2" else ())
        # A one-track "album" cannot be an ERN 3 Audio Album (rule 1132-1 wants
        # two recordings or more): the catalog calls it an album, we say so.
        failures = [f for f in failures if not (v == "3.8.2" and "Rule 1132-1" in f["text"])]
        assert failures == [], f"ERN {v}: {failures[:3]}"


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


@pytest.mark.parametrize("version", VERSIONS)
def test_takedowns_of_each_kind_pass_ddex_profile_rules(version: str, tmp_path: Path, schema_dir: Path) -> None:
    ctx = BuildContext(ern_version=version, created=dt.datetime(2025, 3, 1, 9, 0, tzinfo=dt.timezone.utc))
    docs = []
    for n, (kind, release) in enumerate(takedown_cases().items()):
        doc = build_takedown(dataclasses.replace(release, release_id=n + 1), ctx)
        assert validate_bytes(doc.xml, schema_dir) == [], kind
        assert b"<UpdateIndicator>" not in doc.xml and b"<TakeDown>" not in doc.xml, kind
        docs.append(doc)
    # The future deal (starting after the takedown) is not sent; the others end on 2025-02-28.
    assert b"2026-01-01" not in docs[3].xml and b"<EndDate>2025-02-28</EndDate>" in docs[3].xml
    # Deals that had already ended keep their own end date.
    assert b"<EndDate>2025-01-31</EndDate>" in docs[1].xml and b"2025-02-28" not in docs[1].xml
    result = profile_check(write(tmp_path / "td", docs))
    assert serious(result, ERN3_CONTRADICTION if version == "3.8.2" else ()) == []


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
        assert serious(profile_check(folder), ERN3_CONTRADICTION if v == "3.8.2" else ()) == [], v


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
