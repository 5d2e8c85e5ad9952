"""One chunk's files in flight: written to temp names, then synced and renamed together."""
from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

from ..errors import OutputError
from .base import _SAFE_NAME, TMP_SUFFIX, Output, Written, _pending_name
from .fs import _NEW_FILE, _SYNCFS, _open_folder, _output_error

if TYPE_CHECKING:
    from .files import FileLoader


class FileChunk:
    """One chunk's files in flight: ``add`` writes a temp file, ``commit`` syncs and renames them all.

    Nothing is visible under a final name before ``commit``; ``abort`` (also
    after a failed commit) removes every temp file this chunk wrote. Every
    name is opened relative to its folder's descriptor: a temp file must not
    exist yet (``O_EXCL``), no link is followed, and a release folder that is
    a link is refused.
    """

    def __init__(self, loader: FileLoader, pending_key: int | None = None) -> None:
        self.loader = loader
        self._root: int | None = None
        self._where = str(loader.root)  # for messages
        self._temps: list[tuple[str, str, str]] = []  # (release folder, "" for flat; temp name; final name)
        self._written: list[Written] = []
        self._made: set[str] = set()
        self._tag = f".{loader.run_id}-{os.getpid()}{TMP_SUFFIX}"
        self._done = False
        self._pending_key = pending_key
        self._pending: int | None = None  # the pending list's descriptor, open while releases are added
        self._registered: set[int] = set()

    def _root_fd(self) -> int:
        if self._root is None:
            self._root = self.loader._open_root()
        return self._root

    def _folder_fd(self, folder: str, *, create: bool = False) -> int:
        root = self._root_fd()
        if not folder:
            return root
        if create and folder not in self._made:
            with contextlib.suppress(FileExistsError):
                os.mkdir(folder, 0o755, dir_fd=root)
            self._made.add(folder)
        return _open_folder(root, folder, self._where)

    def register(self, release_id: int, folder: str, *, sync: bool = False) -> None:
        """ddex-batch: list a release in the chunk's pending list before anything of it is written.

        Whatever then lands in its folder (resources, the message) is removed
        again if the chunk's checkpoint never commits (``FileLoader._reconcile``).
        ``sync``: make the line durable now (files are about to be written
        outside the chunk's own sync, e.g. resources).
        """
        ld = self.loader
        if ld.layout != "ddex-batch" or release_id in self._registered:
            return
        if not _SAFE_NAME.fullmatch(folder):
            raise OutputError(f"release {release_id}: folder name {folder!r} is not a plain file name")
        root = self._root_fd()
        try:
            if self._pending is None:
                key = self._pending_key if self._pending_key is not None else release_id
                self._pending_name = _pending_name(ld.run_id, key)
                self._pending = os.open(self._pending_name, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW
                                        | os.O_CLOEXEC, 0o644, dir_fd=root)
            line = f"{release_id}\t{folder}\n".encode()
            os.write(self._pending, line)
            if sync and ld.durable:
                os.fsync(self._pending)
        except OSError as exc:
            raise _output_error(exc, os.path.join(self._where, _pending_name(ld.run_id, self._pending_key or release_id))) from exc
        self._registered.add(release_id)

    def release_folder(self, folder: str) -> int:
        """A descriptor of a release's folder in the batch, created if missing, never through a link (close it)."""
        try:
            return self._folder_fd(folder, create=True)
        except OSError as exc:
            raise _output_error(exc, os.path.join(self._where, folder)) from exc

    def drop_folder(self, folder: str) -> None:
        """Remove a release folder this chunk made if it is empty (a release rejected while copying its media)."""
        with contextlib.suppress(OSError):
            os.rmdir(folder, dir_fd=self._root_fd())

    def add(self, output: Output) -> None:
        ld = self.loader
        rel = ld.relative_path(output)
        folder = output.identifier if ld.layout == "ddex-batch" else ""
        name = f"{folder}.xml" if folder else rel
        tmp = "." + name + self._tag
        if folder:
            self.register(int(output.doc.release_id), folder)
        try:
            dfd = self._folder_fd(folder, create=True)
            try:
                try:
                    fd = os.open(tmp, _NEW_FILE, 0o644, dir_fd=dfd)
                except FileExistsError:
                    raise OutputError(
                        f"cannot write {os.path.join(self._where, folder, name)}: its temp name {tmp} already exists there (a file or a link that "
                        "no run of ddex-etl left); nothing is written through it; fix: remove it, find what else "
                        "writes into the output folder, then `etl resume`"
                    ) from None
                self._temps.append((folder, tmp, name))
                try:
                    view = memoryview(output.doc.xml)
                    while view:
                        n = os.write(fd, view)
                        view = view[n:]
                    if ld.durable and _SYNCFS is None:
                        os.fsync(fd)
                finally:
                    os.close(fd)
            finally:
                if dfd != self._root:
                    os.close(dfd)
        except OutputError:
            self.abort()
            raise
        except OSError as exc:
            self.abort()
            raise _output_error(exc, os.path.join(self._where, folder, name)) from exc
        self._written.append(Written(output.doc.release_id, rel, output.doc.checksum))

    def commit(self) -> list[Written]:
        """Make the chunk durable under its final names; returns what was written."""
        ld = self.loader
        current: tuple[str, ...] = ()
        try:
            if self._temps:
                root = self._root_fd()
                folders = {folder for folder, _, _ in self._temps}
                if self._pending is not None:
                    current = (self._pending_name,)
                    if ld.durable and _SYNCFS is None:
                        os.fsync(self._pending)  # listed before any rename (syncfs covers it otherwise)
                if ld.durable:
                    ld._sync(root, folders)
                for folder, tmp, name in self._temps:
                    current = (folder, name)
                    dfd = self._folder_fd(folder)
                    try:
                        os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
                    finally:
                        if dfd != root:
                            os.close(dfd)
                if ld.durable:
                    ld._sync(root, folders | {""})
        except OutputError:
            self.abort()
            raise
        except OSError as exc:
            self.abort()
            raise _output_error(exc, os.path.join(self._where, *current)) from exc
        self._done = True
        self._close_root()
        return self._written

    def abort(self) -> None:
        """Remove the temp files not yet renamed (no-op after a successful commit)."""
        if not self._done:
            for folder, tmp, _ in self._temps:
                try:
                    dfd = self._folder_fd(folder)
                except (OSError, OutputError):
                    continue
                try:
                    os.unlink(tmp, dir_fd=dfd)
                except OSError:
                    pass
                finally:
                    if dfd != self._root:
                        os.close(dfd)
            self._temps.clear()
        self._close_root()

    def _close_root(self) -> None:
        if self._pending is not None:
            with contextlib.suppress(OSError):
                os.close(self._pending)
            self._pending = None
        if self._root is not None:
            with contextlib.suppress(OSError):
                os.close(self._root)
            self._root = None
