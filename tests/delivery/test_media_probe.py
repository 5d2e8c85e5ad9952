"""Technical details read from real media files, and a recipient's media rules (issue 23).

Every file here is real and made on the spot: WAVs by the standard library's ``wave``, FLACs by libsndfile
(``soundfile``) and by the demo's own encoder, JPEGs and PNGs by Pillow, each with known properties. The
probe reads them through the media root (``MediaRoot.open``) and only their headers.
"""
from __future__ import annotations

import dataclasses
import io
import wave
from pathlib import Path

import pytest
import soundfile
from PIL import Image

from ddex_etl.delivery.media_checks import MediaPolicy, check_media
from ddex_etl.delivery.media_source import MediaRefused, MediaRoot
from ddex_etl.delivery.media_probe import ProbeError, probe_audio, probe_image
from ddex_etl.demo import media as demo_media
from ddex_etl.ern import BuildContext, build
from ddex_etl.ern.validate import validate_bytes
from ddex_etl.models import AudioDetails, CoverImage, Release, Track


def write_wav(path: Path, seconds: float, rate: int = 44100, channels: int = 2, width: int = 2) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(b"\x00" * int(seconds * rate) * channels * width)
    return path


def write_flac(path: Path, seconds: float, rate: int, channels: int, subtype: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = int(seconds * rate)
    soundfile.write(str(path), [[0.0] * channels] * frames if channels > 1 else [0.0] * frames, rate,
                    subtype=subtype, format="FLAC")
    return path


def write_image(path: Path, size: tuple[int, int], mode: str, fmt: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size).save(path, fmt)
    return path


# ----------------------------------------------------------------- the probe


@pytest.mark.parametrize(("make", "expected"), [
    (lambda p: write_wav(p / "cd.wav", 2.5), AudioDetails("PCM", "WAV", 2, 44100, 16, 2.5)),
    (lambda p: write_wav(p / "hi.wav", 1.0, rate=96000, channels=1, width=3), AudioDetails("PCM", "WAV", 1, 96000, 24, 1.0)),
    (lambda p: write_flac(p / "a.flac", 1.5, 48000, 2, "PCM_24"), AudioDetails("FLAC", None, 2, 48000, 24, 1.5)),
    (lambda p: write_flac(p / "m.flac", 0.5, 22050, 1, "PCM_16"), AudioDetails("FLAC", None, 1, 22050, 16, 0.5)),
])
def test_the_probe_reads_codec_channels_rate_depth_and_length_of_real_files(tmp_path, make, expected) -> None:
    path = make(tmp_path)
    assert probe_audio(MediaRoot(tmp_path), path.name) == expected


def test_the_probe_reads_only_the_headers_of_a_long_recording(tmp_path: Path) -> None:
    write_wav(tmp_path / "long.wav", 120.0)  # about 21 MB
    stats: dict[str, int] = {}
    details = probe_audio(MediaRoot(tmp_path), "long.wav", stats=stats)
    assert details.duration_seconds == 120.0
    assert stats["bytes_read"] < 64 * 1024, stats
    (tmp_path / "big.flac").write_bytes(demo_media.flac_bytes(412))
    stats = {}
    assert probe_audio(MediaRoot(tmp_path), "big.flac", stats=stats).duration_seconds == 412.0
    assert stats["bytes_read"] < 64 * 1024, stats


@pytest.mark.parametrize(("size", "mode", "fmt", "mime"), [
    ((1500, 1500), "RGB", "JPEG", "image/jpeg"),
    ((3000, 3000), "L", "PNG", "image/png"),
    ((1400, 1600), "RGBA", "PNG", "image/png"),
    ((1400, 1400), "CMYK", "JPEG", "image/jpeg"),
])
def test_the_probe_reads_size_colour_mode_and_format_of_real_images(tmp_path, size, mode, fmt, mime) -> None:
    write_image(tmp_path / "c.img", size, mode, fmt)
    stats: dict[str, int] = {}
    image = probe_image(MediaRoot(tmp_path), "c.img", stats=stats)
    assert (image.width, image.height, image.mode, image.mime_type) == (*size, mode, mime)
    assert stats["bytes_read"] < 64 * 1024


def test_a_file_that_is_not_audio_or_not_an_image_is_named_with_a_fix(tmp_path: Path) -> None:
    (tmp_path / "x.wav").write_bytes(b"not a recording at all" * 10)
    with pytest.raises(ProbeError, match=r"x\.wav .*fix: ") as err:
        probe_audio(MediaRoot(tmp_path), "x.wav")
    assert "x.wav" in err.value.problem
    with pytest.raises(ProbeError, match="not an image"):
        probe_image(MediaRoot(tmp_path), "x.wav")
    (tmp_path / "link.wav").symlink_to(tmp_path / "x.wav")
    with pytest.raises(MediaRefused, match="symbolic link"):
        probe_audio(MediaRoot(tmp_path), "link.wav")  # the same media-root seam as the copy


def test_the_demo_media_are_what_the_catalog_says(tmp_path: Path) -> None:
    """The seed's recordings last exactly what it stores, decode end to end, and its covers are RGB squares."""
    paths = {demo_media.track_audio(s)[0] for s in demo_media.AUDIO_SECONDS}
    assert any(p.endswith(".wav") for p in paths) and any(p.endswith(".flac") for p in paths)
    demo_media.write_media(tmp_path, paths | {"covers/cover-1400.jpg", "covers/cover-3000.png"})
    root = MediaRoot(tmp_path)
    for seconds in demo_media.AUDIO_SECONDS:
        path, length = demo_media.track_audio(seconds)
        assert length == seconds
        assert probe_audio(root, path).duration_seconds == seconds
    info = soundfile.info(str(tmp_path / demo_media.track_audio(412)[0]))  # libsndfile decodes every frame
    assert (info.frames, info.samplerate, info.channels) == (412 * 44100, 44100, 2)
    data, _ = soundfile.read(str(tmp_path / demo_media.track_audio(412)[0]), dtype="int16")
    assert len(data) == 412 * 44100
    for name, fmt in (("covers/cover-1400.jpg", "JPEG"), ("covers/cover-3000.png", "PNG")):
        with Image.open(tmp_path / name) as im:
            im.load()
            assert im.format == fmt and im.mode == "RGB" and im.size[0] == im.size[1] >= 1400
    # a release's tracks never share a recording
    taken: set[int] = set()
    for _ in range(len(demo_media.AUDIO_SECONDS)):
        taken.add(demo_media.track_audio(200, taken)[1])
    assert taken == set(demo_media.AUDIO_SECONDS)
    assert sum(len(demo_media.file_bytes(p)) for p in paths) < 2_700_000  # a few MB whatever the catalog's size


# ----------------------------------------------------------------- the rules


def _release(media: Path, *, durations: tuple[int, ...] = (3, 4), cover: tuple[int, int] = (1400, 1400),
             audio: bool = True, rid: int = 9) -> Release:
    write_wav(media / "a" / "1.wav", 3.0)
    write_flac(media / "a" / "2.flac", 4.0, 48000, 2, "PCM_24")
    write_image(media / "c" / "cover.jpg", cover, "RGB", "JPEG")
    files = ("a/1.wav", "a/2.flac")
    tracks = tuple(
        Track(100 + i, 1, i + 1, f"FRZ03{i:07d}", f"Song {i + 1}", duration_seconds=d,
              audio_file=files[i] if audio or i == 0 else None, audio_md5="0" * 32 if audio or i == 0 else None)
        for i, d in enumerate(durations)
    )
    return Release(rid, "R", "Album", tracks=tracks,
                   cover_image=CoverImage("c/cover.jpg", "0" * 32, 3000, 3000, "image/png"))


def test_the_release_gets_what_its_files_say(tmp_path: Path) -> None:
    out = check_media(_release(tmp_path), MediaPolicy(root=MediaRoot(tmp_path)))
    assert out.problems == []
    assert [t.audio for t in out.release.tracks] == [AudioDetails("PCM", "WAV", 2, 44100, 16, 3.0),
                                                       AudioDetails("FLAC", None, 2, 48000, 24, 4.0)]
    cover = out.release.cover_image
    assert cover is not None and (cover.width, cover.height, cover.mime_type, cover.color_mode) == (
        1400, 1400, "image/jpeg", "RGB")
    # the catalog said 3000 x 3000 PNG: the message says what the file is, and the label is told
    assert any("3000 x 3000 pixels, but" in w and "fix: correct release_images.width" in w for w in out.warnings)
    assert any("image/png, but" in w for w in out.warnings)


def test_a_duration_off_by_more_than_a_second_is_warned_about(tmp_path: Path) -> None:
    out = check_media(_release(tmp_path, durations=(4, 6)), MediaPolicy(root=MediaRoot(tmp_path)))
    assert out.problems == []
    off = [w for w in out.warnings if "in the catalog" in w]
    assert len(off) == 1  # 4 s against 3.0 s is within a second; 6 s against 4.0 s is not
    assert "release 9: track 1-2 'Song 2'" in off[0] and "lasts 0:06 in the catalog" in off[0]
    assert "but 0:04 in its audio file" in off[0] and "fix: correct tracks.duration_seconds" in off[0]


def test_missing_audio_rejects_when_the_recipient_requires_media_else_warns(tmp_path: Path) -> None:
    release = _release(tmp_path, audio=False)
    strict = check_media(release, MediaPolicy(require_media=True, recipient="store-a"))
    [problem] = strict.problems
    assert problem.field == "tracks[1].audio_file"
    assert "track 1-2 'Song 2' (track_id 101, ISRC FRZ030000001) has no audio file" in problem.problem
    assert "recipient store-a requires media" in problem.problem
    assert "tracks.audio_file" in problem.fix and "require_media = false for recipient store-a" in problem.fix
    lenient = check_media(release, MediaPolicy(require_media=False))
    assert lenient.problems == []
    [warning] = lenient.warnings
    assert warning.startswith("release 9: 1 of 2 sound recordings have no audio file (track 1-2")
    # a takedown is never held back: the rule only warns
    takedown = check_media(release, MediaPolicy(require_media=True), takedown=True)
    assert takedown.problems == [] and len(takedown.warnings) == 1


@pytest.mark.parametrize(("size", "minimum", "words"), [
    ((1000, 1000), 1400, "smaller than load.min_cover_px = 1400"),
    ((1400, 1500), 1400, "not square"),
    ((1400, 1400), 3000, "smaller than load.min_cover_px = 3000"),
])
def test_a_small_or_oblong_cover_is_rejected(tmp_path: Path, size, minimum, words) -> None:
    out = check_media(_release(tmp_path, cover=size), MediaPolicy(root=MediaRoot(tmp_path), min_cover_px=minimum))
    assert any(words in p.problem and p.field == "cover_image" and "pixels" in p.fix for p in out.problems), out.problems
    # without a media root, the catalog's size is what is checked
    said = dataclasses.replace(_release(tmp_path), cover_image=CoverImage("c/cover.jpg", "0" * 32, *size, "image/jpeg"))
    assert any(words in p.problem for p in check_media(said, MediaPolicy(min_cover_px=minimum)).problems)


def test_a_file_that_cannot_be_read_rejects_the_release(tmp_path: Path) -> None:
    release = _release(tmp_path)
    (tmp_path / "a" / "2.flac").write_bytes(b"garbage" * 100)
    (tmp_path / "a" / "1.wav").unlink()
    out = check_media(release, MediaPolicy(root=MediaRoot(tmp_path)))
    fields = {p.field: p for p in out.problems}
    assert "not found" in fields["tracks[0].audio_file"].problem
    assert "not an audio file" in fields["tracks[1].audio_file"].problem


def test_a_batch_without_a_media_root_is_warned_about_per_release(tmp_path: Path) -> None:
    out = check_media(_release(tmp_path), MediaPolicy(batch_without_media=True))
    assert any("names 3 media files that the batch does not hold" in w and "load.media_root" in w for w in out.warnings)


@pytest.mark.parametrize("version", ["4.3", "4.2", "3.8.2"])
def test_probed_details_go_into_technical_details_valid_in_every_version(tmp_path: Path, version: str,
                                                                          schema_dir: Path) -> None:
    from ern_strategies import full_album

    album = full_album(n_tracks=2, discs=1)
    media = _release(tmp_path, cover=(3000, 3000))
    release = dataclasses.replace(
        album,
        tracks=tuple(dataclasses.replace(t, audio_file=m.audio_file, audio_md5="0" * 32, duration_seconds=m.duration_seconds)
                     for t, m in zip(album.tracks, media.tracks, strict=True)),
        cover_image=CoverImage("c/cover.jpg", "0" * 32, None, None, "image/jpeg"),
    )
    checked = check_media(release, MediaPolicy(root=MediaRoot(tmp_path)))
    assert checked.problems == []
    xml = build(checked.release, BuildContext(ern_version=version)).xml
    assert validate_bytes(xml, schema_dir) == []
    assert b"<AudioCodecType>PCM</AudioCodecType><NumberOfChannels>2</NumberOfChannels>" in xml
    assert b'<SamplingRate UnitOfMeasure="kHz">48</SamplingRate><BitsPerSample>24</BitsPerSample><Duration>PT4S</Duration>' in xml
    assert b'<ImageWidth UnitOfMeasure="Pixel">3000</ImageWidth><ColorDepth>24</ColorDepth>' in xml
    assert (b"<ContainerFormat>WAV</ContainerFormat>" in xml) == (version != "4.2")  # ERN 4.2 has no ContainerFormat
    # without probing, the message is what it was: no details invented
    plain = build(release, BuildContext(ern_version=version)).xml
    assert b"AudioCodecType" not in plain and b"ColorDepth" not in plain


def test_the_builder_stays_pure_details_are_only_written(tmp_path: Path) -> None:
    """A record's details are written as given (nothing is read); values DDEX has no room for are left out."""
    from ern_strategies import full_album

    album = full_album(n_tracks=1, discs=1)
    odd = AudioDetails("Opus", "Matroska", 0, 44100, None, 12.25)
    release = dataclasses.replace(album, tracks=(dataclasses.replace(album.tracks[0], audio=odd),))
    xml = build(release).xml
    assert b"Opus" not in xml and b"Matroska" not in xml and b"<NumberOfChannels>" not in xml
    assert b'<SamplingRate UnitOfMeasure="kHz">44.1</SamplingRate><Duration>PT12.25S</Duration>' in xml
    assert io.BytesIO(xml).read(5) == b"<?xml"
