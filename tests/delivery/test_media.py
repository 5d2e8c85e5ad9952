"""Media in batches: URIs rewritten before the build, resources settled with their chunk, demo files valid."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import struct
import wave
from pathlib import Path

import pytest

from ddex_etl.config import ConfigError, load_config
from ddex_etl.delivery.media import copy_media, with_resource_uris
from ddex_etl.delivery.resources import MediaRoot
from ddex_etl.demo import media as demo_media
from ddex_etl.errors import ExitCode, MediaError
from ddex_etl.load import FileLoader, Output
from ddex_etl.models import CoverImage, Document, Release, Track
from ddex_etl.run.recipients import worst_exit_code

BATCH = "20260101120000000"


def _release(rid: int = 7) -> Release:
    return Release(
        release_id=rid, title="T", release_type="Album", icpn=f"000000000000{rid}",
        tracks=(Track(1, 1, 1, None, "a", audio_file="audio/01-01.wav", audio_md5=demo_media.md5_of("audio/01-01.wav")),
                Track(2, 1, 2, None, "b", audio_file="other/01-01.wav", audio_md5=demo_media.md5_of("audio/01-02.wav"))),
        cover_image=CoverImage("covers/cover-1400.jpg", demo_media.md5_of("covers/cover-1400.jpg"), 1400, 1400, "image/jpeg"),
    )


def test_uris_are_rewritten_to_resources_and_the_record_is_a_new_one() -> None:
    release = _release()
    rewritten, planned, problems = with_resource_uris(release)
    assert not problems
    assert [t.audio_file for t in rewritten.tracks] == ["resources/01-01.wav", "resources/01-01-2.wav"]
    assert rewritten.cover_image is not None and rewritten.cover_image.file == "resources/cover-1400.jpg"
    assert release.tracks[0].audio_file == "audio/01-01.wav"  # the input is untouched
    assert [p.item.source for p in planned] == ["audio/01-01.wav", "other/01-01.wav", "covers/cover-1400.jpg"]


def test_an_unsafe_media_path_is_a_problem_of_the_release() -> None:
    bad = dataclasses.replace(_release(), tracks=(Track(1, 1, 1, None, "a", audio_file="../etc/passwd"),))
    _, _, problems = with_resource_uris(bad)
    assert problems and problems[0].field == "tracks[0].audio_file"


def _media(tmp_path: Path) -> MediaRoot:
    root = tmp_path / "media"
    demo_media.write_media(root, {"audio/01-01.wav", "audio/01-02.wav", "covers/cover-1400.jpg"})
    (root / "other").mkdir()
    (root / "other" / "01-01.wav").write_bytes(demo_media.wav_bytes(1, 2))
    return MediaRoot(str(root))


def test_resources_of_a_chunk_that_never_committed_are_removed_with_its_message(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    loader = FileLoader(out, "ddex-batch", BATCH, run_id=3, durable=False)
    loader.prepare(committed=lambda ids: set())
    _, planned, _ = with_resource_uris(_release())
    chunk = loader.open_chunk(pending_key=7)
    copy_media(chunk, "0000000000007", 7, planned, _media(tmp_path))
    folder = loader.root / "0000000000007"
    assert sorted(p.name for p in (folder / "resources").iterdir()) == ["01-01-2.wav", "01-01.wav", "cover-1400.jpg"]
    chunk._close_root()  # the worker dies here: nothing committed
    again = FileLoader(out, "ddex-batch", BATCH, run_id=3, durable=False)
    again.prepare(committed=lambda ids: set())  # the next start settles the chunk's pending list
    assert not folder.exists()
    assert list(loader.root.iterdir()) == []


def test_committed_resources_stay_and_a_bad_file_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    loader = FileLoader(out, "ddex-batch", BATCH, run_id=4, durable=False)
    loader.prepare(committed=lambda ids: set(ids))
    media = _media(tmp_path)
    _, planned, _ = with_resource_uris(_release(7))
    chunk = loader.open_chunk(pending_key=7)
    copy_media(chunk, "0000000000007", 7, planned, media)
    xml = b"<x/>"
    chunk.add(Output(Document(7, "4.3", "m", xml, hashlib.sha256(xml).hexdigest()), "0000000000007"))
    bad = dataclasses.replace(
        _release(8), tracks=(Track(3, 1, 1, None, "c", audio_file="audio/01-01.wav", audio_md5="0" * 32),))
    _, bad_plan, _ = with_resource_uris(bad)
    with pytest.raises(MediaError, match="audio/01-01.wav"):
        copy_media(chunk, "0000000000008", 8, bad_plan, media)
    written = chunk.commit()
    loader.settle(written, key=7)
    assert not (loader.root / "0000000000008").exists()
    assert (loader.root / "0000000000007" / "resources" / "01-01.wav").read_bytes() == demo_media.wav_bytes(1, 1)
    assert not [p for p in loader.root.iterdir() if p.name.endswith(".etl-pending")]


def test_demo_media_files_are_what_they_claim() -> None:
    with wave.open(io.BytesIO(demo_media.wav_bytes(1, 3))) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (1, 2, 8000, 2000)
    assert demo_media.wav_bytes(1, 3) != demo_media.wav_bytes(1, 4)
    png = demo_media.png_bytes(3000, 3000)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and struct.unpack(">II", png[16:24]) == (3000, 3000)
    jpg = demo_media.jpeg_bytes(1600, 1600)
    assert jpg.startswith(b"\xff\xd8") and jpg.endswith(b"\xff\xd9")
    sof = jpg.index(b"\xff\xc0")
    assert struct.unpack(">HH", jpg[sof + 5:sof + 9]) == (1600, 1600)
    assert demo_media.md5_of("covers/cover-1600.jpg") == hashlib.md5(jpg).hexdigest()


def test_recipients_problems_are_reported_together(tmp_path: Path) -> None:
    path = tmp_path / "etl.toml"
    path.write_text(
        '[[recipients]]\nname = "a b"\ndpid = "nope"\nmessage_control = "Maybe"\nterritories = ["fr"]\n'
        'target = "sftp://u:secret@host/in"\n'
        '[[recipients]]\nname = "b"\ndpid = "PADPIDA0000000003K"\nern_version = "5"\ntarget = "s3://bucket/x"\n'
        '[recipients.target_options]\naws_secret_access_key = "x"\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    text = "\n".join(caught.value.problems)
    for expected in ("recipients[0].name", "recipients[0].dpid", "recipients[0].message_control",
                     "recipients[0].territories", "recipients[0].target: sftp://u:***@host/in holds a password",
                     "recipients[1].ern_version", "aws_secret_access_key", 'load.layout = "ddex-batch"'):
        assert expected in text
    assert "secret@" not in text


@pytest.mark.parametrize(
    ("codes", "worst"),
    [
        ([0, 3, 4], ExitCode.REJECTED),
        ([4, 0], ExitCode.LOCKED),
        ([3, 130], ExitCode.INTERRUPTED),
        ([130, 1, 3], ExitCode.FAILED),
        ([2, 130], ExitCode.USAGE),
        ([0, 0], ExitCode.OK),
    ],
)
def test_the_worst_recipient_decides_the_exit_code(codes: list[int], worst: int) -> None:
    assert worst_exit_code(codes) == worst
