"""A release's audio and front cover in its DDEX batch folder, and the message pointing at them.

With ``load.layout = "ddex-batch"`` and a media root (``load.media_root`` or a
recipient's ``media_root``), the worker that builds a release also copies its
media (each track's ``audio_file``, the ``cover_image`` file) from the media
root into ``<release folder>/resources/``, checking the catalog's MD5 while
copying (``delivery.resources``; every file is opened through
``media_source.MediaRoot.open``: no link followed, regular files only, none
empty or over ``load.max_media_bytes``, and none without a catalog MD5
unless ``allow_unverified_media``). The message refers to them by their
relative URI (``resources/<file name>``), as DDEX's choreography expects: the
record's file fields are rewritten before the build (``with_resource_uris``),
so the builder stays pure and never learns where files live.

Crash safety is the files loader's: the release is listed in its chunk's
pending list (synced) before a byte of its media is written, so resources
of a chunk whose checkpoint never committed are removed with its message
(``load.FileLoader._reconcile``); the message itself still appears only at
the chunk's commit. A missing, refused or mismatched file raises
``MediaError``: the release is rejected (with the field, the path, both MD5s
and the fix), whatever was copied for it is removed, and the rest of the
batch ships. A fault writing the batch (disk full, read-only, I/O error)
raises ``OutputError``: the run fails, and `etl resume` finishes it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import FieldProblem, MediaError, OutputError
from ..load import RESOURCES, FileChunk, output_error, remove_resources
from ..models import Release
from .media_source import MAX_MEDIA_BYTES, MediaRoot
from .resources import CopiedResource, PlannedResource, ResourceWriteError, copy_resources, hash_resources, plan_resources, release_media
from .upload import write_media_list

_ROOTS: dict[str, MediaRoot] = {}  # per process: one fsspec filesystem per media root


def media_root(url: str) -> MediaRoot:
    """The media root for a folder or URL, opened once per process."""
    root = _ROOTS.get(url)
    if root is None:
        root = _ROOTS[url] = MediaRoot(url)
    return root


def check_media_root(url: str | None) -> None:
    """Before a run starts: a local media root must be a folder (a URL is checked by its first copy)."""
    if url is None or "://" in url:
        return
    if not Path(url).is_dir():
        raise OutputError(
            f"media root {url} is not a folder; fix: set load.media_root (or the recipient's media_root) to the "
            "folder holding the catalog's audio and cover files (`etl seed` writes the demo's into it)"
        )


def with_resource_uris(release: Release) -> tuple[Release, list[PlannedResource], list[FieldProblem]]:
    """The release with every media path replaced by its ``resources/...`` URI, the plan, and its problems."""
    cover = release.cover_image
    items = release_media(release, (cover.file, cover.md5) if cover is not None and cover.file else None)
    planned, problems = plan_resources(items)
    if problems or not planned:
        return release, planned, problems
    uri = {p.item.source: p.uri for p in planned}
    tracks = tuple(
        dataclasses.replace(t, audio_file=uri[t.audio_file]) if t.audio_file in uri else t for t in release.tracks
    )
    new_cover = cover
    if cover is not None and cover.file in uri:
        new_cover = dataclasses.replace(cover, file=uri[cover.file])
    return dataclasses.replace(release, tracks=tracks, cover_image=new_cover), planned, []


def copy_media(chunk: FileChunk, folder: str, release_id: int, planned: Sequence[PlannedResource], root: MediaRoot,
               *, max_bytes: int = MAX_MEDIA_BYTES, allow_unverified: bool = False) -> list[CopiedResource]:
    """Copy a release's planned media into ``<batch>/<folder>/resources/``; ``MediaError`` rejects the release.

    The release is registered in the chunk's pending list first (synced),
    and its folder is reached through a descriptor that never follows a link.
    ``OutputError``: the batch could not be written (the run stops). Returns
    what is in place (``verified`` False: sent without an MD5 to check).
    """
    if not planned:
        return []
    chunk.register(release_id, folder, sync=True)
    dfd = chunk.release_folder(folder)
    try:
        _refuse_link(dfd, chunk, folder)
        # The folder by its descriptor: a link planted at its name later cannot redirect the copies.
        where: Any = f"/proc/self/fd/{dfd}" if os.path.isdir("/proc/self/fd") else chunk.loader.root / folder
        try:
            return copy_resources(release_id, planned, root, where, durable=chunk.loader.durable,
                                  allow_unverified=allow_unverified, max_bytes=max_bytes,
                                  shown_dir=chunk.loader.root / folder)
        except MediaError:
            remove_resources(dfd)  # also files an earlier attempt left in place
            raise
        except ResourceWriteError as exc:  # the output's fault: the run stops, `etl resume` redoes the chunk
            remove_resources(dfd)
            raise OutputError(f"cannot copy {exc.what} into the batch: {output_error(exc, exc.path)}") from exc
        except OSError as exc:
            remove_resources(dfd)
            raise OutputError(
                f"release {release_id}: cannot write its resources into {chunk.loader.root / folder / RESOURCES}: "
                f"{exc}; fix: check the output folder (space, permissions), then `etl resume`"
            ) from exc
    except (MediaError, OutputError):
        os.close(dfd)
        dfd = -1
        chunk.drop_folder(folder)
        raise
    finally:
        if dfd >= 0:
            os.close(dfd)


def streams_media(target: str | None) -> bool:
    """Whether a recipient's media go straight from the media root to its target (a remote one), never copied locally."""
    if target is None:
        return False
    scheme = target.split("://", 1)[0].lower() if "://" in target else ""
    return scheme not in ("", "file")


def note_media(chunk: FileChunk, folder: str, release_id: int, planned: Sequence[PlannedResource], root: MediaRoot,
               root_url: str, *, max_bytes: int = MAX_MEDIA_BYTES, allow_unverified: bool = False,
               ) -> list[CopiedResource]:
    """A remote-only recipient's release: check its media (read and hashed) and list them for the upload, no copy.

    Same checks and rejections as ``copy_media`` (``MediaError``), and the same
    crash safety: the list (``resources/.etl-media.json``) sits where the
    copies would, so a chunk that never committed loses it with its message.
    The upload streams each listed file from the media root, hashing it on
    the way, and commits it on the target only when the MD5 is still the
    catalog's.
    """
    if not planned:
        return []
    checked = hash_resources(release_id, planned, root, allow_unverified=allow_unverified, max_bytes=max_bytes)
    chunk.register(release_id, folder, sync=True)
    dfd = chunk.release_folder(folder)
    try:
        _refuse_link(dfd, chunk, folder)
        try:
            with contextlib.suppress(FileExistsError):
                os.mkdir(RESOURCES, 0o755, dir_fd=dfd)
            rfd = os.open(RESOURCES, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
            try:
                write_media_list(rfd, root_url, [(c.uri, c.source, c.size, c.md5) for c in checked],
                                 durable=chunk.loader.durable)
                if chunk.loader.durable:
                    os.fsync(rfd)
            finally:
                os.close(rfd)
        except OSError as exc:
            remove_resources(dfd)
            raise OutputError(
                f"release {release_id}: cannot write the list of its media into {chunk.loader.root / folder / RESOURCES}: "
                f"{exc}; fix: check the output folder (space, permissions), then `etl resume`"
            ) from exc
    except OutputError:
        os.close(dfd)
        dfd = -1
        chunk.drop_folder(folder)
        raise
    finally:
        if dfd >= 0:
            os.close(dfd)
    return checked


def _refuse_link(dfd: int, chunk: FileChunk, folder: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISDIR(os.stat(RESOURCES, dir_fd=dfd, follow_symlinks=False).st_mode):
            raise OutputError(
                f"cannot write into {chunk.loader.root / folder / RESOURCES}: it is a link or a file, and ddex-etl "
                "never writes through one inside the output folder; fix: remove it, then `etl resume`"
            )
