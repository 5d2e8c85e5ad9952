"""Upload a local DDEX batch folder to a target, in the choreography's order, resumably.

The local batch (as ``load.FileLoader`` writes it, plus ``resources/``)::

    <batch_id>/<release>/<release>.xml
    <batch_id>/<release>/resources/<file>...
    <batch_id>/BatchComplete_<batch_id>.xml

goes to ``<remote_dir>/`` on the target (the batch id by default) in this
order: every resource file, then every message, then ``BatchComplete`` last,
and only when every other file of the batch is on the target. Callers use
one of::

    report = upload_batch(local_batch_dir, target)             # the whole batch, one call

    upload = BatchUpload(target, local_batch_dir)               # or release by release,
    upload.send_release("0602445790001")                       # as the run finishes each one
    report = upload.complete()                                  # then BatchComplete, last

**Resuming.** An upload killed at any instant and started again sends what is
not on the target yet and nothing that is, so the target ends with the same
bytes as an upload never interrupted. A file counts as already there when the
target lists it with the local file's size and its MD5 is known to match:
from the store's ETag (S3 single-part objects), else from the upload journal
(a line per committed file, written right after the rename or PUT returned,
with the modification time the store reported for it) as long as the store
still lists that time, else by reading it back and hashing it (a file
committed in the instant between the rename and the journal line, or altered
on the store since at the same size). A half-sent file is never visible:
targets rename temp files or PUT whole objects (``targets``), and the temp
files of a killed upload are removed when the batch upload starts again.

The default journal lives beside the local batch folder, in
``.etl-delivery/<batch_id>.<target hash>.jsonl``, one per (batch, target).
A caller can pass any object with ``committed()`` and ``record()`` (e.g. one
backed by the state tables).

Before ``BatchComplete`` goes up, files of the batch folder on the target that
the local batch does not hold (a release an interrupted upload sent and the
resumed run rejected) are removed; the store's ``ACK_*.xml`` files stay.

A batch whose ``BatchComplete`` is already on the target is closed: the store
may have ingested it. Files that match are reported as skipped; a file that
would change raises ``DeliveryTerminalError`` (deliver changes in a new batch).
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..errors import DeliveryError, DeliveryTerminalError
from .acks import is_ack_file
from .media_source import MAX_MEDIA_BYTES, MediaRoot
from .paths import join, safe_relpath
from .targets import RemoteObject, Target

JOURNAL_DIR = ".etl-delivery"
#: In a release's ``resources/`` folder: the media the batch sends straight from the media root (no local copy).
MEDIA_LIST = ".etl-media.json"
_BLOCK = 1 << 20

RESOURCE, MESSAGE, BATCH_COMPLETE = "resource", "message", "batch-complete"
_ORDER = {RESOURCE: 0, MESSAGE: 1, BATCH_COMPLETE: 2}


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """One local file of a batch: its path inside the batch folder, size, MD5 and kind."""

    relpath: str
    size: int
    md5: str
    kind: str  # RESOURCE, MESSAGE or BATCH_COMPLETE
    source: str | None = None  # a path under the media root (streamed from there), or None: the local file
    media_root: str | None = None  # the media root ``source`` is under


def file_md5(path: str | os.PathLike[str]) -> str:
    """The MD5 of a local file, read in 1 MiB blocks."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _fd_md5(fd: int) -> str:
    digest = hashlib.md5()
    offset = 0
    while block := os.pread(fd, _BLOCK, offset):
        digest.update(block)
        offset += len(block)
    return digest.hexdigest()


def _kind(relpath: str, batch_id: str) -> str:
    if relpath == f"BatchComplete_{batch_id}.xml":
        return BATCH_COMPLETE
    if "/resources/" in f"/{relpath}":
        return RESOURCE
    return MESSAGE


def _visible(name: str) -> bool:
    # dot files are temp files (ours: .<name>.<pid>.etl-tmp) or not ours to send
    return not name.startswith(".") and not name.endswith(".etl-tmp")


# Every name inside the local batch is opened without following a link: nothing but the regular files the
# run wrote leaves this machine (a message or resource replaced by a link to /etc/shadow is refused).
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK  # a FIFO never blocks the open


def _not_ours(batch: Path, rel: str, what: str) -> DeliveryTerminalError:
    return DeliveryTerminalError(
        f"local batch {batch}: {rel} is {what}, not a regular file the run wrote; links and special files in a "
        "batch folder are never followed or sent, so nothing more of this batch is uploaded; fix: find out who "
        f"put it there, delete it, and rebuild the batch (`etl run --new --force`) rather than deliver it"
    )


def _open_dir(parent: int, name: str, batch: Path, rel: str) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise _not_ours(batch, rel, "a symbolic link or not a folder") from None
        raise DeliveryTerminalError(f"local batch {batch}: cannot open {rel}: {exc}") from exc


def _open_file(parent: int, name: str, batch: Path, rel: str) -> int:
    """A descriptor of the regular file ``name`` in folder ``parent``, or ``DeliveryTerminalError`` naming why not."""
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=parent)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _not_ours(batch, rel, "a symbolic link") from None
        raise DeliveryTerminalError(f"local batch {batch}: cannot open {rel}: {exc}; fix: rebuild the batch "
                                    "(`etl run --new --force`)") from exc
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise _not_ours(batch, rel, "a special file (FIFO, device or socket)")
    if st.st_nlink > 1:
        os.close(fd)
        raise _not_ours(batch, rel, f"a hard link shared with {st.st_nlink - 1} other name(s)")
    return fd


def open_batch_file(local_batch_dir: str | os.PathLike[str], relpath: str) -> int:
    """A read-only descriptor of ``relpath`` inside the batch folder, no component followed through a link."""
    root = Path(local_batch_dir)
    parts = safe_relpath(relpath, what="batch file").split("/")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for i, part in enumerate(parts[:-1]):
            nxt = _open_dir(fd, part, root, "/".join(parts[: i + 1]))
            os.close(fd)
            fd = nxt
        return _open_file(fd, parts[-1], root, relpath)
    finally:
        os.close(fd)


def batch_manifest(local_batch_dir: str | os.PathLike[str], under: str = "") -> list[ManifestEntry]:
    """The files of a local batch folder (or of its sub-folder ``under``), in upload order.

    Order: resources, then messages, then ``BatchComplete_<batch id>.xml``; by path within each kind.
    A link (to a file or a folder) or a special file anywhere in it raises ``DeliveryTerminalError``.
    """
    root = Path(local_batch_dir)
    batch_id = root.name
    entries: list[ManifestEntry] = []
    media: list[ManifestEntry] = []
    top = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    stack: list[tuple[int, str]] = []
    try:
        start, prefix = top, ""
        for part in safe_relpath(under, what="release folder").split("/") if under else []:
            prefix = f"{prefix}{part}"
            nxt = _open_dir(start, part, root, prefix)
            if start != top:
                os.close(start)
            start, prefix = nxt, prefix + "/"
        stack.append((start if start != top else os.dup(top), prefix))
        while stack:
            folder, prefix = stack.pop()
            try:
                with os.scandir(folder) as it:
                    listed = sorted((e.name, e.is_dir(follow_symlinks=False), e.is_symlink()) for e in it)
                for name, is_dir, is_link in listed:
                    if name == MEDIA_LIST and prefix.endswith("/resources/") and not is_dir and not is_link:
                        fd = _open_file(folder, name, root, f"{prefix}{name}")
                        try:
                            blob = _fd_read(fd)
                        finally:
                            os.close(fd)
                        media.extend(read_media_list(blob, f"{root / prefix}{name}", prefix.rstrip("/")))
                    if not _visible(name):
                        continue
                    rel = f"{prefix}{name}"
                    safe_relpath(rel, what="batch file")
                    if is_link:
                        raise _not_ours(root, rel, "a symbolic link")
                    if is_dir:
                        stack.append((_open_dir(folder, name, root, rel), rel + "/"))
                        continue
                    fd = _open_file(folder, name, root, rel)
                    try:
                        entries.append(ManifestEntry(rel, os.fstat(fd).st_size, _fd_md5(fd), _kind(rel, batch_id)))
                    finally:
                        os.close(fd)
            finally:
                os.close(folder)
    finally:
        for folder, _ in stack:
            os.close(folder)
        os.close(top)
    local = {e.relpath for e in entries}
    entries.extend(e for e in media if e.relpath not in local)  # a local copy, when there is one, wins
    entries.sort(key=lambda e: (_ORDER[e.kind], e.relpath))
    return entries


def write_media_list(resources_dir_fd: int, media_root: str, files: Iterable[tuple[str, str, int, str]], *,
                     durable: bool = True) -> None:
    """Note, in a release's ``resources/`` (by descriptor), the media to send from the media root.

    ``files``: (URI ``resources/<name>``, path under the media root, size, MD5).
    Written to a temp name and renamed, so a reader sees the whole list or none.
    """
    rows = [{"uri": uri, "source": source, "size": size, "md5": md5} for uri, source, size, md5 in files]
    blob = json.dumps({"media_root": media_root, "files": rows}, separators=(",", ":")).encode("utf-8")
    tmp = f".{MEDIA_LIST}.{os.getpid()}.{threading.get_ident()}.etl-tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644,
                 dir_fd=resources_dir_fd)
    try:
        view = memoryview(blob)
        while view:
            view = view[os.write(fd, view):]
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, MEDIA_LIST, src_dir_fd=resources_dir_fd, dst_dir_fd=resources_dir_fd)


def _fd_read(fd: int) -> bytes:
    parts, offset = [], 0
    while block := os.pread(fd, _BLOCK, offset):
        parts.append(block)
        offset += len(block)
    return b"".join(parts)


def read_media_list(blob: bytes, path: str, resources_rel: str) -> list[ManifestEntry]:
    """The entries a ``.etl-media.json`` (``blob``, read from ``path``) lists; ``resources_rel``: its folder."""
    try:
        data = json.loads(blob)
        media_root = str(data["media_root"])
        out = []
        for row in data["files"]:
            uri, source = str(row["uri"]), str(row["source"])
            if not uri.startswith("resources/"):
                raise ValueError(f"URI {uri!r} is not under resources/")
            rel = f"{resources_rel.rsplit('/', 1)[0]}/{uri}" if "/" in resources_rel else uri
            safe_relpath(rel, what="batch file")
            safe_relpath(source, what="media path")
            out.append(ManifestEntry(rel, int(row["size"]), str(row["md5"]).lower(), RESOURCE, source, media_root))
        return out
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DeliveryTerminalError(
            f"{path} (the list of media this release sends from the media root) cannot be read: {exc}; fix: "
            "`etl resume` the run that wrote the batch (it writes the list again), or run again"
        ) from exc


# --------------------------------------------------------------------------- journal


class UploadJournal(Protocol):
    """Which files of a batch are known to be committed on the target, with their MD5."""

    def committed(self) -> dict[str, str]:
        """Remote path (relative to the target) -> MD5 of every file recorded as committed."""

    def record(self, relpath: str, md5: str, size: int, mtime: float | None = None) -> None:
        """Remember that ``relpath`` is committed with this content (a record may be lost, never wrong).

        ``mtime``: the modification time the store reported for it then, when it did. A journal may also
        offer ``stamps()`` (remote path -> that mtime): a file is trusted on the journal's word only while the
        store still reports that time; without one it is read back and hashed before ``BatchComplete``.
        """


class FileJournal:
    """A JSON-lines journal file, one appended line per committed file.

    Lines are not fsynced: the journal only spares read-backs. A line lost to a
    power cut (or torn by a kill) means that file is hashed on the target
    instead, never that it is trusted without a check.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def _rows(self) -> list[dict[str, Any]]:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        rows = []
        for line in lines:
            try:
                row = json.loads(line)
                str(row["path"]), str(row["md5"])
            except (ValueError, KeyError, TypeError):
                continue  # a line torn by a kill: that file is checked on the target instead
            if isinstance(row, dict):
                rows.append(row)
        return rows

    def committed(self) -> dict[str, str]:
        return {str(row["path"]): str(row["md5"]) for row in self._rows()}

    def stamps(self) -> dict[str, float]:
        """Remote path -> the modification time the store reported when the file was last recorded."""
        out: dict[str, float] = {}
        for row in self._rows():
            mtime = row.get("mtime")
            if isinstance(mtime, int | float) and not isinstance(mtime, bool):
                out[str(row["path"])] = float(mtime)
            else:
                out.pop(str(row["path"]), None)  # a later line without a time: unverified again
        return out

    def record(self, relpath: str, md5: str, size: int, mtime: float | None = None) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        row: dict[str, Any] = {"path": relpath, "md5": md5, "size": size}
        if mtime is not None:
            row["mtime"] = mtime
        line = json.dumps(row, separators=(",", ":")) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, line.encode("utf-8"))
        finally:
            os.close(fd)


def default_journal(local_batch_dir: str | os.PathLike[str], target: Target) -> FileJournal:
    """The journal of one (local batch, target) pair, beside the batch folder."""
    root = Path(local_batch_dir).absolute()
    key = hashlib.sha256(target.describe().encode("utf-8")).hexdigest()[:12]
    return FileJournal(root.parent / JOURNAL_DIR / f"{root.name}.{key}.jsonl")


# --------------------------------------------------------------------------- report


@dataclass
class UploadReport:
    """What an upload did: files sent, files skipped as already there, files that failed (with why)."""

    target: str
    batch_id: str
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # on the target, in the batch, but not in the local batch
    bytes_uploaded: int = 0
    complete: bool = False  # BatchComplete is on the target
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return not self.failed

    def summary(self) -> str:
        """One line for logs and the CLI."""
        verb = "would upload" if self.dry_run else "uploaded"
        state = "complete" if self.complete else "not complete"
        removed = f", {len(self.removed)} removed" if self.removed else ""
        return (f"batch {self.batch_id} to {self.target}: {verb} {len(self.uploaded)} files "
                f"({self.bytes_uploaded:,} bytes), {len(self.skipped)} already there, "
                f"{len(self.failed)} failed{removed}; batch {state}")


# --------------------------------------------------------------------------- progress


@dataclass
class UploadProgress:
    """Where an upload stands: files and bytes done of those it set out to send (already there counts as done)."""

    started: float = field(default_factory=time.monotonic)
    files_total: int = 0
    bytes_total: int = 0
    files_done: int = 0
    bytes_done: int = 0

    @property
    def seconds(self) -> float:
        return max(time.monotonic() - self.started, 1e-9)

    @property
    def rate(self) -> float:
        """Bytes per second so far."""
        return self.bytes_done / self.seconds

    @property
    def eta(self) -> float | None:
        """Seconds left at the rate so far (None before the first byte)."""
        if self.bytes_done <= 0:
            return None
        return max(self.bytes_total - self.bytes_done, 0) / self.rate

    def line(self) -> str:
        """``120/457 files, 1.2/3.0 MB, 0.35 MB/s, ETA 6 s`` (MB = 2^20 bytes)."""
        mb = 2**20
        eta = self.eta
        left = "ETA ?" if eta is None else f"ETA {eta:.0f} s"
        return (f"{self.files_done}/{self.files_total} files, {self.bytes_done / mb:.1f}/{self.bytes_total / mb:.1f} MB, "
                f"{self.rate / mb:.2f} MB/s, {left}")


# --------------------------------------------------------------------------- upload


class BatchUpload:
    """Sends one local batch folder to one target; see the module docstring.

    ``on_file(event, remote_path)`` is called after each file with ``"uploaded"``,
    ``"skipped"``, ``"failed"`` or ``"removed"`` (progress bars, logs).
    ``check()`` is called before each file is sent, before anything is removed and
    before ``BatchComplete``: it raises to stop the upload at that file boundary (a
    run taken over by another runner, SIGTERM); what was sent stays, resumable.
    """

    def __init__(self, target: Target, local_batch_dir: str | os.PathLike[str], *, remote_dir: str | None = None,
                 journal: UploadJournal | None = None, on_file: Callable[[str, str], None] | None = None,
                 dry_run: bool = False, max_media_bytes: int = MAX_MEDIA_BYTES,
                 media_root: str | None = None, on_progress: Callable[[UploadProgress], None] | None = None,
                 check: Callable[[], None] | None = None) -> None:
        self.target = target
        self.check = check
        if check is not None:
            target.before_retry = check  # a stop asked for mid-file ends the retries too
        self.local = Path(local_batch_dir)
        if not self.local.is_dir():
            raise DeliveryTerminalError(
                f"local batch folder {self.local} does not exist; fix: run the job with load.layout = 'ddex-batch' first"
            )
        self.batch_id = self.local.name
        self.remote_dir = safe_relpath(remote_dir if remote_dir is not None else self.batch_id, what="remote folder")
        self.journal = journal if journal is not None else default_journal(self.local, target)
        self.on_file = on_file
        self.dry_run = dry_run
        self.report = UploadReport(target.describe(), self.batch_id, dry_run=dry_run)
        self._marker = f"BatchComplete_{self.batch_id}.xml"
        self._committed = self.journal.committed()
        stamps = getattr(self.journal, "stamps", None)
        self._stamps: dict[str, float] = stamps() if callable(stamps) else {}
        self._sent: dict[str, str] = {}  # batch-relative path -> md5, this session's confirmed files
        self._failed: set[str] = set()  # batch-relative paths that failed in this session: counted once, not retried
        self.max_media_bytes = max_media_bytes
        self.media_root = media_root  # overrides the media root the batch's media lists name
        self._roots: dict[str, MediaRoot] = {}
        self._lock = threading.RLock()  # the report, journal and maps are shared by the transfers in flight
        self._stop = threading.Event()  # set when a transfer hit a fault that stops the upload
        self.progress = UploadProgress()
        self.on_progress = on_progress
        self._queued: set[str] = set()  # counted in the progress totals
        if not dry_run:
            target.clean_temp(self.remote_dir)  # what a killed upload of this batch left
        self._remote: dict[str, RemoteObject] = target.list(self.remote_dir)
        self._closed = join(self.remote_dir, self._marker) in self._remote

    # ------------------------------------------------------------------ public

    def send_release(self, folder: str) -> UploadReport:
        """Upload one release folder (its resources, then its message); returns this call's report."""
        before = self._mark()
        self._send_all(batch_manifest(self.local, folder))
        return self._since(before)

    def send_all(self) -> UploadReport:
        """Upload every file of the batch except ``BatchComplete``; returns this call's report."""
        before = self._mark()
        self._send_all(e for e in batch_manifest(self.local) if e.kind != BATCH_COMPLETE)
        return self._since(before)

    def complete(self) -> UploadReport:
        """Check every local file is on the target, then put ``BatchComplete`` last; returns the whole report.

        Without a local ``BatchComplete`` (the run is not whole), or after a
        failure, the marker is not sent and ``report.complete`` stays False.
        """
        manifest = batch_manifest(self.local)
        self._send_all(e for e in manifest if e.kind != BATCH_COMPLETE)
        marker = [e for e in manifest if e.kind == BATCH_COMPLETE]
        if marker and not self.report.failed:
            missing = [e.relpath for e in manifest if e.kind != BATCH_COMPLETE and e.relpath not in self._sent]
            if missing:  # cannot happen unless a send failed silently; never close a partial batch
                raise DeliveryTerminalError(f"batch {self.batch_id}: {len(missing)} files not confirmed on "
                                            f"{self.target.describe()}: {missing[:5]}; BatchComplete not sent")
            if not self._closed and self._remote:
                self._remove_extras({join(self.remote_dir, e.relpath) for e in manifest})
            self._count(marker)
            self._send(marker[0])
            self.report.complete = self.dry_run or marker[0].relpath in self._sent
            if not self.dry_run:
                self.target.clean_temp(self.remote_dir)
        return self.report

    # ------------------------------------------------------------------ internals

    def _remove_extras(self, wanted: set[str]) -> None:
        """Delete files of this batch on the target that the local batch no longer has.

        An earlier, interrupted upload may have sent a release that the resumed
        run then rejected (its media changed, say); the store must not find it
        in a batch declared complete. The store's own ACK files stay.
        """
        # Only a file that was there when this upload started can be extra: everything this upload sent is wanted.
        extras = sorted(r for r in set(self._remote) - wanted if not is_ack_file(r))
        self._refuse_unproven_removals(extras)
        for remote in extras:
            self._check()
            if not self.dry_run:
                self.target.remove(remote)
            self.report.removed.append(remote)
            self._event("removed", remote)

    def _refuse_unproven_removals(self, extras: list[str]) -> None:
        """A remote file is removed only on the local batch's proof that it no longer belongs: never one its
        local message still names (that resource went missing locally; the batch is not whole)."""
        prefix = f"{self.remote_dir}/" if self.remote_dir else ""
        messages: dict[str, bytes | None] = {}
        for remote in extras:
            rel = remote[len(prefix):] if remote.startswith(prefix) else remote
            folder, _, rest = rel.partition("/")
            if not rest or "/" not in rest:
                continue  # not a file of a release's resources
            if folder not in messages:
                try:
                    fd = open_batch_file(self.local, f"{folder}/{folder}.xml")
                except DeliveryTerminalError:
                    messages[folder] = None  # the release is gone locally (rejected on resume): removable
                    continue
                try:
                    messages[folder] = os.pread(fd, os.fstat(fd).st_size, 0)
                finally:
                    os.close(fd)
            message = messages[folder]
            name = rest.rsplit("/", 1)[1]
            if message is not None and name.encode("utf-8") in message:
                raise DeliveryTerminalError(
                    f"batch {self.batch_id}: {rel} is on {self.target.describe()} and named by the local message "
                    f"{folder}/{folder}.xml, but missing from the local batch {self.local}; the batch is not whole "
                    "here, so nothing is removed and BatchComplete is not sent; fix: restore the file, or rebuild "
                    "the batch (`etl run --new --force`)"
                )

    def _mark(self) -> tuple[int, int, int, int]:
        r = self.report
        return len(r.uploaded), len(r.skipped), len(r.failed), r.bytes_uploaded

    def _since(self, before: tuple[int, int, int, int]) -> UploadReport:
        r = self.report
        return UploadReport(r.target, r.batch_id, r.uploaded[before[0]:], r.skipped[before[1]:], r.failed[before[2]:],
                            [], r.bytes_uploaded - before[3], r.complete, r.dry_run)

    def _send_all(self, entries: Iterable[ManifestEntry]) -> None:
        """Send each entry not confirmed yet, ``target.transfers`` at a time, resources wholly before messages.

        The first fault that stops the upload (a transient one: the target is
        unwell) lets the transfers in flight finish, starts no more, and is
        raised; what was confirmed is journaled, so a resume sends the rest.
        """
        # a file that failed in this upload is not tried (nor reported) again
        todo = [e for e in entries if e.relpath not in self._sent and e.relpath not in self._failed]
        self._count(todo)
        if not self.dry_run and not self._closed:
            missing = [join(self.remote_dir, e.relpath) for e in todo]
            self.target.prepare_folders(r for r in missing if r not in self._remote)
        for kind in (RESOURCE, MESSAGE, BATCH_COMPLETE):
            self._send_many([e for e in todo if e.kind == kind])

    def _count(self, entries: list[ManifestEntry]) -> None:
        """Add entries not counted yet to the progress totals."""
        with self._lock:
            fresh = [e for e in entries if e.relpath not in self._queued]
            self._queued.update(e.relpath for e in fresh)
            self.progress.files_total += len(fresh)
            self.progress.bytes_total += sum(e.size for e in fresh)

    def _send_many(self, entries: list[ManifestEntry]) -> None:
        workers = min(self.target.transfers, len(entries))
        if workers <= 1 or self.dry_run:
            for entry in entries:
                self._send(entry)
            return
        self._stop.clear()
        with ThreadPoolExecutor(workers, thread_name_prefix="etl-upload") as pool:
            futures = [pool.submit(self._send, e) for e in entries]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            first = next((f.exception() for f in futures if f in done and f.exception() is not None), None)
            if first is not None:
                self._stop.set()  # queued transfers return at once; those in flight finish
            wait(futures)
        if first is not None:
            raise first

    def _already_there(self, remote: str, entry: ManifestEntry) -> bool:
        found = self._remote.get(remote)
        if found is None or found.size != entry.size:
            return False
        if found.md5 is not None:
            return found.md5 == entry.md5
        if self._committed.get(remote) == entry.md5:
            stamp = self._stamps.get(remote)
            if self._closed or (stamp is not None and stamp == found.mtime):
                return True
            # The journal says we sent it, but the store no longer reports the time it did then (or never
            # did): the file may have been altered at the same size since. Before BatchComplete, read it back.
        # committed just before a kill, before its journal line, or altered since: hash what is there
        return self.target.md5(remote) == entry.md5

    def _check(self) -> None:
        if self.check is not None:
            self.check()

    def _send(self, entry: ManifestEntry) -> None:
        if self._stop.is_set():
            return
        self._check()
        remote = join(self.remote_dir, entry.relpath)
        if self._already_there(remote, entry):
            with self._lock:
                self._sent[entry.relpath] = entry.md5
                self.report.skipped.append(remote)
                mtime = self._remote[remote].mtime
                if not self.dry_run and (self._committed.get(remote) != entry.md5 or self._stamps.get(remote) != mtime):
                    self._record(remote, entry, mtime)
                self._event("skipped", remote, entry.size)
            return
        if self._closed:
            raise DeliveryTerminalError(
                f"batch {self.batch_id} is already complete on {self.target.describe()} (its BatchComplete is there), "
                f"but {entry.relpath} differs from the local batch; fix: deliver the change in a new batch "
                "(a new run), never into a batch the store may have ingested"
            )
        if self.dry_run:
            with self._lock:
                self._sent[entry.relpath] = entry.md5
                self.report.uploaded.append(remote)
                self.report.bytes_uploaded += entry.size
                self._event("uploaded", remote, entry.size)
            return
        local = self.local / entry.relpath
        # checked again now: a link planted since is refused (media from the media root go through its own seam)
        fd = -1 if entry.source is not None else open_batch_file(self.local, entry.relpath)
        try:
            if entry.source is not None:  # straight from the media root, hashed on the way
                root = self._media_root(entry)
                source = entry.source
                stored = self.target.put_stream(remote, lambda: root.open(source, max_bytes=self.max_media_bytes),
                                                size=entry.size, md5=entry.md5, what=root.path(source))
            elif entry.size <= 4 * _BLOCK:
                data = os.pread(fd, entry.size + 1, 0)
                if hashlib.md5(data).hexdigest() != entry.md5:
                    raise DeliveryTerminalError(
                        f"{local} changed while batch {self.batch_id} was being uploaded; fix: let the run that "
                        "writes the batch finish, then upload again"
                    )
                stored = self.target.put_bytes(remote, data)
            else:
                # the file this descriptor holds, whatever happens to its name meanwhile (Linux: /proc/self/fd)
                held = Path(f"/proc/self/fd/{fd}")
                path = held if held.exists() else local
                stored = self.target.put_stream(remote, lambda: open(path, "rb"), size=entry.size, md5=entry.md5,
                                                what=str(local))
        except DeliveryError as exc:
            if exc.retryable:
                raise  # the target is unwell: stop here; an upload started again resumes
            with self._lock:
                self.report.failed.append((remote, str(exc)))
                self._failed.add(entry.relpath)
                self._event("failed", remote)
            return
        finally:
            if fd >= 0:
                os.close(fd)
        with self._lock:
            self._record(remote, entry, stored.mtime if stored is not None and stored.size == entry.size else None)
            self._sent[entry.relpath] = entry.md5
            self.report.uploaded.append(remote)
            self.report.bytes_uploaded += entry.size
            self._event("uploaded", remote, entry.size)

    def _record(self, remote: str, entry: ManifestEntry, mtime: float | None) -> None:
        if mtime is None:
            self.journal.record(remote, entry.md5, entry.size)
            self._stamps.pop(remote, None)
        else:
            self.journal.record(remote, entry.md5, entry.size, mtime=mtime)
            self._stamps[remote] = mtime
        self._committed[remote] = entry.md5

    def _media_root(self, entry: ManifestEntry) -> MediaRoot:
        url = self.media_root or entry.media_root
        if not url:
            raise DeliveryTerminalError(f"{entry.relpath}: no media root to read {entry.source} from; fix: set "
                                        "load.media_root (or the recipient's media_root) as the run had it")
        with self._lock:
            root = self._roots.get(url)
            if root is None:
                root = self._roots[url] = MediaRoot(url)
            return root

    def _event(self, what: str, remote: str, size: int = 0) -> None:
        if what in ("uploaded", "skipped"):
            self.progress.files_done += 1
            self.progress.bytes_done += size
            if self.on_progress is not None:
                self.on_progress(self.progress)
        if self.on_file is not None:
            self.on_file(what, remote)


def upload_batch(local_batch_dir: str | os.PathLike[str], target: Target, *, remote_dir: str | None = None,
                 journal: UploadJournal | None = None, on_file: Callable[[str, str], None] | None = None,
                 dry_run: bool = False, check: Callable[[], None] | None = None, **options: Any) -> UploadReport:
    """Upload a whole local batch folder: resources, messages, then ``BatchComplete`` last. Resumable.

    Returns the report (uploaded, skipped as already there, failed). Raises
    ``DeliveryTransientError`` when the target keeps failing (call again to
    resume) and ``DeliveryTerminalError`` for what needs a fix first.
    """
    upload = BatchUpload(target, local_batch_dir, remote_dir=remote_dir, journal=journal, on_file=on_file,
                         dry_run=dry_run, check=check, **options)
    upload.send_all()
    return upload.complete()
