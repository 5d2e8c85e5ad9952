"""Media resources: URIs inside the message, and MD5-checked copies from a folder or an S3 media root."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from conftest import S3Server

from ddex_etl.delivery import MediaItem, MediaRoot, copy_resources, plan_resources, release_media, resource_uri
from ddex_etl.errors import ConfigError, MediaError, ReleaseDataError
from ddex_etl.models import Release, Track

# --------------------------------------------------------------------------- URIs (pure)

URI_CASES = [
    # (sources in order, expected URIs)
    (["audio/1/01.flac", "audio/1/02.flac"], ["resources/01.flac", "resources/02.flac"]),
    (["a/01.flac", "b/01.flac", "c/01.flac"], ["resources/01.flac", "resources/01-2.flac", "resources/01-3.flac"]),
    (["a/Cover.JPG", "b/cover.jpg"], ["resources/Cover.JPG", "resources/cover-2.jpg"]),  # case-insensitive stores
    (["a/01.flac", "a/01.flac"], ["resources/01.flac", "resources/01.flac"]),  # one source, one URI
    (["a/my song?.flac"], ["resources/my_song_.flac"]),  # no spaces: they would need escaping in a URI
    (["a/Café.flac"], ["resources/Caf_.flac"]),
    (["a/.hidden.wav"], ["resources/hidden.wav"]),
    (["a/README"], ["resources/README"]),
    (["a/README", "b/README"], ["resources/README", "resources/README-2"]),
]


@pytest.mark.parametrize(("sources", "uris"), URI_CASES)
def test_resource_uris_are_relative_unique_and_deterministic(sources: list[str], uris: list[str]) -> None:
    planned, problems = plan_resources(MediaItem(s, None, f"tracks[{i}].audio_file") for i, s in enumerate(sources))
    assert problems == [] and [p.uri for p in planned] == uris
    taken: dict[str, str] = {}
    assert [resource_uri(s, taken) for s in sources] == uris


@pytest.mark.parametrize("source", ["/etc/passwd", "../../secret.flac", "a/../../b.flac", "a\\b.flac", "a/\x00.flac"])
def test_unsafe_media_paths_are_release_problems(source: str) -> None:
    planned, problems = plan_resources([MediaItem(source, None, "tracks[1].audio_file"), MediaItem("ok.flac", None, "x")])
    assert [p.uri for p in planned] == ["resources/ok.flac"]
    assert len(problems) == 1 and problems[0].field == "tracks[1].audio_file" and problems[0].value == source
    with pytest.raises(ValueError):
        resource_uri(source)


def test_a_malformed_catalog_md5_is_a_problem() -> None:
    _, problems = plan_resources([MediaItem("a.flac", "not-an-md5", "tracks[0].audio_file")])
    assert problems and "32 hex digits" in problems[0].problem


def test_release_media_lists_tracks_then_the_cover() -> None:
    release = Release(1, "T", "Album", tracks=(
        Track(10, 1, 1, "GBAYE2500001", "A", audio_file="a/01.flac", audio_md5="0" * 32),
        Track(11, 1, 2, "GBAYE2500002", "B"),  # no audio
        Track(12, 1, 3, "GBAYE2500003", "C", audio_file="a/03.flac"),
    ))
    items = release_media(release, cover=("img/cover.jpg", "1" * 32))
    assert [(i.source, i.field) for i in items] == [
        ("a/01.flac", "tracks[0].audio_file"), ("a/03.flac", "tracks[2].audio_file"), ("img/cover.jpg", "cover_image")]


# --------------------------------------------------------------------------- copying


def _media(root: Path, files: dict[str, bytes]) -> dict[str, str]:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return {rel: hashlib.md5(data).hexdigest() for rel, data in files.items()}


def test_copies_and_verifies_each_file(tmp_path: Path) -> None:
    media = tmp_path / "media"
    md5 = _media(media, {"a/01.flac": os.urandom(3_000_000), "img/cover.jpg": os.urandom(50_000)})
    planned, _ = plan_resources([MediaItem("a/01.flac", md5["a/01.flac"], "tracks[0].audio_file"),
                                 MediaItem("img/cover.jpg", md5["img/cover.jpg"].upper(), "cover_image")])
    release_dir = tmp_path / "batch" / "0602445790001"
    copied = copy_resources(7, planned, media, release_dir)
    assert [(c.uri, c.md5, c.verified, c.copied) for c in copied] == [
        ("resources/01.flac", md5["a/01.flac"], True, True), ("resources/cover.jpg", md5["img/cover.jpg"], True, True)]
    assert (release_dir / "resources" / "01.flac").read_bytes() == (media / "a/01.flac").read_bytes()
    assert sorted(p.name for p in (release_dir / "resources").iterdir()) == ["01.flac", "cover.jpg"]  # no temp files
    again = copy_resources(7, planned, media, release_dir)  # a resumed run: already in place, not copied again
    assert [c.copied for c in again] == [False, False]


def test_missing_and_mismatched_files_reject_the_release_naming_each(tmp_path: Path) -> None:
    media = tmp_path / "media"
    md5 = _media(media, {"a/01.flac": b"right audio", "a/02.flac": b"wrong audio"})
    items = [
        MediaItem("a/01.flac", md5["a/01.flac"], "tracks[0].audio_file"),
        MediaItem("a/02.flac", "0123456789abcdef0123456789abcdef", "tracks[1].audio_file"),
        MediaItem("a/03.flac", "fedcba9876543210fedcba9876543210", "tracks[2].audio_file"),
    ]
    planned, _ = plan_resources(items)
    release_dir = tmp_path / "batch" / "R"
    with pytest.raises(MediaError) as err:
        copy_resources(42, planned, media, release_dir)
    e = err.value
    assert isinstance(e, ReleaseDataError) and e.release_id == 42 and not e.retryable
    assert [p.field for p in e.problems] == ["tracks[1].audio_file", "tracks[2].audio_file"]
    text = str(e)
    assert text.startswith("release 42: ")
    assert f"{media}/a/02.flac" in text and md5["a/02.flac"] in text and "0123456789abcdef0123456789abcdef" in text
    assert f"{media}/a/03.flac" in text and "not found" in text and "fedcba9876543210fedcba9876543210" in text
    assert "fix:" in text
    # nothing of the rejected release stays behind, not even the good file or a temp file
    assert not (release_dir / "resources").exists() or list((release_dir / "resources").iterdir()) == []


def test_a_file_without_a_catalog_md5_is_copied_unverified_only_when_allowed(tmp_path: Path) -> None:
    media = tmp_path / "media"
    md5 = _media(media, {"a.wav": b"RIFF...."})
    planned, _ = plan_resources([MediaItem("a.wav", None, "tracks[0].audio_file")])
    with pytest.raises(MediaError, match="has no MD5 in the catalog"):
        copy_resources(1, planned, media, tmp_path / "R")
    [copied] = copy_resources(1, planned, media, tmp_path / "R", allow_unverified=True)
    assert copied.md5 == md5["a.wav"] and not copied.verified


def test_a_media_root_on_s3(s3_server: S3Server, tmp_path: Path) -> None:
    bucket = s3_server.bucket()
    client = s3_server.client()
    audio = os.urandom(2_500_000)
    client.put_object(Bucket=bucket, Key="media/a/01.flac", Body=audio)
    root = MediaRoot(f"s3://{bucket}/media", client_kwargs={"endpoint_url": s3_server.endpoint},
                     skip_instance_cache=True, use_listings_cache=False)
    good = hashlib.md5(audio).hexdigest()
    planned, _ = plan_resources([MediaItem("a/01.flac", good, "tracks[0].audio_file")])
    [copied] = copy_resources(1, planned, root, tmp_path / "R")
    assert copied.md5 == good and (tmp_path / "R" / "resources" / "01.flac").read_bytes() == audio
    planned, _ = plan_resources([MediaItem("a/02.flac", good, "tracks[1].audio_file")])
    with pytest.raises(MediaError, match=f"{bucket}/media/a/02.flac"):
        copy_resources(2, planned, root, tmp_path / "R2")


def test_media_root_refuses_secret_options() -> None:
    with pytest.raises(ConfigError, match="secret"):
        MediaRoot("s3://bucket/media", secret="hunter2")
