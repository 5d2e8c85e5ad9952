"""The kinds of target: a local folder, an SFTP folder, an object store (see ``targets`` for the semantics)."""
from __future__ import annotations

import base64
import hashlib
import io
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import DeliveryTerminalError
from .target_base import TEMP_DIR, RemoteObject, Target

DEFAULT_SINGLE_PUT_MAX = 64 * 2**20
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

    def _commit(self, tmp: Path, rel: str) -> None:
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

    def _put_bytes(self, rel: str, data: bytes) -> None:
        def write(fd: int) -> None:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]

        self._commit(self._write_temp(rel, write), rel)

    def _put_file(self, rel: str, local: Path) -> None:
        def write(fd: int) -> None:
            with open(local, "rb") as src:
                while block := src.read(1 << 20):
                    view = memoryview(block)
                    while view:
                        view = view[os.write(fd, view):]

        self._commit(self._write_temp(rel, write), rel)

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
            return {rel: RemoteObject(top.stat().st_size)}
        for folder, dirs, files in os.walk(top):
            if Path(folder) == self.root and TEMP_DIR in dirs:
                dirs.remove(TEMP_DIR)
            for name in files:
                full = Path(folder) / name
                out[full.relative_to(self.root).as_posix()] = RemoteObject(full.stat().st_size)
        return out

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


class SFTPTarget(_FsTarget):
    """An SFTP folder: upload to ``.etl-partial``, then ``posix-rename`` into place (atomic replace)."""

    scheme = "sftp"
    renames = True

    def __init__(self, fs: Any, root: str, display: str, **kw: Any) -> None:
        super().__init__(fs, root, display, **kw)
        self._made: set[str] = set()

    def _makedirs(self, full_dir: str) -> None:
        if full_dir in self._made or not full_dir:
            return
        self.fs.makedirs(full_dir, exist_ok=True)
        self._made.add(full_dir)

    def _upload_then_rename(self, rel: str, upload: Callable[[str], None]) -> None:
        tmp = self._full(self._temp_name(rel))
        final = self._full(rel)
        self._makedirs(tmp.rsplit("/", 1)[0])
        self._makedirs(final.rsplit("/", 1)[0])
        try:
            upload(tmp)
            self.fs.ftp.posix_rename(tmp, final)
        except BaseException:
            try:
                self.fs.ftp.remove(tmp)
            except Exception:  # noqa: BLE001 - the temp may not exist or the session may be gone
                pass
            raise

    def _put_bytes(self, rel: str, data: bytes) -> None:
        self._upload_then_rename(rel, lambda tmp: self.fs.ftp.putfo(io.BytesIO(data), tmp, file_size=len(data)))

    def _put_file(self, rel: str, local: Path) -> None:
        self._upload_then_rename(rel, lambda tmp: self.fs.ftp.put(str(local), tmp))

    def _list(self, rel: str) -> dict[str, RemoteObject]:
        from stat import S_ISDIR

        top = self._full(rel)
        out: dict[str, RemoteObject] = {}
        try:
            attrs = self.fs.ftp.stat(top)
        except FileNotFoundError:
            return out
        if not S_ISDIR(attrs.st_mode or 0):
            return {rel: RemoteObject(attrs.st_size or 0)}
        stack = [top]
        while stack:
            folder = stack.pop()
            for entry in self.fs.ftp.listdir_attr(folder):
                full = f"{folder}/{entry.filename}"
                if S_ISDIR(entry.st_mode or 0):
                    if folder == self.root and entry.filename == TEMP_DIR:
                        continue
                    stack.append(full)
                else:
                    out[self._rel(full)] = RemoteObject(entry.st_size or 0)
        return out

    def _clean(self, rel: str) -> int:
        from stat import S_ISDIR

        top = self._full(rel)
        removed = 0
        try:
            self.fs.ftp.stat(top)
        except FileNotFoundError:
            return 0
        folders = [top]
        stack = [top]
        while stack:
            folder = stack.pop()
            for entry in self.fs.ftp.listdir_attr(folder):
                full = f"{folder}/{entry.filename}"
                if S_ISDIR(entry.st_mode or 0):
                    stack.append(full)
                    folders.append(full)
                else:
                    self.fs.ftp.remove(full)
                    removed += 1
        for folder in reversed(folders):
            self.fs.ftp.rmdir(folder)
            self._made.discard(folder)
        return removed

    def _classify(self, exc: BaseException, what: str) -> Any:
        from .host_keys import host_key_error

        where = f"{what} on {self.describe()}"
        refused = host_key_error(exc, where, getattr(self.fs, "_known_hosts", None), host=getattr(self.fs, "host", None),
                                 port=getattr(self.fs, "ssh_kwargs", {}).get("port"))
        return refused or super()._classify(exc, what)

    def _reconnect(self) -> None:
        try:
            self.fs.client.close()
        except Exception:  # noqa: BLE001 - closing a dead session may fail; a new one follows
            pass
        self.fs._connect()
        self._made.clear()

    def close(self) -> None:
        try:
            self.fs.client.close()
        except Exception:  # noqa: BLE001
            pass


class ObjectTarget(_FsTarget):
    """An object store (S3, GCS, ...): one whole-object PUT per file, never a streamed write."""

    scheme = "object"
    renames = False

    def __init__(self, fs: Any, root: str, display: str, *, content_md5: bool = False,
                 single_put_max: int = DEFAULT_SINGLE_PUT_MAX, **kw: Any) -> None:
        super().__init__(fs, root, display, **kw)
        self.content_md5 = content_md5
        self.single_put_max = single_put_max

    def _put_bytes(self, rel: str, data: bytes) -> None:
        extra: dict[str, str] = {}
        if self.content_md5:
            extra["ContentMD5"] = base64.b64encode(hashlib.md5(data).digest()).decode("ascii")
        self.fs.pipe_file(self._full(rel), data, **extra)

    def _put_file(self, rel: str, local: Path) -> None:
        if local.stat().st_size <= self.single_put_max:
            self._put_bytes(rel, local.read_bytes())
        else:
            # The library sends parts and commits them with one final request; an
            # error aborts the upload, a kill leaves parts the lifecycle rule removes.
            self.fs.put_file(str(local), self._full(rel))

    def _list(self, rel: str) -> dict[str, RemoteObject]:
        found = self.fs.find(self._full(rel), detail=True)
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
            out[self._rel(full)] = RemoteObject(int(info.get("size") or 0), md5)
        return out
