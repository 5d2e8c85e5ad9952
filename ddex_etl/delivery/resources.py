"""A release's media files (audio, front-cover image) copied into its batch folder, MD5-checked.

In a DDEX batch each release folder carries the files its message refers to::

    <batch_id>/<release>/<release>.xml          the message; its file URIs are
    <batch_id>/<release>/resources/01.flac      relative to the release folder:
    <batch_id>/<release>/resources/cover.jpg    "resources/01.flac", ...

Two steps, so ``etl run`` (``ddex_etl.delivery.media``) writes the URIs into the message before anything is copied:

1. ``plan_resources(items)`` (pure): each catalog media path becomes the URI
   ``resources/<file name>``; a file name used twice by different sources
   gets ``-2``, ``-3``, ... before its extension (compared case-insensitively,
   as stores' file systems may be); the same source listed twice shares one
   URI; a path that would leave the media root is a ``FieldProblem``.
2. ``copy_resources(release_id, plan, media_root, release_dir)``: streams each
   file from the media root (a folder or any fsspec URL) into
   ``release_dir/resources/`` through a temp file, hashing it on the way
   (1 MiB blocks, bounded memory), and renames it into place only when the
   MD5 matches the catalog's. Any missing or mismatched file raises
   ``MediaError`` for the release, listing every problem (path, expected
   and actual MD5, fix) after removing what this call copied; the caller
   rejects that release and the batch ships the others. A file already in
   place with the right MD5 (a resumed run) is not copied again.
"""
from __future__ import annotations

import hashlib
import os
import re
import unicodedata
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import ConfigError, FieldProblem, MediaError
from ..models import Release
from .paths import is_safe_relpath
from .targets import check_options

RESOURCES = "resources"
_BLOCK = 1 << 20
_MD5 = re.compile(r"^[0-9a-fA-F]{32}$")
_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True, slots=True)
class MediaItem:
    """One media file a release's message references, as the catalog gives it."""

    source: str  # path relative to the media root
    md5: str | None  # hex MD5 from the catalog (None: copied unverified, with a warning)
    field: str  # where it came from, for messages: "tracks[2].audio_file", "cover_image"


@dataclass(frozen=True, slots=True)
class PlannedResource:
    """A media file and the URI the message uses for it (``resources/<name>``)."""

    item: MediaItem
    uri: str


@dataclass(frozen=True, slots=True)
class CopiedResource:
    """A file now in the release folder."""

    uri: str
    size: int
    md5: str
    verified: bool  # False when the catalog had no MD5 to check against
    copied: bool  # False when it was already in place with that MD5


def release_media(release: Release, cover: tuple[str, str | None] | None = None) -> list[MediaItem]:
    """The media of a release: each track's ``audio_file`` (with ``audio_md5``), then the cover, if given.

    ``cover`` is (path, md5) of the front-cover image; the catalog's cover
    columns are added by another change, so the caller passes them here.
    """
    items = [
        MediaItem(t.audio_file, t.audio_md5, f"tracks[{i}].audio_file")
        for i, t in enumerate(release.tracks)
        if t.audio_file
    ]
    if cover and cover[0]:
        items.append(MediaItem(cover[0], cover[1], "cover_image"))
    return items


def _clean_name(name: str) -> str:
    """A file name every store's file system and URI parser accepts: ASCII letters, digits, ``._-``."""
    name = unicodedata.normalize("NFC", name).strip()
    name = _UNSAFE_NAME_CHARS.sub("_", name)
    return name.lstrip(".") or "file"


def resource_uri(source: str, taken: dict[str, str] | None = None) -> str:
    """The URI a media path gets inside the message: ``resources/<file name>``.

    ``taken`` maps lower-cased names already used to their source; a name
    used by another source gets ``-2``, ``-3``, ... before its extension, and
    the mapping is updated. Raises ``ValueError`` for a path that is not safe.
    """
    if not is_safe_relpath(source):
        raise ValueError(f"media path {source!r} is not a safe relative path")
    taken = {} if taken is None else taken
    name = _clean_name(PurePosixPath(source).name)
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        stem, ext, dot = name, "", ""
    candidate, n = name, 1
    while taken.get(candidate.lower(), source) != source:
        n += 1
        candidate = f"{stem}-{n}{dot}{ext}"
    taken[candidate.lower()] = source
    return f"{RESOURCES}/{candidate}"


def plan_resources(items: Iterable[MediaItem]) -> tuple[list[PlannedResource], list[FieldProblem]]:
    """URIs for a release's media (pure, deterministic in the items' order) and the problems found."""
    planned: list[PlannedResource] = []
    problems: list[FieldProblem] = []
    taken: dict[str, str] = {}
    by_source: dict[str, str] = {}
    for item in items:
        if not is_safe_relpath(item.source):
            problems.append(FieldProblem(
                item.field, item.source, "is not a safe path inside the media root (absolute, '..', a backslash or a "
                "control character)", "store media paths relative to the media root, e.g. 'audio/0001/01.flac'"))
            continue
        if item.md5 is not None and not _MD5.match(item.md5):
            problems.append(FieldProblem(item.field, item.md5, "is not an MD5 (32 hex digits)",
                                         "store the file's MD5 as 32 hex digits, or leave it NULL"))
            continue
        uri = by_source.get(item.source)
        if uri is None:
            uri = by_source[item.source] = resource_uri(item.source, taken)
        planned.append(PlannedResource(item, uri))
    return planned, problems


# --------------------------------------------------------------------------- copying


class MediaRoot:
    """Where media files are read from: a local folder or any fsspec URL (``s3://bucket/media``, ...).

    ``storage_options`` go to the fsspec filesystem (e.g. ``client_kwargs``
    with an ``endpoint_url``); options that look like secrets are refused, as
    for targets: credentials come from the environment.
    """

    def __init__(self, url: str | os.PathLike[str], **storage_options: Any) -> None:
        import fsspec

        url = os.fspath(url)
        check_options(url, storage_options)
        self.url = url
        try:
            self.fs, self.root = fsspec.core.url_to_fs(url, **storage_options)
        except (ImportError, ValueError) as exc:
            raise ConfigError(f"media root {url}: {exc}; fix: use a folder or a URL fsspec can open") from None
        self.root = self.root.rstrip("/")

    def path(self, source: str) -> str:
        return f"{self.root}/{source}"

    def open(self, source: str) -> Any:
        return self.fs.open(self.path(source), "rb")


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _local_md5(path: Path) -> str | None:
    try:
        digest = hashlib.md5()
        with open(path, "rb") as f:
            while block := f.read(_BLOCK):
                digest.update(block)
        return digest.hexdigest()
    except FileNotFoundError:
        return None


def copy_resources(release_id: object, plan: Sequence[PlannedResource], media_root: MediaRoot | str | os.PathLike[str],
                   release_dir: str | os.PathLike[str], *, durable: bool = True) -> list[CopiedResource]:
    """Copy a release's planned media into ``release_dir/resources/``, checking each MD5 while copying.

    Returns what is in place. Raises ``MediaError`` naming every missing or
    mismatched file (nothing this call copied is left behind then).
    """
    root = media_root if isinstance(media_root, MediaRoot) else MediaRoot(media_root)
    dest_dir = Path(release_dir) / RESOURCES
    done: list[CopiedResource] = []
    new_files: list[Path] = []
    problems: list[FieldProblem] = []
    seen: set[str] = set()
    for p in plan:
        if p.uri in seen:
            continue
        seen.add(p.uri)
        item = p.item
        if not is_safe_relpath(item.source) or not is_safe_relpath(p.uri) or not p.uri.startswith(RESOURCES + "/"):
            problems.append(FieldProblem(item.field, item.source, f"is not a safe media path (URI {p.uri!r})",
                                         "plan the release's media with plan_resources()"))
            continue
        final = Path(release_dir) / p.uri
        expected = item.md5.lower() if item.md5 else None
        if expected is not None and final.is_file() and _local_md5(final) == expected:
            done.append(CopiedResource(p.uri, final.stat().st_size, expected, True, False))
            continue
        dest_dir.mkdir(parents=True, exist_ok=True)
        tmp = dest_dir / f".{final.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.etl-tmp"
        try:
            size, actual = _stream_copy(root, item.source, tmp, durable)
        except FileNotFoundError:
            tmp.unlink(missing_ok=True)
            problems.append(FieldProblem(
                item.field, item.source,
                f"file not found at {root.path(item.source)} (expected MD5 {expected or 'not given'})",
                "put the file there, or correct the path in the catalog, then retry the release"))
            continue
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            problems.append(FieldProblem(
                item.field, item.source, f"cannot be read from {root.path(item.source)}: {exc}",
                "check the media root and the file's permissions, then retry the release"))
            continue
        if expected is not None and actual != expected:
            tmp.unlink(missing_ok=True)
            problems.append(FieldProblem(
                item.field, item.source,
                f"MD5 of {root.path(item.source)} is {actual}, the catalog says {expected} ({size:,} bytes read)",
                "replace the file with the right one, or correct the MD5 in the catalog, then retry the release"))
            continue
        os.replace(tmp, final)
        new_files.append(final)
        done.append(CopiedResource(p.uri, size, actual, expected is not None, True))
    if problems:
        for f in new_files:
            f.unlink(missing_ok=True)
        raise MediaError(release_id, problems)
    if durable and new_files:
        _fsync_dir(dest_dir)
    return done


def _stream_copy(root: MediaRoot, source: str, tmp: Path, durable: bool) -> tuple[int, str]:
    digest = hashlib.md5()
    size = 0
    try:
        with root.open(source) as src, open(tmp, "wb") as out:
            while block := src.read(_BLOCK):
                digest.update(block)
                out.write(block)
                size += len(block)
            out.flush()
            if durable:
                os.fsync(out.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return size, digest.hexdigest()
