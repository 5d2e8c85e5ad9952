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
   file from the media root (a folder or any fsspec URL, always opened
   through ``media_source.MediaRoot.open``: no link followed, regular files
   only, none empty or over ``max_bytes``) into ``release_dir/resources/``
   through a temp file, hashing it on the way (1 MiB blocks, bounded
   memory), and renames it into place only when the MD5 matches the
   catalog's. A file without a catalog MD5 is refused unless
   ``allow_unverified``. Any refused, missing or mismatched file raises
   ``MediaError`` for the release, listing every problem (field, path,
   expected and actual MD5, fix) after removing what this call copied; the
   caller rejects that release and the batch ships the others. A fault
   writing the batch raises ``ResourceWriteError`` (an ``OSError``) instead:
   the output is at fault, not the release (``etl run`` fails, resumable). A
   file already in place with the right MD5 (a resumed run) is not copied
   again.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
import unicodedata
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import FieldProblem, MediaError
from ..models import Release
from .media_source import MAX_MEDIA_BYTES, MediaFile, MediaRefused, MediaRoot
from .paths import is_safe_relpath

RESOURCES = "resources"
_BLOCK = 1 << 20
_MD5 = re.compile(r"^[0-9a-fA-F]{32}$")
_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True, slots=True)
class MediaItem:
    """One media file a release's message references, as the catalog gives it."""

    source: str  # path relative to the media root
    md5: str | None  # hex MD5 from the catalog (None: refused unless unverified media are allowed)
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
    verified: bool  # False when the catalog had no MD5 to check against (allow_unverified)
    copied: bool  # False when it was already in place with that MD5
    source: str = ""  # the media path it came from
    field: str = ""  # the catalog field that named it


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
#
# Every media file is read through MediaRoot.open (media_source): no link, no
# special file, nothing empty or over load.max_media_bytes. A fault reading the
# media root is the release's problem (MediaError: rejected, the batch ships the
# others); a fault writing into the batch (disk full, quota, read-only, EIO) is
# the output's (ResourceWriteError: `etl run` fails, `etl resume` finishes it).


class ResourceWriteError(OSError):
    """Writing a resource into the release folder failed: the output's fault (space, permissions), not the release's.

    ``path``: the file, as the caller named the folder; ``what``: the field
    and release it was copied for.
    """

    def __init__(self, exc: OSError, path: Path, what: str) -> None:
        super().__init__(exc.errno, exc.strerror)
        self.path, self.what = path, what

    def __str__(self) -> str:
        return f"cannot copy {self.what} into {self.path}: {self.strerror}"


class _SourceFault(Exception):
    """An OSError while reading the media root (its ``__cause__``), told apart from faults writing the batch."""


def _distinct(plan: Sequence[PlannedResource]) -> list[PlannedResource]:
    seen: set[str] = set()
    out = []
    for p in plan:
        if p.uri not in seen:
            seen.add(p.uri)
            out.append(p)
    return out


def _md5_column(field: str) -> str:
    return "tracks.audio_md5" if field.endswith("audio_file") else "release_images.md5"


def _unverified(item: MediaItem, root: MediaRoot) -> FieldProblem:
    return FieldProblem(
        item.field, item.source,
        f"{root.path(item.source)} has no MD5 in the catalog, so nothing shows it is the right file",
        f"store its MD5 in the catalog ({_md5_column(item.field)} in the reference schema), or set "
        "allow_unverified_media = true for this recipient (or load.allow_unverified_media) to send such files "
        "unchecked, then retry the release")


def _refused(item: MediaItem, exc: MediaRefused, expected: str | None) -> FieldProblem:
    problem = f"{exc.problem} (expected MD5 {expected or 'not given'})" if exc.missing else exc.problem
    return FieldProblem(item.field, item.source, problem, exc.fix)


def _unreadable(item: MediaItem, exc: BaseException | None, root: MediaRoot) -> FieldProblem:
    return FieldProblem(item.field, item.source, f"cannot be read from {root.path(item.source)}: {exc}",
                        "check the media root and the file's permissions, then retry the release")


def _root(media_root: MediaRoot | str | os.PathLike[str]) -> MediaRoot:
    return media_root if isinstance(media_root, MediaRoot) else MediaRoot(media_root)


def check_resources(plan: Sequence[PlannedResource], media_root: MediaRoot | str | os.PathLike[str], *,
                    allow_unverified: bool = False, max_bytes: int = MAX_MEDIA_BYTES) -> list[FieldProblem]:
    """What ``copy_resources`` would refuse, found without reading a byte (so MD5s are not compared)."""
    root = _root(media_root)
    problems: list[FieldProblem] = []
    for p in _distinct(plan):
        item = p.item
        if item.md5 is None and not allow_unverified:
            problems.append(_unverified(item, root))
            continue
        try:
            root.check(item.source, max_bytes=max_bytes)
        except MediaRefused as exc:
            problems.append(_refused(item, exc, item.md5))
        except OSError as exc:
            problems.append(_unreadable(item, exc, root))
    return problems


def copy_resources(release_id: object, plan: Sequence[PlannedResource], media_root: MediaRoot | str | os.PathLike[str],
                   release_dir: str | os.PathLike[str], *, durable: bool = True, allow_unverified: bool = False,
                   max_bytes: int = MAX_MEDIA_BYTES, shown_dir: str | os.PathLike[str] | None = None,
                   ) -> list[CopiedResource]:
    """Copy a release's planned media into ``release_dir/resources/``, checking each MD5 while copying.

    Returns what is in place. Raises ``MediaError`` naming every file the
    release cannot have (missing, a link, not a regular file, empty, over
    ``max_bytes``, a wrong MD5, or no MD5 unless ``allow_unverified``);
    nothing this call copied is left behind then. Raises
    ``ResourceWriteError`` (an ``OSError``) when writing into ``release_dir``
    fails (disk full, read-only, I/O error): not the release's fault, the
    caller stops. ``shown_dir`` names ``release_dir`` in messages (when it is
    reached through ``/proc/self/fd``).
    """
    root = _root(media_root)
    release_dir = Path(release_dir)
    shown = Path(shown_dir) if shown_dir is not None else release_dir
    dest_dir = release_dir / RESOURCES
    done: list[CopiedResource] = []
    new_files: list[Path] = []
    problems: list[FieldProblem] = []
    try:
        for p in _distinct(plan):
            item = p.item
            if not is_safe_relpath(item.source) or not is_safe_relpath(p.uri) or not p.uri.startswith(RESOURCES + "/"):
                problems.append(FieldProblem(item.field, item.source, f"is not a safe media path (URI {p.uri!r})",
                                             "plan the release's media with plan_resources()"))
                continue
            final = release_dir / p.uri
            expected = item.md5.lower() if item.md5 else None
            if expected is None and not allow_unverified:
                problems.append(_unverified(item, root))
                continue
            if expected is not None:
                size = _in_place(final, expected)
                if size is not None:  # a resumed run: already there, whole
                    done.append(CopiedResource(p.uri, size, expected, True, False, item.source, item.field))
                    continue
            try:
                src = root.open(item.source, max_bytes=max_bytes)
            except MediaRefused as exc:
                problems.append(_refused(item, exc, expected))
                continue
            except OSError as exc:
                problems.append(_unreadable(item, exc, root))
                continue
            with src:
                try:
                    tmp, size, actual = _stream_copy(src, dest_dir, final.name, durable)
                except MediaRefused as exc:
                    problems.append(_refused(item, exc, expected))
                    continue
                except _SourceFault as exc:
                    problems.append(_unreadable(item, exc.__cause__, root))
                    continue
                except OSError as exc:
                    raise _write_fault(exc, shown / p.uri, release_id, item) from exc
            if expected is not None and actual != expected:
                tmp.unlink(missing_ok=True)
                problems.append(FieldProblem(
                    item.field, item.source,
                    f"MD5 of {root.path(item.source)} is {actual}, the catalog says {expected} ({size:,} bytes read)",
                    "replace the file with the right one, or correct the MD5 in the catalog, then retry the release"))
                continue
            try:
                os.replace(tmp, final)  # a link or anything else planted at the name is replaced, never followed
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                raise _write_fault(exc, shown / p.uri, release_id, item) from exc
            new_files.append(final)
            done.append(CopiedResource(p.uri, size, actual, expected is not None, True, item.source, item.field))
        if problems:
            raise MediaError(release_id, problems)
        if durable and new_files:
            try:
                _fsync_dir(dest_dir)
            except OSError as exc:
                raise _write_fault(exc, shown / RESOURCES, release_id, None) from exc
    except BaseException:
        for f in new_files:
            with contextlib.suppress(OSError):
                f.unlink()
        raise
    return done


def hash_resources(release_id: object, plan: Sequence[PlannedResource],
                   media_root: MediaRoot | str | os.PathLike[str], *, allow_unverified: bool = False,
                   max_bytes: int = MAX_MEDIA_BYTES) -> list[CopiedResource]:
    """``copy_resources``'s checks without the copy: each file is read from the media root and hashed.

    For a recipient whose target is remote: the upload streams the files
    from the media root (and hashes them again on the way, committing
    nothing that changed meanwhile), so the batch holds no copy. Raises
    ``MediaError`` for what the release cannot have, exactly as
    ``copy_resources`` would. The results have ``copied`` False.
    """
    root = _root(media_root)
    done: list[CopiedResource] = []
    problems: list[FieldProblem] = []
    for p in _distinct(plan):
        item = p.item
        if not is_safe_relpath(item.source) or not is_safe_relpath(p.uri) or not p.uri.startswith(RESOURCES + "/"):
            problems.append(FieldProblem(item.field, item.source, f"is not a safe media path (URI {p.uri!r})",
                                         "plan the release's media with plan_resources()"))
            continue
        expected = item.md5.lower() if item.md5 else None
        if expected is None and not allow_unverified:
            problems.append(_unverified(item, root))
            continue
        digest = hashlib.md5()
        size = 0
        try:
            with root.open(item.source, max_bytes=max_bytes) as src:
                while block := src.read(_BLOCK):
                    digest.update(block)
                    size += len(block)
        except MediaRefused as exc:
            problems.append(_refused(item, exc, expected))
            continue
        except OSError as exc:
            problems.append(_unreadable(item, exc, root))
            continue
        actual = digest.hexdigest()
        if expected is not None and actual != expected:
            problems.append(FieldProblem(
                item.field, item.source,
                f"MD5 of {root.path(item.source)} is {actual}, the catalog says {expected} ({size:,} bytes read)",
                "replace the file with the right one, or correct the MD5 in the catalog, then retry the release"))
            continue
        done.append(CopiedResource(p.uri, size, actual, expected is not None, False, item.source, item.field))
    if problems:
        raise MediaError(release_id, problems)
    return done


def _write_fault(exc: OSError, path: Path, release_id: object, item: MediaItem | None) -> ResourceWriteError:
    what = f"{item.field} of release {release_id} ({item.source})" if item else f"the media of release {release_id}"
    return ResourceWriteError(exc, path, what)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _in_place(final: Path, expected: str) -> int | None:
    """The size of ``final`` when it is a regular file (not a link) with MD5 ``expected``, else None."""
    try:
        fd = os.open(final, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        digest = hashlib.md5()
        while block := os.read(fd, _BLOCK):
            digest.update(block)
        return st.st_size if digest.hexdigest() == expected else None
    except OSError:
        return None
    finally:
        os.close(fd)


def _stream_copy(src: MediaFile, dest_dir: Path, name: str, durable: bool) -> tuple[Path, int, str]:
    """Copy ``src`` to a new temp file in ``dest_dir``, hashing it: (temp path, size, MD5).

    Read faults come out as ``_SourceFault`` (or ``MediaRefused``), write
    faults as ``OSError``; the temp file is removed on any error.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    tmp = dest_dir / f".{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.etl-tmp"
    digest = hashlib.md5()
    size = 0
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        try:
            while True:
                try:
                    block = src.read(_BLOCK)
                except OSError as exc:
                    raise _SourceFault() from exc
                if not block:
                    break
                digest.update(block)
                view = memoryview(block)
                while view:
                    view = view[os.write(fd, view):]
                size += len(block)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return tmp, size, digest.hexdigest()
