"""The kinds of target: a local folder, an SFTP folder, an object store (see ``targets`` for the semantics)."""
from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import io
import os
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from stat import S_ISDIR, S_ISREG
from typing import Any

from ..errors import DeliveryTerminalError
from .target_base import STREAM_BLOCK, TEMP_DIR, Folder, HashingReader, RemoteObject, Target

DEFAULT_SINGLE_PUT_MAX = 64 * 2**20
#: Object-store files above this go up as a multipart upload whose parts travel side by side (the aws CLI's is 8 MB).
DEFAULT_MULTIPART_THRESHOLD = 32 * 2**20
DEFAULT_PART_SIZE = 8 * 2**20
#: Parts of one multipart upload in flight at once (each held in memory while it travels).
PARTS_IN_FLIGHT = 4
_SFTP_BLOCK = 256 * 2**10
#: Seconds a new SFTP session may take to start when the target sets no ``timeout``.
SESSION_DEADLINE = 30.0
# The slowest transfer an object store's request may make before it counts as stalled: its deadline is the
# target's ``timeout`` plus the bytes it moves at this rate (a 64 MiB PUT: timeout + 1024 s).
MIN_RATE = 64 * 1024
_MD5_ETAG = re.compile(r'^"?([0-9a-f]{32})"?$')


# --------------------------------------------------------------------------- local folder


class LocalTarget(Target):
    """A local folder: temp file in ``.etl-partial``, fsync, ``os.replace``, folder fsync."""

    scheme = "file"
    renames = True

    def __init__(self, root: Path, *, durable: bool = True, **kw: Any) -> None:
        super().__init__(f"file://{Path(root).absolute()}", **kw)
        self.root = Path(root).absolute()
        self.durable = durable
        if not self.root.is_dir():
            raise DeliveryTerminalError(
                f"target folder {self.root} does not exist; fix: create it, or correct the target URL"
            )

    def _path(self, rel: str) -> Path:
        return self.root / rel

    def _write_temp(self, rel: str, write: Callable[[int], None]) -> Path:
        tmp = self._path(self._temp_name(rel))
        tmp.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            write(fd)
            if self.durable:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        return tmp

    def _commit(self, tmp: Path, rel: str) -> RemoteObject:
        final = self._path(rel)
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if self.durable:
            dfd = os.open(final.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        st = os.stat(final)
        return RemoteObject(st.st_size, None, st.st_mtime)

    def _put_bytes(self, rel: str, data: bytes) -> RemoteObject:
        def write(fd: int) -> None:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]

        return self._commit(self._write_temp(rel, write), rel)

    def _put_file(self, rel: str, local: Path) -> RemoteObject:
        with open(local, "rb") as src:
            return self._put_stream(rel, HashingReader(src, str(local), self.throttle), local.stat().st_size, None)

    def _put_stream(self, rel: str, src: HashingReader, size: int, md5: str | None) -> RemoteObject:
        def write(fd: int) -> None:
            while block := src.read(STREAM_BLOCK):
                view = memoryview(block)
                while view:
                    view = view[os.write(fd, view):]
            src.verify(size, md5)

        return self._commit(self._write_temp(rel, write), rel)

    def _exists(self, rel: str) -> bool:
        return self._path(rel).is_file()

    def _read_bytes(self, rel: str) -> bytes:
        return self._path(rel).read_bytes()

    def _open_read(self, rel: str) -> Any:
        return open(self._path(rel), "rb")

    def _remove(self, rel: str) -> None:
        self._path(rel).unlink(missing_ok=True)

    def _list(self, rel: str) -> dict[str, RemoteObject]:
        top = self._path(rel) if rel else self.root
        out: dict[str, RemoteObject] = {}
        if top.is_file():
            st = top.stat()
            return {rel: RemoteObject(st.st_size, None, st.st_mtime)}
        for folder, dirs, files in os.walk(top):
            if Path(folder) == self.root and TEMP_DIR in dirs:
                dirs.remove(TEMP_DIR)
            for name in files:
                full = Path(folder) / name
                st = full.stat()
                out[full.relative_to(self.root).as_posix()] = RemoteObject(st.st_size, None, st.st_mtime)
        return out

    def _list_folder(self, rel: str) -> Folder:
        files: dict[str, RemoteObject] = {}
        folders: list[str] = []
        try:
            with os.scandir(self._path(rel) if rel else self.root) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        folders.append(entry.name)
                    elif entry.is_file(follow_symlinks=False):
                        files[entry.name] = RemoteObject(entry.stat(follow_symlinks=False).st_size)
        except (FileNotFoundError, NotADirectoryError):
            return Folder(False, {})
        return Folder(True, files, tuple(sorted(folders)))

    def _clean(self, rel: str) -> int:
        top = self._path(rel)
        removed = 0
        if not top.is_dir():
            return 0
        for folder, _dirs, files in os.walk(top, topdown=False):
            for name in files:
                os.unlink(os.path.join(folder, name))
                removed += 1
            os.rmdir(folder)
        return removed


# --------------------------------------------------------------------------- fsspec-based targets


class _FsTarget(Target):
    """Shared code of the targets built on an fsspec filesystem rooted at ``root``."""

    def __init__(self, fs: Any, root: str, display: str, **kw: Any) -> None:
        super().__init__(display, **kw)
        self.fs = fs
        self.root = root.rstrip("/")

    def _full(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    def _rel(self, full: str) -> str:
        full = full.rstrip("/")
        prefix = self.root + "/"
        if not full.startswith(prefix):
            raise DeliveryTerminalError(f"the target listed {full!r}, outside {self.describe()}")
        return full[len(prefix):]

    def _exists(self, rel: str) -> bool:
        try:
            return bool(self.fs.isfile(self._full(rel)))
        except FileNotFoundError:
            return False

    def _read_bytes(self, rel: str) -> bytes:
        data: bytes = self.fs.cat_file(self._full(rel))
        return data

    def _open_read(self, rel: str) -> Any:
        return self.fs.open(self._full(rel), "rb")

    def _remove(self, rel: str) -> None:
        try:
            self.fs.rm_file(self._full(rel))
        except FileNotFoundError:
            pass


def _write_pipelined(sftp: Any, path: str, src: HashingReader) -> Any:
    """Write ``src`` to a new file ``path``; its attributes (size, modification time) once it is closed.

    Writes go out without waiting for answers (paramiko's pipelining); then
    FSTAT and CLOSE go out behind them, and only then are the answers read:
    every write's (paramiko alone drops those of the last ones), the file's
    attributes, the close's. One round trip for all of it. A refused write
    (a full disk, a quota) fails the file.
    """
    from paramiko.sftp import CMD_ATTRS, CMD_CLOSE, CMD_FSTAT
    from paramiko.sftp_attr import SFTPAttributes

    f = sftp.open(path, "wb")
    try:
        f.set_pipelined(True)
        while block := src.read(_SFTP_BLOCK):
            f.write(block)
        f.flush()
        writes = list(f._reqs)
        f._reqs.clear()
        asked = sftp._async_request(type(None), CMD_FSTAT, f.handle)
        closing = sftp._async_request(type(None), CMD_CLOSE, f.handle)
        f._closed = True  # its CLOSE is on the way: paramiko must never send another for this handle
        for request in writes:
            try:
                sftp._read_response(request)
            except OSError as exc:
                raise OSError(f"size mismatch in put: the server refused a write ({exc}), so it kept fewer "
                              "bytes than were sent") from exc
        kind, msg = sftp._read_response(asked)
        attrs = SFTPAttributes._from_msg(msg) if kind == CMD_ATTRS else SFTPAttributes()
        sftp._read_response(closing)
        return attrs
    finally:
        if not f._closed:
            f.close()


def _mtime(attrs: Any) -> float | None:
    value = getattr(attrs, "st_mtime", None)
    return float(value) if value is not None else None


class SFTPTarget(_FsTarget):
    """An SFTP folder: upload to ``.etl-partial``, then ``posix-rename`` into place (atomic replace).

    One SSH connection carries up to ``transfers`` SFTP sessions (channels),
    one per file in flight; each file's writes are pipelined (requests sent
    without waiting for each reply, the SSH window bounding what is in
    flight), so a file costs three round trips (open, close, rename) whatever
    its size. A server that refuses more sessions (OpenSSH's ``MaxSessions``,
    10 by default) caps the count at what it accepted.
    """

    scheme = "sftp"
    renames = True

    def __init__(self, fs: Any, root: str, display: str, *, timeout: float | None = None, **kw: Any) -> None:
        super().__init__(fs, root, display, **kw)
        self.timeout = timeout
        self._made: set[str] = set()
        self._cond = threading.Condition()
        self._idle: list[Any] = [fs.ftp]
        self._open = 1  # sessions open (idle or in use)
        self._cap = self.transfers
        self._generation = 0  # bumped by a reconnect: sessions of an older connection are dropped
        self._local = threading.local()  # per thread: the generation of the session that last failed
        self._settimeout(fs.ftp)

    # ------------------------------------------------------------------ sessions

    def _settimeout(self, sftp: Any) -> None:
        if self.timeout:
            sftp.get_channel().settimeout(self.timeout)

    @contextlib.contextmanager
    def _session(self) -> Iterator[Any]:
        """An SFTP session of its own for the calling thread, returned to the pool afterwards."""
        sftp, generation = self._acquire()
        ok = False
        try:
            yield sftp
            ok = True
        finally:
            with self._cond:
                if ok and generation == self._generation:
                    self._idle.append(sftp)
                else:  # a session that saw a fault is not trusted again
                    self._local.failed = generation
                    if generation == self._generation:
                        self._open -= 1
                    with contextlib.suppress(Exception):
                        sftp.close()
                self._cond.notify()

    def _acquire(self) -> tuple[Any, int]:
        import paramiko

        while True:
            with self._cond:
                while not self._idle and self._open >= self._cap:
                    self._cond.wait()
                generation = self._generation
                if self._idle:
                    return self._idle.pop(), generation
                self._open += 1
                client = self.fs.client
            try:
                transport = client.get_transport() if client is not None else None
                if transport is None or not transport.is_active():
                    raise ConnectionError("the SSH connection is gone")
                channel = transport.open_session(timeout=self.timeout)
                if self.timeout:
                    channel.settimeout(self.timeout)
                # paramiko waits for the subsystem's answer with no deadline of its own (the channel's
                # timeout does not reach it): a server that went silent would hold this thread, and the
                # stop or the retry behind it, for ever. Closing the channel at the deadline ends the wait.
                watchdog = threading.Timer(self.timeout or SESSION_DEADLINE, channel.close)
                watchdog.daemon = True
                watchdog.start()
                try:
                    channel.invoke_subsystem("sftp")
                finally:
                    watchdog.cancel()
                sftp = paramiko.SFTPClient(channel)
                return sftp, generation
            except paramiko.ChannelException:
                with self._cond:
                    if generation == self._generation:
                        self._open -= 1
                    if self._open <= 0:
                        raise
                    self._cap = max(1, self._open)  # the server allows no more sessions: use those it gave
            except BaseException:
                with self._cond:
                    if generation == self._generation:
                        self._open -= 1
                    self._cond.notify()
                raise

    def _classify(self, exc: BaseException, what: str) -> Any:
        from .host_keys import host_key_error

        where = f"{what} on {self.describe()}"
        refused = host_key_error(exc, where, getattr(self.fs, "_known_hosts", None), host=getattr(self.fs, "host", None),
                                 port=getattr(self.fs, "ssh_kwargs", {}).get("port"))
        return refused or super()._classify(exc, what)

    def _reconnect(self) -> None:
        """A new SSH connection, unless another thread made one since this thread's session failed."""
        with self._cond:
            if getattr(self._local, "failed", self._generation) != self._generation:
                return  # the connection this thread saw fail was replaced already
            self._generation += 1  # sessions of the old connection are dropped, whatever happens next
            self._idle = []
            self._open = 0
            self._made.clear()
            with contextlib.suppress(Exception):  # closing a dead connection may fail; a new one follows
                self.fs.client.close()  # also wakes every thread waiting on the old connection
            self._cond.notify_all()
            self.fs._connect()
            self._idle = [self.fs.ftp]
            self._open = 1
            self._settimeout(self.fs.ftp)
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            for sftp in self._idle:
                with contextlib.suppress(Exception):
                    sftp.close()
            self._idle = []
            self._generation += 1
        with contextlib.suppress(Exception):
            self.fs.client.close()

    # ------------------------------------------------------------------ folders

    def _ensure_dir(self, sftp: Any, folder: str) -> None:
        if not folder or folder in (".", "/") or folder in self._made:
            return
        try:
            sftp.mkdir(folder)
        except OSError:
            try:
                attrs = sftp.stat(folder)
            except FileNotFoundError:  # the parent is missing: make it, then this one
                self._ensure_dir(sftp, folder.rsplit("/", 1)[0] if "/" in folder else "")
                try:
                    sftp.mkdir(folder)
                except OSError:
                    attrs = sftp.stat(folder)  # another session made it meanwhile
                    if not S_ISDIR(attrs.st_mode or 0):
                        raise
            else:
                if not S_ISDIR(attrs.st_mode or 0):
                    raise
        self._made.add(folder)

    def _prepare(self, folders: list[str]) -> None:
        """Every folder (and its parents), a level at a time, the folders of a level side by side."""
        wanted: set[str] = set()
        for rel in folders:
            parts = rel.split("/")
            wanted.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
        levels: dict[int, list[str]] = {}
        for rel in wanted:
            full = self._full(rel)
            if full not in self._made:
                levels.setdefault(rel.count("/"), []).append(full)

        def make(batch: list[str]) -> None:
            with self._session() as sftp:
                for full in batch:
                    self._ensure_dir(sftp, full)

        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(self.transfers, thread_name_prefix="etl-mkdir") as pool:
            for depth in sorted(levels):
                names = sorted(levels[depth])
                n = min(self.transfers, len(names))
                list(pool.map(make, [names[i::n] for i in range(n)]))

    # ------------------------------------------------------------------ files

    def _put_bytes(self, rel: str, data: bytes) -> RemoteObject | None:
        return self._put_stream(rel, HashingReader(io.BytesIO(data), rel), len(data), None)  # put_bytes throttled it

    def _put_file(self, rel: str, local: Path) -> RemoteObject | None:
        with open(local, "rb") as src:
            return self._put_stream(rel, HashingReader(src, str(local), self.throttle), local.stat().st_size, None)

    def _put_stream(self, rel: str, src: HashingReader, size: int, md5: str | None) -> RemoteObject | None:
        tmp = self._full(self._temp_name(rel))
        final = self._full(rel)
        with self._session() as sftp:
            self._ensure_dir(sftp, tmp.rsplit("/", 1)[0])
            self._ensure_dir(sftp, final.rsplit("/", 1)[0])
            try:
                attrs = _write_pipelined(sftp, tmp, src)
                src.verify(size, md5)  # closed (every write acknowledged) and whole: only now may it appear
                if attrs.st_size is not None and attrs.st_size != size:
                    raise OSError(f"size mismatch in put: {attrs.st_size} != {size}")
                sftp.posix_rename(tmp, final)
            except BaseException:
                with contextlib.suppress(Exception):  # the temp may not exist or the session may be gone
                    sftp.remove(tmp)
                raise
        return RemoteObject(size, None, _mtime(attrs))

    def _exists(self, rel: str) -> bool:
        with self._session() as sftp:
            try:
                return S_ISREG(sftp.stat(self._full(rel)).st_mode or 0)
            except FileNotFoundError:
                return False

    def _read_bytes(self, rel: str) -> bytes:
        with self._session() as sftp, sftp.open(self._full(rel), "rb") as f:
            f.prefetch()
            data: bytes = f.read()
            return data

    def _open_read(self, rel: str) -> Any:
        return self.fs.open(self._full(rel), "rb")

    def _md5(self, rel: str) -> str:
        digest = hashlib.md5()
        with self._session() as sftp, sftp.open(self._full(rel), "rb") as f:
            f.prefetch()
            while block := f.read(STREAM_BLOCK):
                digest.update(block)
        return digest.hexdigest()

    def _remove(self, rel: str) -> None:
        with self._session() as sftp:
            try:
                sftp.remove(self._full(rel))
            except FileNotFoundError:
                pass

    def _list(self, rel: str) -> dict[str, RemoteObject]:
        top = self._full(rel)
        out: dict[str, RemoteObject] = {}
        with self._session() as sftp:
            try:
                attrs = sftp.stat(top)
            except FileNotFoundError:
                return out
            if not S_ISDIR(attrs.st_mode or 0):
                return {rel: RemoteObject(attrs.st_size or 0, None, _mtime(attrs))}
            stack = [top]
            while stack:
                folder = stack.pop()
                for entry in sftp.listdir_attr(folder):
                    full = f"{folder}/{entry.filename}"
                    if S_ISDIR(entry.st_mode or 0):
                        if folder == self.root and entry.filename == TEMP_DIR:
                            continue
                        stack.append(full)
                    else:
                        out[self._rel(full)] = RemoteObject(entry.st_size or 0, None, _mtime(entry))
        return out

    def _list_folder(self, rel: str) -> Folder:
        from stat import S_ISDIR, S_ISREG

        with self._session() as sftp:
            try:
                entries = sftp.listdir_attr(self._full(rel))
            except FileNotFoundError:
                return Folder(False, {})
        files = {e.filename: RemoteObject(e.st_size or 0) for e in entries if S_ISREG(e.st_mode or 0)}
        folders = tuple(sorted(e.filename for e in entries if S_ISDIR(e.st_mode or 0)))
        return Folder(True, files, folders)

    def _clean(self, rel: str) -> int:
        top = self._full(rel)
        removed = 0
        with self._session() as sftp:
            try:
                sftp.stat(top)
            except FileNotFoundError:
                return 0
            folders = [top]
            stack = [top]
            while stack:
                folder = stack.pop()
                for entry in sftp.listdir_attr(folder):
                    full = f"{folder}/{entry.filename}"
                    if S_ISDIR(entry.st_mode or 0):
                        stack.append(full)
                        folders.append(full)
                    else:
                        sftp.remove(full)
                        removed += 1
            for folder in reversed(folders):
                sftp.rmdir(folder)
                self._made.discard(folder)
        return removed


class ObjectTarget(_FsTarget):
    """An object store (S3, GCS, ...): one whole-object PUT per file, never a streamed write."""

    scheme = "object"
    renames = False

    def __init__(self, fs: Any, root: str, display: str, *, content_md5: bool = False,
                 single_put_max: int = DEFAULT_SINGLE_PUT_MAX, multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD,
                 part_size: int = DEFAULT_PART_SIZE, timeout: float | None = None, **kw: Any) -> None:
        super().__init__(fs, root, display, **kw)
        self.content_md5 = content_md5
        self.single_put_max = single_put_max
        self.timeout = timeout
        # Multipart needs the S3 API (s3fs); other stores take one PUT up to single_put_max.
        self.multipart = hasattr(fs, "_call_s3")
        self.multipart_threshold = min(multipart_threshold, single_put_max) if self.multipart else single_put_max
        self.part_size = max(part_size, 5 * 2**20)  # S3's smallest part (but the last)

    def _deadline(self, size: int = 0) -> dict[str, float]:
        """The whole-call deadline fsspec's async filesystems take (``timeout=``): a store that stops answering
        mid-request (an HTTP client waits for "100 Continue" or for room to write with no limit of its own)
        fails as a timeout, transient, instead of hanging. Bytes to move get ``MIN_RATE`` on top."""
        if not self.timeout or not getattr(self.fs, "async_impl", False):
            return {}
        return {"timeout": self.timeout + size / MIN_RATE}

    def _exists(self, rel: str) -> bool:
        try:
            return bool(self.fs.isfile(self._full(rel), **self._deadline()))
        except FileNotFoundError:
            return False

    def _read_bytes(self, rel: str) -> bytes:
        data: bytes = self.fs.cat_file(self._full(rel), **self._deadline(self.single_put_max))
        return data

    def _remove(self, rel: str) -> None:
        try:
            self.fs.rm_file(self._full(rel), **self._deadline())
        except FileNotFoundError:
            pass

    def _put_bytes(self, rel: str, data: bytes, md5: str | None = None) -> None:
        extra: dict[str, Any] = self._deadline(len(data))
        if self.content_md5:
            digest = bytes.fromhex(md5) if md5 else hashlib.md5(data).digest()
            # the store refuses a body whose MD5 is not this one: nothing else is ever committed
            extra["ContentMD5"] = base64.b64encode(digest).decode("ascii")
        self.fs.pipe_file(self._full(rel), data, **extra)

    def _put_file(self, rel: str, local: Path) -> None:
        with open(local, "rb") as src:
            self._put_stream(rel, HashingReader(src, str(local), self.throttle), local.stat().st_size, None)

    def _put_stream(self, rel: str, src: HashingReader, size: int, md5: str | None) -> None:
        if size > self.single_put_max and not self.multipart:
            # another fsspec store: its own large-file upload, from a local spool checked first
            import tempfile

            with tempfile.NamedTemporaryFile(prefix="etl-spool-") as spool:
                while block := src.read(STREAM_BLOCK):
                    spool.write(block)
                spool.flush()
                src.verify(size, md5)
                self.fs.put_file(spool.name, self._full(rel), **self._deadline(size))
            return
        if size <= self.multipart_threshold or not self.multipart:
            data = src.read_exact(size + 1)
            src.verify(size, md5)
            self._put_bytes(rel, data, src.md5)
            return
        self._put_multipart(rel, src, size, md5)

    def _put_multipart(self, rel: str, src: HashingReader, size: int, md5: str | None) -> None:
        """Parts side by side (``PARTS_IN_FLIGHT``, each with its Content-MD5); completed only when the whole MD5 is right.

        A kill leaves an incomplete upload that no listing shows (the lifecycle
        rule in docs/delivery.md removes its parts); any error aborts it.
        """
        bucket, key = self._full(rel).split("/", 1)
        fs = self.fs
        created = fs.call_s3("create_multipart_upload", Bucket=bucket, Key=key, **self._deadline())
        upload_id = created["UploadId"]
        in_flight: list[tuple[int, Any]] = []
        done: list[dict[str, Any]] = []
        try:
            number = 0
            while True:
                block = src.read_exact(self.part_size)
                if not block:
                    break
                number += 1
                digest = base64.b64encode(hashlib.md5(block).digest()).decode("ascii")
                coro = fs._call_s3("upload_part", Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number,
                                   Body=block, ContentMD5=digest)
                in_flight.append((number, asyncio.run_coroutine_threadsafe(coro, fs.loop)))
                del block
                while len(in_flight) >= PARTS_IN_FLIGHT:
                    n, future = in_flight.pop(0)
                    done.append({"PartNumber": n, "ETag": future.result(self._wait(self.part_size))["ETag"]})
            for n, future in in_flight:
                done.append({"PartNumber": n, "ETag": future.result(self._wait(self.part_size))["ETag"]})
            in_flight = []
            src.verify(size, md5)
            fs.call_s3("complete_multipart_upload", Bucket=bucket, Key=key, UploadId=upload_id,
                       MultipartUpload={"Parts": done}, **self._deadline())
        except BaseException:
            for _n, future in in_flight:
                future.cancel()
                with contextlib.suppress(BaseException):
                    future.result()
            with contextlib.suppress(Exception):
                fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload_id)
            raise

    def _wait(self, size: int) -> float | None:
        """How long a part may take (its whole-call deadline), or None: no limit."""
        return self._deadline(size).get("timeout")

    def _list(self, rel: str) -> dict[str, RemoteObject]:
        found = self.fs.find(self._full(rel), detail=True, **self._deadline())
        out: dict[str, RemoteObject] = {}
        for full, info in found.items():
            if info.get("type", "file") != "file":
                continue
            etag = _MD5_ETAG.match(str(info.get("ETag") or info.get("etag") or ""))
            md5 = etag.group(1) if etag else None
            if md5 is None and isinstance(info.get("md5Hash"), str):  # GCS reports the MD5 in base64
                try:
                    md5 = base64.b64decode(info["md5Hash"]).hex()
                except ValueError:
                    md5 = None
            modified = info.get("LastModified") or info.get("mtime")
            mtime = modified.timestamp() if hasattr(modified, "timestamp") else None
            out[self._rel(full)] = RemoteObject(int(info.get("size") or 0), md5, mtime)
        return out

    def _list_folder(self, rel: str) -> Folder:
        # One delimited listing (S3: ListObjectsV2 with Delimiter "/", a page per 1,000 keys).
        try:
            entries = self.fs.ls(self._full(rel), detail=True)
        except FileNotFoundError:
            return Folder(False, {})
        files: dict[str, RemoteObject] = {}
        folders: list[str] = []
        for info in entries:
            name = str(info["name"]).rstrip("/").rsplit("/", 1)[-1]
            if info.get("type") == "directory":
                folders.append(name)
            else:
                files[name] = RemoteObject(int(info.get("size") or 0))
        if not files and not folders:
            return Folder(False, {})  # an object store has no empty folders
        return Folder(True, files, tuple(sorted(folders)))
