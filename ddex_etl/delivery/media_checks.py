"""A release's media against a recipient's rules, and the technical details read from the files.

``check_media(release, policy)`` runs in the worker, before the message is
built (the builder stays pure: what the files say goes in as record fields).
It returns the release with ``Track.audio`` and the cover's true width,
height, MIME type and colour mode filled in from the files themselves
(``probe``; only when the policy has a media root), the problems that reject
it, and the warnings to log:

* a sound recording without an audio file: with ``require_media`` (the
  default for a recipient with a target) the release is rejected, naming
  each track and the fix; otherwise one warning for the release;
* a ``ddex-batch`` run without a media root: the message names files the
  batch does not hold (a warning per release; ``require_media`` refuses
  that configuration before the run starts);
* an audio file or cover that cannot be opened or read (missing, a link, not
  audio or not an image): rejected, as its copy into the batch would be (a
  file without a catalog MD5 is not read unless unverified media are
  allowed: its copy refuses it);
* a track whose catalog duration differs from its file's by more than a
  second: a warning (the message carries both: the catalog's on the sound
  recording, the file's in its technical details);
* a cover smaller than ``min_cover_px`` on either side, or not square:
  rejected (the file's size when read, else the catalog's width and height);
  a cover whose file disagrees with the catalog's size or type, or in CMYK:
  a warning.

A takedown is never held back by the recipient's rules (``require_media``,
``min_cover_px``): for it they only warn, since a store must still be told
to take the release down. A file that cannot be read rejects it all the
same, as its copy into the batch would.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..errors import FieldProblem
from ..models import AudioDetails, CoverImage, Release, Track
from .media_source import MAX_MEDIA_BYTES, MediaRefused, MediaRoot
from .media_probe import ImageDetails, ProbeError, probe_audio, probe_image

DEFAULT_MIN_COVER_PX = 1400  # stores' usual minimum; 3000 x 3000 is what most recommend
DURATION_TOLERANCE = 1.0  # seconds between the catalog's duration and the file's before a warning


@dataclass(frozen=True)
class MediaPolicy:
    """What one recipient's run expects of a release's media."""

    require_media: bool = False
    min_cover_px: int = DEFAULT_MIN_COVER_PX
    root: MediaRoot | None = None  # where the files are read from (None: not read, nothing probed)
    max_bytes: int = MAX_MEDIA_BYTES
    batch_without_media: bool = False  # a ddex-batch run without a media root
    allow_unverified: bool = False  # a file without a catalog MD5 is read (else its copy refuses it, unread)
    recipient: str | None = None  # its name, for fixes


@dataclass
class MediaCheck:
    """``check_media``'s answer: the release with what its files say, problems (reject) and warnings."""

    release: Release
    problems: list[FieldProblem]
    warnings: list[str]


def _clock(seconds: float) -> str:
    whole = int(seconds)
    frac = seconds - whole
    text = f"{whole // 60}:{whole % 60:02d}"
    return text + (f"{frac:.3f}".lstrip("0").rstrip("0").rstrip(".") if frac >= 0.0005 else "")


def _track_name(t: Track) -> str:
    title = f" {t.title!r}" if t.title else ""
    isrc = f", ISRC {t.isrc}" if t.isrc else ""
    return f"track {t.disc_number}-{t.track_number}{title} (track_id {t.track_id}{isrc})"


def check_media(release: Release, policy: MediaPolicy, *, takedown: bool = False) -> MediaCheck:
    """Check ``release``'s media under ``policy`` and read their technical details (see the module)."""
    problems: list[FieldProblem] = []
    warnings: list[str] = []
    rid = release.release_id
    strict = not takedown

    missing = [(i, t) for i, t in enumerate(release.tracks) if not t.audio_file]
    if missing:
        where = (f"recipient {policy.recipient} requires media (require_media = true)" if policy.recipient
                 else "load.require_media = true")
        relax = (f"or set require_media = false for recipient {policy.recipient}" if policy.recipient
                 else "or set load.require_media = false")
        if policy.require_media and strict:
            for i, t in missing:
                problems.append(FieldProblem(
                    f"tracks[{i}].audio_file", None,
                    f"{_track_name(t)} has no audio file, and {where}",
                    "put the recording in the media root and its path and MD5 in the catalog (tracks.audio_file, "
                    f"tracks.audio_md5), {relax} to send the release without it"))
        else:
            names = ", ".join(_track_name(t) for _, t in missing)
            warnings.append(
                f"release {rid}: {len(missing)} of {len(release.tracks)} sound recordings have no audio file ({names}): "
                "their message carries no TechnicalDetails, and a store will wait for audio it never gets; fix: add "
                "the files (tracks.audio_file, tracks.audio_md5)")

    if policy.batch_without_media:
        named = sum(1 for t in release.tracks if t.audio_file) + int(bool(release.cover_image and release.cover_image.file))
        if named:
            warnings.append(
                f"release {rid}: its message names {named} media file{'s' if named != 1 else ''} that the batch does "
                "not hold (no media root, so nothing is copied into resources/); fix: set load.media_root (or the "
                "recipient's media_root) to the folder holding the catalog's audio and covers")

    tracks = release.tracks
    cover = release.cover_image
    if policy.root is not None:
        tracks = _probe_tracks(release, policy, problems, warnings)
        if cover is not None and cover.file and (cover.md5 is not None or policy.allow_unverified):
            cover = _probe_cover(release, cover, policy, problems, warnings)

    if cover is not None and cover.width and cover.height:
        _cover_size(cover, policy, problems if strict else None, warnings, rid)

    if tracks is not release.tracks or cover is not release.cover_image:
        release = dataclasses.replace(release, tracks=tracks, cover_image=cover)
    return MediaCheck(release, problems, warnings)


def _unreadable(field: str, source: str, exc: MediaRefused | ProbeError, expected_md5: str | None) -> FieldProblem:
    problem = exc.problem
    if isinstance(exc, MediaRefused) and exc.missing:
        problem += f" (expected MD5 {expected_md5 or 'not given'})"
    return FieldProblem(field, source, problem, exc.fix)


def _probe_tracks(release: Release, policy: MediaPolicy, problems: list[FieldProblem],
                  warnings: list[str]) -> tuple[Track, ...]:
    assert policy.root is not None
    read: dict[str, AudioDetails | None] = {}
    out: list[Track] = []
    changed = False
    for i, t in enumerate(release.tracks):
        source = t.audio_file
        if not source or (t.audio_md5 is None and not policy.allow_unverified):
            out.append(t)
            continue
        if source not in read:
            try:
                read[source] = probe_audio(policy.root, source, max_bytes=policy.max_bytes)
            except (MediaRefused, ProbeError) as exc:
                read[source] = None
                problems.append(_unreadable(f"tracks[{i}].audio_file", source, exc, t.audio_md5))
            except OSError as exc:
                read[source] = None
                problems.append(FieldProblem(f"tracks[{i}].audio_file", source,
                                             f"cannot be read from {policy.root.path(source)}: {exc}",
                                             "check the media root and the file's permissions, then retry the release"))
        details = read[source]
        if details is None:
            out.append(t)
            continue
        catalog = t.duration_seconds
        if (details.duration_seconds is not None and isinstance(catalog, (int, float)) and not isinstance(catalog, bool)
                and abs(float(catalog) - details.duration_seconds) > DURATION_TOLERANCE):
            warnings.append(
                f"release {release.release_id}: {_track_name(t)} lasts {_clock(float(catalog))} in the catalog "
                f"(tracks.duration_seconds = {catalog}) but {_clock(details.duration_seconds)} in its audio file "
                f"{policy.root.path(source)}; fix: correct tracks.duration_seconds, or replace the file with the "
                "right recording")
        out.append(dataclasses.replace(t, audio=details))
        changed = True
    return tuple(out) if changed else release.tracks


def _probe_cover(release: Release, cover: CoverImage, policy: MediaPolicy, problems: list[FieldProblem],
                 warnings: list[str]) -> CoverImage:
    assert policy.root is not None and cover.file
    try:
        image: ImageDetails = probe_image(policy.root, cover.file, max_bytes=policy.max_bytes)
    except (MediaRefused, ProbeError) as exc:
        problems.append(_unreadable("cover_image", cover.file, exc, cover.md5))
        return cover
    except OSError as exc:
        problems.append(FieldProblem("cover_image", cover.file, f"cannot be read from {policy.root.path(cover.file)}: {exc}",
                                     "check the media root and the file's permissions, then retry the release"))
        return cover
    rid = release.release_id
    shown = policy.root.path(cover.file)
    if image.mime_type is None:
        problems.append(FieldProblem("cover_image", cover.file, f"{shown} is a {image.format or 'unknown'} image, a "
                                     "format DDEX has no image codec for",
                                     "convert the cover to JPEG or PNG, then retry the release"))
        return cover
    said = (cover.width, cover.height)
    if said != (None, None) and said != (image.width, image.height):
        warnings.append(
            f"release {rid}: the catalog says the cover is {cover.width} x {cover.height} pixels, but {shown} is "
            f"{image.width} x {image.height} (the message says what the file is); fix: correct release_images.width "
            "and height")
    if cover.mime_type and cover.mime_type.lower() != image.mime_type and not (
            image.mime_type == "image/jpeg" and cover.mime_type.lower() in ("image/jpg", "image/pjpeg")):
        warnings.append(
            f"release {rid}: the catalog says the cover is {cover.mime_type}, but {shown} is {image.mime_type} (the "
            "message says what the file is); fix: correct release_images.mime_type")
    if image.mode == "CMYK":
        warnings.append(f"release {rid}: the cover {shown} is in CMYK colour; stores expect RGB; fix: convert it to RGB")
    return dataclasses.replace(cover, width=image.width, height=image.height, mime_type=image.mime_type,
                               color_mode=image.mode)


def _cover_size(cover: CoverImage, policy: MediaPolicy, problems: list[FieldProblem] | None, warnings: list[str],
                rid: object) -> None:
    w, h = cover.width, cover.height
    assert w and h
    found: list[FieldProblem] = []
    setting = (f"min_cover_px = {policy.min_cover_px} for recipient {policy.recipient}" if policy.recipient
               else f"load.min_cover_px = {policy.min_cover_px}")
    if w != h:
        found.append(FieldProblem("cover_image", cover.file, f"the front cover is {w} x {h} pixels, not square",
                                  "crop or pad it to a square (3000 x 3000 pixels is what stores recommend), then retry "
                                  "the release"))
    if min(w, h) < policy.min_cover_px:
        found.append(FieldProblem("cover_image", cover.file,
                                  f"the front cover is {w} x {h} pixels, smaller than {setting} on a side",
                                  f"supply a cover of at least {policy.min_cover_px} x {policy.min_cover_px} pixels "
                                  "(3000 x 3000 is what stores recommend), then retry the release"))
    if problems is not None:
        problems.extend(found)
    else:
        warnings.extend(f"release {rid} (takedown): {p}" for p in found)
