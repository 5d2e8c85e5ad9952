"""Loaders: put built documents in a table or in files, crash-safely.

Load never builds XML and never decides what to build; it receives finished
``Document`` records. Two promises the pipeline relies on:

* ``TableLoader.write`` runs inside the pipeline's transaction, so a chunk's
  documents and its checkpoint commit together (exactly once).
* ``FileLoader.write`` returns only when every file of the chunk is complete
  under its final name and durable: temp file in the same folder, written,
  synced, ``os.replace``d, folder synced. A crash leaves at worst some
  ``*.etl-tmp`` files, which ``prepare`` removes on the next start.

The files loader never writes outside its output folder: every name it builds
(from release identifiers, or a batch id read back from the state table) is
validated, and opened relative to a folder descriptor without following links.
One run at a time writes a folder (``folder_lock``), so start-up clean-up only
ever touches what a stopped run left.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import datetime as dt
import errno
import logging
import os
import re
import stat
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ..db import map_db_error, quote_ident
from ..errors import EtlError, OutputError
from ..models import Document
from ..procs import pid_alive
from .folder_lock import FolderLock

log = logging.getLogger("ddex_etl.load")

TMP_SUFFIX = ".etl-tmp"
PENDING_SUFFIX = ".etl-pending"  # ddex-batch: a chunk's files, listed until its checkpoint commits
# Which of some release ids a committed chunk of the run delivered (see FileLoader._reconcile).
Committed = Callable[[Sequence[int]], set[int]]
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,120}$")


@dataclass(frozen=True, slots=True)
class Output:
    """A document with the identifier its file or folder is named after."""

    doc: Document
    identifier: str  # see release_identifier()


@dataclass(frozen=True, slots=True)
class Written:
    """What a loader did with one document (small enough to send between processes)."""

    release_id: int
    where: str  # relative file path, or "schema.table"
    checksum: str


def release_identifier(release_id: int, icpn: str | None = None, grid: str | None = None) -> str:
    """The name of a release's folder/file: its ICPN, else its GRid, else its release id.

    DDEX batch deliveries name each release folder by the release's identifier.
    Anything that is not a plain file-name-safe token falls back to the release
    id, so a stray ``/`` in the catalog can never write outside the batch.
    """
    for candidate in (icpn, grid):
        if candidate:
            token = candidate.strip()
            if _SAFE_NAME.match(token):
                return token
    return str(release_id)


def new_batch_id(now: dt.datetime | None = None) -> str:
    """A DDEX batch id: the creation time as ``YYYYMMDDhhmmssnnn`` (UTC, milliseconds)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return now.strftime("%Y%m%d%H%M%S") + f"{now.microsecond // 1000:03d}"


class Loader(Protocol):
    """Where documents go. ``in_worker``: the worker that built a chunk writes it itself."""

    in_worker: bool

    def describe(self) -> str:
        """Where output goes, for the run row and messages."""

    def check(self) -> None:
        """Fail early (before a run row exists) when the destination cannot work."""

    def acquire(self, job: str, run_id: int | None = None) -> None:
        """Claim the destination for this run (before a run row exists), or refuse."""

    def prepare(self, engine: Engine, *, run_id: int | None = None, committed: Committed | None = None) -> None:
        """Make the destination ready and clean up after a crashed attempt."""

    def write(self, outputs: Sequence[Output], *, conn: Connection | None, run_id: int) -> list[Written]:
        """Load one chunk's documents (table: inside ``conn``'s transaction)."""

    def finish(self, *, resumed: bool) -> None:
        """Called once when the whole run is loaded (e.g. write BatchComplete)."""

    def close(self) -> None:
        """Called once however the run ended: clean up what is in flight, free the destination."""


# --------------------------------------------------------------------------- table


class TableLoader:
    """Upsert one row per (recipient, release) into ``<schema>.<table>``, in the caller's transaction.

    ``recipient`` is the recipient's name ('' for the single-recipient
    shorthand): each store's documents are rows of their own.
    """

    in_worker = False

    def __init__(self, schema: str, table: str = "documents", recipient: str = "") -> None:
        self.schema = schema
        self.table = table
        self.recipient = recipient
        self._qualified = f"{quote_ident(schema)}.{quote_ident(table)}"
        self._upsert = sa.text(
            f"""INSERT INTO {self._qualified}
                (recipient, release_id, ern_version, message_id, kind, document, checksum, run_id, built_at)
            VALUES (:recipient, :release_id, :ern_version, :message_id, :kind, :document, :checksum, :run_id, now())
            ON CONFLICT (recipient, release_id) DO UPDATE
            SET ern_version = EXCLUDED.ern_version, message_id = EXCLUDED.message_id, kind = EXCLUDED.kind,
                document = EXCLUDED.document, checksum = EXCLUDED.checksum, run_id = EXCLUDED.run_id,
                built_at = EXCLUDED.built_at"""
        )

    def describe(self) -> str:
        return f"{self.schema}.{self.table}"

    def check(self) -> None:
        return None

    def acquire(self, job: str, run_id: int | None = None) -> None:
        return None  # the job lock and the transaction keep runs apart

    def close(self) -> None:
        return None

    def prepare(self, engine: Engine, *, run_id: int | None = None, committed: Committed | None = None) -> None:
        """Create a custom-named output table like the migrated ``documents`` table."""
        if self.table == "documents":
            return
        template = f"{quote_ident(self.schema)}.{quote_ident('documents')}"
        try:
            with engine.begin() as conn:
                conn.execute(sa.text(f"CREATE TABLE IF NOT EXISTS {self._qualified} (LIKE {template} INCLUDING ALL)"))
                _key_by_recipient(conn, self.schema, self.table, self._qualified)
        except sa.exc.DBAPIError as exc:
            raise map_db_error(exc, f"creating the output table {self.describe()}") from exc

    def write(self, outputs: Sequence[Output], *, conn: Connection | None, run_id: int) -> list[Written]:
        if conn is None:
            raise TypeError("TableLoader.write needs the pipeline's connection")
        if not outputs:
            return []
        conn.execute(
            self._upsert,
            [
                {
                    "recipient": self.recipient,
                    "release_id": o.doc.release_id,
                    "ern_version": o.doc.ern_version,
                    "message_id": o.doc.message_id,
                    "kind": o.doc.kind,
                    "document": o.doc.xml,
                    "checksum": o.doc.checksum,
                    "run_id": run_id,
                }
                for o in outputs
            ],
        )
        where = self.describe()
        return [Written(o.doc.release_id, where, o.doc.checksum) for o in outputs]

    def finish(self, *, resumed: bool) -> None:
        return None


def _key_by_recipient(conn: Connection, schema: str, table: str, qualified: str) -> None:
    """An output table made before recipients existed gets the recipient column and key (migration 0005's change)."""
    has = conn.execute(
        sa.text("SELECT 1 FROM information_schema.columns WHERE table_schema = :s AND table_name = :t "
                "AND column_name = 'recipient'"),
        {"s": schema, "t": table},
    ).first()
    if has is not None:
        return
    conn.execute(sa.text(f"ALTER TABLE {qualified} ADD COLUMN recipient text NOT NULL DEFAULT ''"))
    pkey = conn.execute(
        sa.text("SELECT conname FROM pg_constraint WHERE conrelid = CAST(:q AS regclass) AND contype = 'p'"),
        {"q": qualified},
    ).scalar()
    if pkey is not None:
        conn.execute(sa.text(f"ALTER TABLE {qualified} DROP CONSTRAINT {quote_ident(str(pkey))}"))
    conn.execute(sa.text(f"ALTER TABLE {qualified} ADD PRIMARY KEY (recipient, release_id)"))


# --------------------------------------------------------------------------- files


def _load_syncfs() -> object | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fn = libc.syncfs
        fn.argtypes = [ctypes.c_int]
        return fn
    except (OSError, AttributeError):
        return None


_SYNCFS = _load_syncfs()


def _output_error(exc: OSError, path: Path | str) -> OutputError:
    """An OSError while writing output, as a message naming the file, the cause and the fix."""
    code = exc.errno
    if code == errno.EROFS:
        why, fix = "the filesystem is mounted read-only", "set load.directory to a folder on a writable filesystem"
    elif code == errno.EACCES:
        why, fix = "permission denied", "make the output directory writable for this user, or set load.directory"
    elif code == errno.EPERM:
        why, fix = (
            "operation not permitted (the filesystem or a security policy refuses it, whatever the file modes say)",
            "set load.directory to a folder on an ordinary filesystem this user may write",
        )
    elif code in (errno.ENOSPC, errno.EDQUOT):
        why, fix = "the disk is full", "free space on that filesystem (or raise the quota), then `etl resume`"
    elif code == errno.EFBIG:
        why, fix = "the file is larger than the allowed file size", "raise the file-size limit (ulimit -f), then `etl resume`"
    elif code in (errno.ENAMETOOLONG, errno.EINVAL, errno.EILSEQ):
        why, fix = "the filesystem refused the file name", "use a filesystem that accepts it, or fix the release's identifier"
    elif code == errno.ENOENT and Path(path).parent.is_dir():
        # The folder is there, yet "no such file": a filesystem that takes no new files (/proc, /sys).
        why, fix = (
            f"no such file or directory although {Path(path).parent} exists: that filesystem does not let "
            "files be created there",
            "set load.directory to a folder on an ordinary filesystem",
        )
    elif code == errno.ENOENT:
        why, fix = "the folder disappeared", "recreate the output directory, then `etl resume`"
    else:
        why, fix = exc.strerror or type(exc).__name__, "check the output directory, then `etl resume`"
    return OutputError(f"cannot write {path}: {why} ({errno.errorcode.get(code or 0, code)}); fix: {fix}")


_BATCH_ID = re.compile(r"^[0-9]{17}$")
# Temp files are named ".<final name>.<run id>-<pid>.etl-tmp": a writer's own, so
# two processes never share one (older versions wrote ".<final name>.<pid>.etl-tmp").
_TEMP_OWNER = re.compile(r"\.(?:([0-9]+)-)?([0-9]+)" + re.escape(TMP_SUFFIX) + "$")
# Every name this loader creates inside the output folder is opened relative to
# a folder descriptor, never through a symbolic link, and a new file must not exist.
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _bad_batch_id(batch_id: object, run_id: int | None) -> OutputError:
    whose = f"run {run_id}'s batch id" if run_id is not None else "the batch id"
    return OutputError(
        f"{whose} {batch_id!r} is not a DDEX batch id (17 digits, YYYYMMDDhhmmssnnn); a folder named after it "
        "could lie outside the output directory, so nothing is written; fix: restore that run's batch_id in the "
        "state table's runs row, or start afresh with `etl run --new`"
    )


def _is_link(parent: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _open_folder(parent: int, name: str, parent_path: Path | str) -> int:
    """Open the folder ``name`` inside ``parent``, refusing a symbolic link (it could lead outside).

    ``parent_path`` only names ``parent`` in messages (joined on error: this runs once per file).
    """
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent)
    except OSError as exc:
        shown = os.path.join(parent_path, name)
        if exc.errno in (errno.ENOTDIR, errno.ELOOP):
            if _is_link(parent, name):
                raise OutputError(
                    f"cannot write into {shown}: it is a symbolic link, and ddex-etl never writes through a link "
                    "inside the output folder (it could lead outside it); fix: replace the link with a real "
                    "folder (or remove it), then `etl resume`"
                ) from exc
            raise OutputError(f"cannot write into {shown}: it is a file, not a folder; fix: move it away, then `etl resume`") from exc
        raise _output_error(exc, shown) from exc


def _pending_name(run_id: int, first_release_id: int) -> str:
    return f".{run_id}-{first_release_id}{PENDING_SUFFIX}"


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
        if layout == "ddex-batch" and (not isinstance(batch_id, str) or not _BATCH_ID.match(batch_id)):
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
        if not _SAFE_NAME.match(ident):
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
        if rid.isdigit() and _SAFE_NAME.match(folder):  # a name read back is validated like one we build
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


RESOURCES = "resources"


def remove_resources(release_fd: int) -> int:
    """Remove the files in a release folder's ``resources/`` and the folder itself (a link is only unlinked)."""
    try:
        rfd = os.open(RESOURCES, _DIR_FLAGS, dir_fd=release_fd)
    except FileNotFoundError:
        return 0
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(RESOURCES, dir_fd=release_fd)  # a link or a file in its place: never followed
        return 0
    removed = 0
    try:
        with os.scandir(rfd) as entries:
            for entry in entries:
                if not entry.is_dir(follow_symlinks=False):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.name, dir_fd=rfd)
                        removed += 1
    finally:
        os.close(rfd)
    with contextlib.suppress(OSError):
        os.rmdir(RESOURCES, dir_fd=release_fd)
    return removed


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
        if not _SAFE_NAME.match(folder):
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


def loader_for(cfg: object, *, run_id: int | None = None, batch_id: str | None = None) -> TableLoader | FileLoader:
    """The loader the configuration asks for (``cfg`` is a ``Config``).

    ``batch_id`` (ddex-batch) is a new one, or the one read back from run
    ``run_id``'s row: either way it must look like ``new_batch_id`` made it.
    """
    load = cfg.load  # type: ignore[attr-defined]
    if load.target == "table":
        recipient = getattr(cfg, "recipient", None)
        return TableLoader(cfg.database.state_schema, load.table, recipient.name if recipient else "")  # type: ignore[attr-defined]
    if load.target == "files":
        return FileLoader(Path(load.directory), load.layout, batch_id, run_id=run_id)
    raise EtlError(f"load.target: unknown target {load.target!r}")
