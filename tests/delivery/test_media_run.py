"""`etl run` with real media: technical details from the files, require_media and min_cover_px per recipient (issue 23).

The seeded catalog's media really exist (``seed_catalog(media_dir=...)``: FLAC and WAV recordings exactly as
long as the catalog says, RGB covers of 1400 pixels and more); every message is checked against DDEX's XSDs
and DDEX's release-profile rules (``../shared/tools/ddex-profile-check``, 0 counted errors).
"""
from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from test_run_delivery import write_config

from ddex_etl import run as run_api
from ddex_etl.config import Config, ConfigError, DatabaseConfig, LoadConfig, RecipientConfig, RunConfig, TransformConfig
from ddex_etl.config import load_config
from ddex_etl.db import make_engine
from ddex_etl.demo.seed import seed_catalog
from ddex_etl.ern.validate import validate_bytes
from ddex_etl.errors import ExitCode
from ddex_etl.run import recipients
from ddex_etl.run.dry_run import dry_run

SHARED = Path(__file__).resolve().parents[3] / "shared"
TOOL = SHARED / "tools" / "ddex-profile-check"
# ERN 3.8.2 business-profile rules that contradict the album profile (see tests/ern/test_profile.py).
ERN3_CONTRADICTION = ("2299-1", "2303-1", "2307-1", "2311-1", "2315-1", "2326-1", "2329-1", "2332-1")


def serious_rules(folder: Path, allowed: tuple[str, ...]) -> list[dict]:
    out = subprocess.run([sys.executable, str(TOOL), "--json", str(folder)], capture_output=True, text=True, timeout=900)
    assert out.returncode in (0, 1), out.stderr
    report = json.loads(out.stdout)
    return [r for r in report["rules"] if r["role"].lower() in ("fatal error", "error") and not r["not_counted"]
            and not any(f"Rule {rule})" in r["text"] for rule in allowed)]


@pytest.mark.slow
@pytest.mark.skipif(not TOOL.is_file(), reason="DDEX's profile checker is not in ../shared")
@pytest.mark.parametrize("version", ["4.3", "4.2", "3.8.2"])
def test_a_seeded_batch_says_what_its_files_are_and_passes_ddex_rules(
    version: str, db_url: str, tmp_path: Path, schema_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = make_engine(db_url)
    try:
        seed_catalog(engine, releases=12, seed=13, media_dir=tmp_path / "media")
        with engine.connect() as conn:
            tracks = conn.execute(sa.text("SELECT count(*) FROM tracks")).scalar()
    finally:
        engine.dispose()
    cfg = Config(
        database=DatabaseConfig(url=db_url),
        transform=TransformConfig(ern_version=version),
        load=LoadConfig(directory=tmp_path / "out", layout="ddex-batch", media_root=str(tmp_path / "media"),
                        require_media=True, min_cover_px=1400),
        run=RunConfig(workers=1),
    )
    caplog.set_level(logging.INFO)
    report = run_api.run(cfg, progress=False)
    assert report.built == 12 and report.rejected == 0, report
    assert "in the catalog" not in caplog.text and "no audio file" not in caplog.text  # durations agree
    files = [f for f in (tmp_path / "out").rglob("*.xml") if not f.name.startswith("BatchComplete")]
    assert len(files) == 12
    details = 0
    for f in files:
        xml = f.read_bytes()
        assert validate_bytes(xml, schema_dir) == [], f.name
        details += xml.count(b"<AudioCodecType>")
        assert b"<BitsPerSample>" in xml and b"<ColorDepth>24</ColorDepth>" in xml
        assert b'<SamplingRate UnitOfMeasure="kHz">44.1</SamplingRate>' in xml
    assert details == tracks  # every sound recording carries its file's details
    assert serious_rules(tmp_path / "out", ERN3_CONTRADICTION if version == "3.8.2" else ()) == []


def _drop_audio(engine: sa.Engine, release_id: int) -> str:
    with engine.begin() as conn:
        return conn.execute(sa.text(
            "UPDATE tracks SET audio_file = NULL, audio_md5 = NULL WHERE track_id = "
            "(SELECT max(track_id) FROM tracks WHERE release_id = :r) RETURNING isrc"), {"r": release_id}).scalar()


def test_a_recipient_with_a_target_requires_media_and_one_without_is_warned(
    db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = make_engine(db_url, pool_size=2)
    try:
        seed_catalog(engine, 6, seed=5, media_dir=tmp_path / "media")
        isrc = _drop_audio(engine, 3)
    finally:
        engine.dispose()
    path = write_config(tmp_path, db_url, [
        {"name": "store", "dpid": "PADPIDA0000000010M", "target": (tmp_path / "store").as_uri()},
        {"name": "archive", "dpid": "PADPIDA0000000020I"},
        {"name": "small", "dpid": "PADPIDA0000000030E", "min_cover_px": 3000, "require_media": False},
    ])
    (tmp_path / "store").mkdir()
    cfg = load_config(path, env={})
    assert [cfg.for_recipient(r).load.require_media for r in cfg.recipients] == [True, False, False]
    preview = {p.recipient: p for p in dry_run(cfg).plans}  # the dry run applies the same rules
    assert [r["release_id"] for r in preview["store"].rejects] == [3] and preview["archive"].rejects == []
    caplog.set_level(logging.INFO)
    report = recipients.run(cfg, progress=False)
    assert report.exit_code == ExitCode.REJECTED, report.summary()
    store, archive, small = (run_api.rejected(cfg.for_recipient(r)) for r in cfg.recipients)
    [reject] = store
    assert reject.release_id == 3
    assert f"ISRC {isrc}) has no audio file, and recipient store requires media" in reject.message
    assert "require_media = false for recipient store" in reject.message
    assert archive == []
    assert "release 3: 1 of" in caplog.text and "sound recordings have no audio file" in caplog.text
    # 3000-pixel minimum: the seed's 1400 and 1600 covers are refused, its 3000 ones pass
    assert small and all("smaller than min_cover_px = 3000 for recipient small" in r.message for r in small)
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            sides = dict(conn.execute(sa.text("SELECT release_id, width FROM release_images")).all())
    finally:
        engine.dispose()
    assert {r.release_id for r in small} == {rid for rid, side in sides.items() if side < 3000}
    # the dry run reads the files' headers as the run does: what was delivered is unchanged
    after = {p.recipient: p for p in dry_run(cfg, recipients=("archive",), release_ids=(1, 2, 3, 4, 5, 6)).plans}
    assert after["archive"].unchanged == 6 and after["archive"].would_build == 0


@pytest.mark.parametrize(("toml", "words"), [
    ('[load]\nlayout = "ddex-batch"\n[[recipients]]\nname = "s"\ndpid = "PADPIDA0000000010M"\ntarget = "s3://b/in"\n',
     "recipients[0] (s): it has a target, so require_media is true, but no media root is set"),
    ('[load]\nlayout = "ddex-batch"\nrequire_media = true\n', "load.require_media = true, but no media root is set"),
    ('[load]\nmin_cover_px = 0\n', "load.min_cover_px: must be at least 1"),
    ('[[recipients]]\nname = "s"\ndpid = "PADPIDA0000000010M"\nmin_cover_px = -3\n', "recipients[0].min_cover_px"),
])
def test_media_settings_are_checked_up_front(tmp_path: Path, toml: str, words: str) -> None:
    (tmp_path / "etl.toml").write_text(toml)
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "etl.toml", env={})
    assert words in str(err.value)


def test_new_media_settings_keep_old_fingerprints() -> None:
    """Configurations that leave the new keys at their defaults resume runs started before them."""
    # The demo parties of those runs (the shipped defaults have since become valid DPIDs).
    old = {"sender_dpid": "PADPIDA0000000001X", "recipient_dpid": "PADPIDA0000000002X"}
    plain = RecipientConfig(name="a", dpid="PADPIDA0000000010A")
    assert Config().with_overrides(transform=old).legacy_fingerprint() == "9d94a9e81cb89e5f"
    assert Config().with_overrides(transform=old).for_recipient(plain).legacy_fingerprint() == "b74ed4838be7449c"
    batch = Config(load=LoadConfig(layout="ddex-batch", media_root="/m")).with_overrides(transform=old)
    assert (batch.legacy_fingerprint(), batch.for_recipient(plain).legacy_fingerprint()) == ("23f56a9daa5f4ba0", "94fd47f886d860d9")
    assert Config().with_overrides(transform=old).for_recipient(
        RecipientConfig(name="a", dpid="PADPIDA0000000010A", min_cover_px=3000)).legacy_fingerprint() \
        != "b74ed4838be7449c"
