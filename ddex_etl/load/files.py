"""The files loader: one message per release, atomically, in the flat or ddex-batch layout, one run per folder."""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Connection, Engine

from ..errors import EtlError, OutputError
from ..procs import pid_alive
from .base import _SAFE_NAME, PENDING_SUFFIX, TMP_SUFFIX, Committed, Output, Written, _pending_name
from .file_chunk import FileChunk
from .folder_lock import FolderLock
from .fs import _DIR_FLAGS, _NEW_FILE, _SYNCFS, _open_folder, _output_error, remove_resources

log = logging.getLogger("ddex_etl.load")

_BATCH_ID = re.compile(r"[0-9]{17}")
# Temp files are named ".<final name>.<run id>-<pid>.etl-tmp": a writer's own, so
# two processes never share one (older versions wrote ".<final name>.<pid>.etl-tmp").
_TEMP_OWNER = re.compile(r"\.(?:([0-9]+)-)?([0-9]+)" + re.escape(TMP_SUFFIX) + r"\Z")


def _bad_batch_id(batch_id: object, run_id: int | None) -> OutputError:
    whose = f"run {run_id}'s batch id" if run_id is not None else "the batch id"
    return OutputError(
        f"{whose} {batch_id!r} is not a DDEX batch id (17 digits, YYYYMMDDhhmmssnnn); a folder named after it "
        "could lie outside the output directory, so nothing is written; fix: restore that run's batch_id in the "
        "state table's runs row, or start afresh with `etl run --new`"
    )


class FileLoader:
    """Write one message per release, atomically, in the ``flat`` or ``ddex-batch`` layout.

    ``flat``: ``<directory>/<release_id>.xml``.
    ``ddex-batch``: ``<directory>/<batch_id>/<identifier>/<identifier>.xml`` and,
    once the run is whole, the zero-byte semaphore ``BatchComplete_<batch_id>.xml``
    in the batch folder (DDEX ERN choreography, batched SFTP profile).

    A run's life: ``acquire`` (the folder lock), ``prepare`` (settle what a
    crashed attempt left), chunks written by workers, ``settle`` after each
    chunk's checkpoint commits, ``finish``, and ``close`` however it ended.
    The output directory itself may be a link the user made; every name the
    loader builds inside it is opened without following links.
    """

    in_worker = True

    def __init__(
        self,
        directory: Path,
        layout: str = "flat",
        batch_id: str | None = None,
        *,
        durable: bool = True,
        run_id: int | None = None,
    ) -> None:
        if layout not in ("flat", "ddex-batch"):
            raise ValueError(f"unknown layout {layout!r}")
        if layout == "ddex-batch" and (not isinstance(batch_id, str) or not _BATCH_ID.fullmatch(batch_id)):
            raise _bad_batch_id(batch_id, run_id)
        self.directory = Path(directory)
        self.layout = layout
        self.batch_id = batch_id
        self.durable = durable
        self.run_id = run_id or 0  # part of every temp name; set by prepare for a new run
        self._job = ""
        self._lock: FolderLock | None = None
        self._committed: Committed | None = None
        self._prepared = False
        self._finished = False

    def __getstate__(self) -> dict[str, Any]:
        # Sent to the workers with every task: the lock and the database callback stay here.
        state = self.__dict__.copy()
        state["_lock"] = None
        state["_committed"] = None
        return state

    @property
    def root(self) -> Path:
        """The folder this run writes into (the batch folder for ddex-batch)."""
        if self.layout == "ddex-batch":
            assert self.batch_id is not None
            return self.directory / self.batch_id
        return self.directory

    @property
    def batch_complete_path(self) -> Path | None:
        if self.layout != "ddex-batch":
            return None
        return self.root / f"BatchComplete_{self.batch_id}.xml"

    @property
    def lock_path(self) -> Path:
        """The lock file, beside (never inside) what is delivered: flat, in the folder; batch, next to it."""
        if self.layout == "ddex-batch":
            return self.directory / f".ddex-etl-{self.batch_id}.lock"
        return self.directory / ".ddex-etl.lock"

    def describe(self) -> str:
        return str(self.root.absolute())

    def relative_path(self, output: Output) -> str:
        """Where a document goes, relative to ``directory`` (deterministic)."""
        if self.layout == "flat":
            return f"{int(output.doc.release_id)}.xml"
        ident = output.identifier
        if not _SAFE_NAME.fullmatch(ident):
            raise OutputError(
                f"release {output.doc.release_id}: identifier {ident!r} is not a plain file name; "
                "fix: name outputs with release_identifier()"
            )
        return f"{self.batch_id}/{ident}/{ident}.xml"

    def check(self) -> None:
        """The output directory exists (created if only it is missing) and is writable."""
        d = self.directory
        if not d.is_dir():
            if d.exists():
                raise OutputError(f"output directory {d} is not a directory; fix: set load.directory to a folder")
            blocker = next((p for p in d.parents if p.exists() and not p.is_dir()), None)
            if blocker is not None:
                # "does not exist" would send the user looking for a missing folder that is really a file.
                raise OutputError(
                    f"output directory {d} cannot be created: {blocker} is a file, not a folder; "
                    "fix: move that file away, or set load.directory / ETL_OUTPUT_DIR to another folder"
                )
            if not d.parent.is_dir():
                raise OutputError(
                    f"output directory {d} does not exist (nor its parent {d.parent}); "
                    "fix: create it, or set load.directory / ETL_OUTPUT_DIR to an existing folder"
                )
            try:
                d.mkdir()
            except FileExistsError:
                pass
            except OSError as exc:
                raise _output_error(exc, d) from exc
        # A real write, not os.access(): root passes every access() check, and only the
        # filesystem knows it is read-only or virtual; the error names the real cause.
        probe = d / f".etl-write-probe-{os.getpid()}{TMP_SUFFIX}"
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise _output_error(exc, probe) from exc

    def acquire(self, job: str, run_id: int | None = None) -> None:
        """Take this run's folder for the run's duration, or raise OutputError naming who holds it.

        flat: the output directory (two runs there would overwrite each other's
        files); ddex-batch: the run's own batch folder (jobs sharing an output
        directory each get theirs, so they work side by side).
        """
        self.check()
        what = "batch folder" if self.layout == "ddex-batch" else "output folder"
        lock = FolderLock(self.lock_path, self.root, what)
        lock.acquire({"job": job, "run_id": run_id or self.run_id or None})
        self._job = job
        self._lock = lock

    def prepare(self, engine: Engine | None = None, *, run_id: int | None = None, committed: Committed | None = None) -> None:
        """Create the batch folder and settle what a crashed attempt left: its temp files, and
        (ddex-batch) the files of chunks whose checkpoint never committed.

        ``committed(release_ids)`` answers which of those releases a committed
        chunk of this run delivered; without it such files are left alone.
        Call ``acquire`` first when other jobs may use the same folder: without
        the lock every temp file in the folder counts as a stopped run's.
        """
        self.check()
        if run_id is not None:
            self.run_id = run_id
            if self._lock is not None:
                self._lock.update({"job": self._job, "run_id": run_id})
        if committed is not None:
            self._committed = committed
        try:
            if self.layout == "ddex-batch":
                try:
                    os.mkdir(self.root)  # never follows a link at that name; _open_root refuses one
                except FileExistsError:
                    pass
            root = self._open_root()
        except OSError as exc:
            raise _output_error(exc, self.root) from exc
        try:
            undone = self._reconcile(root)
            removed = self._clean_temps(root, everyone=self._alone())
        except OSError as exc:
            raise _output_error(exc, self.root) from exc
        finally:
            os.close(root)
        if removed:
            log.info("removed %d temp file(s) a stopped run left in %s", removed, self.root)
        if undone:
            log.warning(
                "removed %d document(s) of chunks whose checkpoint never committed from %s; this run rebuilds "
                "them (a release gone from the catalog since stays out)", undone, self.root,
            )
        self._prepared = True

    def clean_temp_files(self, *, everyone: bool = True, mine: bool = False) -> int:
        """Remove the ``*.etl-tmp`` files under the run's folder (never following a link); returns how many.

        ``everyone`` / ``mine``: whose temp files go (see ``_clean_temps``).
        """
        try:
            root = self._open_root()
        except FileNotFoundError:
            return 0
        try:
            return self._clean_temps(root, everyone=everyone, mine=mine)
        finally:
            os.close(root)

    def settle(self, written: Sequence[Written], key: int | None = None) -> None:
        """The chunk that wrote ``written`` is committed: drop its pending list (ddex-batch).

        ``key``: the ``pending_key`` the chunk was opened with (default: its first written release).
        """
        if self.layout != "ddex-batch" or (not written and key is None):
            return
        path = self.root / _pending_name(self.run_id, key if key is not None else written[0].release_id)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise _output_error(exc, path) from exc

    def close(self) -> None:
        """However the run ended: remove its temp files and the files of chunks that never
        committed (best effort: the next start does it too), then free the folder. Idempotent."""
        try:
            if self._prepared and not self._finished:
                try:
                    root = self._open_root()
                except (OSError, OutputError):
                    root = None
                if root is not None:
                    try:
                        self._reconcile(root)
                    except (OSError, EtlError) as exc:
                        log.warning("left for the next start: could not settle the chunks in flight in %s: %s", self.root, exc)
                    try:
                        removed = self._clean_temps(root, everyone=self._alone(), mine=True)
                        if removed:
                            log.info("removed %d temp file(s) of this run from %s", removed, self.root)
                    except OSError as exc:
                        log.warning("could not remove the temp files in %s: %s", self.root, exc)
                    finally:
                        os.close(root)
        finally:
            self._prepared = False
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    def write(self, outputs: Sequence[Output], *, conn: Connection | None = None, run_id: int = 0) -> list[Written]:
        """Write a chunk: all temp files, one sync, all renames, one sync. All or an error.

        For a caller with no checkpoint to commit afterwards: the chunk is
        settled at once (the pipeline's workers use ``open_chunk`` instead).
        """
        chunk = self.open_chunk()
        try:
            for o in outputs:
                chunk.add(o)
            written = chunk.commit()
        finally:
            chunk.abort()
        self.settle(written)
        return written

    def open_chunk(self, pending_key: int | None = None) -> FileChunk:
        """Start writing a chunk document by document (a built document can be freed at once).

        ``pending_key`` names the chunk's pending list (ddex-batch; pass the
        same to ``settle``); default: the chunk's first release.
        """
        return FileChunk(self, pending_key)

    def _alone(self) -> bool:
        """No live run but this one writes the folder: the lock is held (or, used without
        ``acquire``, the caller vouches for it, as before folder locks)."""
        return self._lock is None or self._lock.held

    def _open_root(self) -> int:
        """A descriptor of the run's folder: the output directory as configured (a link the user
        made is fine), and for ddex-batch the batch folder inside it, never through a link."""
        top = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        if self.layout == "flat":
            return top
        try:
            assert self.batch_id is not None
            return _open_folder(top, self.batch_id, self.directory)
        finally:
            os.close(top)

    def _sync(self, root: int, folders: set[str]) -> None:
        """Make written data and directory entries durable.

        One ``syncfs`` per chunk costs far less than an fsync per file (measured
        ~4.7k vs ~1.7k files/s single-threaded on ext4); elsewhere, fsync each folder.
        """
        if _SYNCFS is not None:
            if _SYNCFS(root) != 0:  # type: ignore[operator]
                err = ctypes.get_errno()
                raise OSError(err, os.strerror(err))
            return
        for folder in folders:
            dfd = _open_folder(root, folder, self.root) if folder else root
            try:
                os.fsync(dfd)
            finally:
                if dfd != root:
                    os.close(dfd)

    def _clean_temps(self, root: int, *, everyone: bool, mine: bool = False) -> int:
        """Remove temp entries (files or links, never what a link points to) under the run's folder.

        ``everyone``: the folder lock is held, so no live run writes here and
        every temp file is a stopped run's. Without the lock (a filesystem
        that cannot lock) only temp files of dead processes go, or with
        ``mine`` those of this run.
        """

        def owned(name: str) -> bool:
            if everyone:
                return True
            m = _TEMP_OWNER.search(name)
            if m is None:
                return False
            if mine and m.group(1) is not None and int(m.group(1)) == self.run_id:
                return True
            return not pid_alive(int(m.group(2)))

        removed = 0
        stack: list[tuple[int, bool]] = [(root, True)]
        while stack:
            folder, top = stack.pop()
            try:
                with os.scandir(folder) as entries:
                    for entry in entries:
                        if entry.name.endswith(TMP_SUFFIX) and not entry.is_dir(follow_symlinks=False):
                            if owned(entry.name):
                                with contextlib.suppress(FileNotFoundError):
                                    os.unlink(entry.name, dir_fd=folder)
                                    removed += 1
                        # flat writes only at top level; the batch layout one folder deep
                        elif top and self.layout == "ddex-batch" and entry.is_dir(follow_symlinks=False):
                            with contextlib.suppress(FileNotFoundError, NotADirectoryError, OSError):
                                stack.append((os.open(entry.name, _DIR_FLAGS, dir_fd=folder), False))
            finally:
                if folder != root:
                    os.close(folder)
        return removed

    def _reconcile(self, root: int) -> int:
        """ddex-batch: remove the files of chunks a worker renamed whose checkpoint never committed.

        A worker renames a chunk's files before the main process commits its
        checkpoint, and a commit can fail (or the process die) in between.
        Such files would claim more than the checkpoint and, once the batch is
        complete, deliver a release the resume left out (deleted meanwhile,
        say). So each chunk lists its files first (synced with them), the
        main process drops the list after the commit, and a list still there
        is settled here against what the run's committed chunks delivered.
        The flat layout keeps no lists: its files are replaced in place and
        never deleted, and a resume rewrites them identically.
        """
        if self.layout != "ddex-batch" or self._committed is None:
            return 0
        with os.scandir(root) as entries:
            lists = sorted(e.name for e in entries if e.name.endswith(PENDING_SUFFIX) and not e.is_dir(follow_symlinks=False))
        removed = 0
        for name in lists:
            listed = _read_pending(root, name)
            done = self._committed(sorted({rid for rid, _ in listed})) if listed else set()
            for rid, folder in listed:
                if rid not in done:
                    removed += _remove_document(root, folder)
            if removed and self.durable:
                self._sync(root, {""})  # the removals are durable before their list goes
            os.unlink(name, dir_fd=root)
        return removed

    def finish(self, *, resumed: bool) -> None:
        """Every chunk is committed: remove temp files left behind; batch layout: drop empty release
        folders a crash left, then write BatchComplete last."""
        # A Dask worker killed mid-write leaves its temp file, and Dask runs the
        # chunk again elsewhere: the run succeeds, and nothing else removes it.
        try:
            removed = self.clean_temp_files(everyone=self._alone(), mine=True)
        except OSError as exc:
            raise _output_error(exc, self.root) from exc
        if removed:
            log.info("removed %d temp file(s) of chunks written twice from %s", removed, self.root)
        marker = self.batch_complete_path
        if marker is None:
            self._finished = True
            return
        tmp: str | None = None
        root = -1
        try:
            root = self._open_root()
            if resumed:
                with os.scandir(root) as entries:
                    for entry in entries:
                        if entry.is_dir(follow_symlinks=False):
                            with contextlib.suppress(OSError):
                                os.rmdir(entry.name, dir_fd=root)  # only succeeds when empty
            tmp = f".{marker.name}.{self.run_id}-{os.getpid()}{TMP_SUFFIX}"
            fd = os.open(tmp, _NEW_FILE, 0o644, dir_fd=root)
            try:
                if self.durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, marker.name, src_dir_fd=root, dst_dir_fd=root)
            tmp = None
            if self.durable:
                os.fsync(root)
        except OSError as exc:
            raise _output_error(exc, marker) from exc
        finally:
            if root >= 0:
                if tmp is not None:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp, dir_fd=root)
                os.close(root)
        self._finished = True


def _read_pending(root: int, name: str) -> list[tuple[int, str]]:
    """The (release id, release folder) lines of a pending list; anything else in it is ignored."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=root)
    except OSError:
        return []  # a link or something unreadable: not one of ours
    try:
        with os.fdopen(fd, "rb", closefd=False) as f:
            raw = f.read()
    finally:
        os.close(fd)
    listed: list[tuple[int, str]] = []
    for line in raw.decode("utf-8", "replace").splitlines():
        rid, _, folder = line.partition("\t")
        if rid.isdigit() and _SAFE_NAME.fullmatch(folder):  # a name read back is validated like one we build
            listed.append((int(rid), folder))
    return listed


def _remove_document(root: int, folder: str) -> int:
    """Remove ``<folder>/<folder>.xml``, its ``resources/`` and the folder if that empties it (never through a link)."""
    try:
        dfd = os.open(folder, _DIR_FLAGS, dir_fd=root)
    except OSError:
        return 0
    try:
        remove_resources(dfd)
        os.unlink(f"{folder}.xml", dir_fd=dfd)
        removed = 1
    except FileNotFoundError:
        removed = 0
    finally:
        os.close(dfd)
    with contextlib.suppress(OSError):
        os.rmdir(folder, dir_fd=root)
    return removed
