"""Delivery targets by URL: a local folder, an SFTP server, an S3 bucket, anything fsspec serves.

``open_target(url, **options)`` returns a ``Target``; every path it takes is
relative to the URL's folder or prefix and checked by ``safe_relpath``, so
catalog data can never write outside it. The interface::

    target = open_target("sftp://ddex@sftp.store.example:22/incoming", key_file="~/.ssh/store")
    target.put_bytes("20260101120000000/0602445790001/0602445790001.xml", xml)   # atomic
    target.put_file("20260101120000000/0602445790001/resources/01.flac", local_path)
    target.exists(rel) / target.read_bytes(rel) / target.remove(rel)
    target.list("20260101120000000")   # {relative path: RemoteObject(size, md5 or None)}
    target.describe()                  # the URL for messages and logs, password masked
    target.close()

How each kind makes a file appear whole or not at all:

* ``file://`` or a plain path, ``sftp://``: the bytes go to a temp file under
  ``<root>/.etl-partial/<first path segment>/`` (outside every batch folder,
  so a store polling the batch never sees a half file), then one rename puts
  it in place (``os.replace`` locally, the ``posix-rename@openssh.com``
  extension over SFTP: an atomic replace). ``clean_temp(batch)`` removes what
  a killed upload left there.
* ``s3://`` (and ``gs://`` and other object stores): one PUT of the whole
  object (``pipe_file``), which the store commits only when every byte
  arrived; S3 also gets ``Content-MD5`` so a corrupted body is refused.
  Files above ``single_put_max`` (64 MiB by default) go up as a multipart
  upload, which the store likewise commits only at the end (see
  docs/delivery.md for the lifecycle rule that removes parts of uploads a
  kill abandoned). A streamed ``open(..., "wb")`` is never used: it commits a
  partial object when an error closes it.

Faults: each operation is retried ``retries`` times with exponential backoff
and jitter (``backoff`` seconds first) when a retry can help (connection
lost, timeout, S3 ``503 SlowDown``); the libraries' own retry loops are
turned off for S3 so that this one policy applies. What is left is raised as
``DeliveryTransientError`` (resume later) or ``DeliveryTerminalError`` (fix
something first), naming the target, the path and the fix.

Credentials never come from options: SFTP uses a key file, the SSH agent or
a password read from the environment variable named by ``password_env``;
S3 uses the usual AWS environment variables, config files or instance role.
Options that look like secrets (``password``, ``secret``, ``token``, ...)
are refused, so a secret cannot reach ``etl.toml`` through a recipient's
target options.
"""
from __future__ import annotations

import base64
import errno
import hashlib
import os
import random
import re
import socket
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from ..errors import ConfigError, DeliveryError, DeliveryTerminalError, DeliveryTransientError
from .paths import join, safe_relpath

TEMP_DIR = ".etl-partial"
DEFAULT_RETRIES = 5
DEFAULT_BACKOFF = 0.5
MAX_BACKOFF = 30.0
DEFAULT_SINGLE_PUT_MAX = 64 * 2**20
_SECRET_OPTIONS = re.compile(r"(^|_)(password|passwd|passphrase|secret|token|key|credentials?)$", re.I)
_ALLOWED_OPTIONS = {"key_file", "password_env"}
_MD5_ETAG = re.compile(r'^"?([0-9a-f]{32})"?$')

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RemoteObject:
    """One object on a target: its size, and its MD5 when the store reports one (S3 single-part ETag)."""

    size: int
    md5: str | None = None


class Target(ABC):
    """A place batches go to. Paths are relative to the URL's folder or prefix; see the module docstring."""

    scheme: str = ""
    #: True when a file is written under a temp name and renamed (local, SFTP); False for object stores.
    renames: bool = False

    def __init__(self, display: str, *, retries: int = DEFAULT_RETRIES, backoff: float = DEFAULT_BACKOFF) -> None:
        if retries < 1:
            raise ConfigError(f"target {display}: retries must be at least 1, got {retries}")
        if backoff < 0:
            raise ConfigError(f"target {display}: backoff must not be negative, got {backoff}")
        self._display = display
        self.retries = retries
        self.backoff = backoff
        #: How many attempts were retried after a transient fault, for reports and benchmarks.
        self.retried = 0

    # ------------------------------------------------------------------ public interface

    def describe(self) -> str:
        """The target's URL for messages and logs; never holds a password."""
        return self._display

    def put_bytes(self, relpath: str, data: bytes) -> None:
        """Store ``data`` at ``relpath``, whole or not at all (replacing what was there)."""
        rel = safe_relpath(relpath)
        self._retrying(f"uploading {rel}", lambda: self._put_bytes(rel, data))

    def put_file(self, relpath: str, local_path: str | os.PathLike[str]) -> None:
        """Store the local file at ``relpath``, whole or not at all; large files are never read into memory whole."""
        rel = safe_relpath(relpath)
        self._retrying(f"uploading {rel}", lambda: self._put_file(rel, Path(local_path)))

    def exists(self, relpath: str) -> bool:
        """Whether a file is at ``relpath``."""
        rel = safe_relpath(relpath)
        return self._retrying(f"checking {rel}", lambda: self._exists(rel))

    def read_bytes(self, relpath: str) -> bytes:
        """The bytes at ``relpath`` (``DeliveryTerminalError`` when there is none)."""
        rel = safe_relpath(relpath)
        return self._retrying(f"reading {rel}", lambda: self._read_bytes(rel))

    def md5(self, relpath: str) -> str:
        """The MD5 (hex) of the file at ``relpath``, read in blocks (bounded memory)."""
        rel = safe_relpath(relpath)
        return self._retrying(f"reading {rel}", lambda: self._md5(rel))

    def remove(self, relpath: str) -> None:
        """Delete the file at ``relpath``; nothing happens when it is not there."""
        rel = safe_relpath(relpath)
        self._retrying(f"removing {rel}", lambda: self._remove(rel))

    def list(self, under: str = "") -> dict[str, RemoteObject]:
        """Every file below ``under`` (recursively), by path relative to the target; temp files excluded."""
        rel = safe_relpath(under) if under else ""
        found = self._retrying(f"listing {rel or '/'}", lambda: self._list(rel))
        return {k: v for k, v in found.items() if not k.startswith(TEMP_DIR + "/")}

    def clean_temp(self, under: str = "") -> int:
        """Remove temp files a killed upload left (for batch ``under``, or all); returns how many."""
        if not self.renames:
            return 0
        rel = join(TEMP_DIR, safe_relpath(under)) if under else TEMP_DIR
        return self._retrying(f"cleaning {rel}", lambda: self._clean(rel))

    def close(self) -> None:
        """Release connections; the target cannot be used afterwards."""
        return None

    def __enter__(self) -> Target:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"

    # ------------------------------------------------------------------ what each kind implements

    @abstractmethod
    def _put_bytes(self, rel: str, data: bytes) -> None: ...

    @abstractmethod
    def _put_file(self, rel: str, local: Path) -> None: ...

    @abstractmethod
    def _exists(self, rel: str) -> bool: ...

    @abstractmethod
    def _read_bytes(self, rel: str) -> bytes: ...

    @abstractmethod
    def _remove(self, rel: str) -> None: ...

    @abstractmethod
    def _open_read(self, rel: str) -> Any: ...

    def _md5(self, rel: str) -> str:
        digest = hashlib.md5()
        with self._open_read(rel) as f:
            while block := f.read(1 << 20):
                digest.update(block)
        return digest.hexdigest()

    @abstractmethod
    def _list(self, rel: str) -> dict[str, RemoteObject]: ...

    def _clean(self, rel: str) -> int:
        return 0

    def _reconnect(self) -> None:
        """Called before retrying after a transient fault (SFTP opens a new session)."""
        return None

    @staticmethod
    def _temp_name(rel: str) -> str:
        group = rel.split("/", 1)[0] if "/" in rel else "_"
        return f"{TEMP_DIR}/{group}/{os.getpid()}-{uuid.uuid4().hex}.part"

    # ------------------------------------------------------------------ faults

    def _retrying(self, what: str, fn: Callable[[], T]) -> T:
        attempt = 0
        while True:
            attempt += 1
            try:
                return fn()
            except Exception as exc:  # noqa: BLE001 - every library error is classified here, once
                error = self._classify(exc, what)
                if not error.retryable or attempt >= self.retries:
                    if error.retryable:
                        error = DeliveryTransientError(f"{error} (gave up after {attempt} attempts)")
                    raise error from exc
            self.retried += 1
            delay = min(MAX_BACKOFF, self.backoff * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5)
            time.sleep(delay)
            try:
                self._reconnect()
            except Exception:  # noqa: BLE001 - the next attempt reports the fault
                pass

    def _classify(self, exc: BaseException, what: str) -> DeliveryError:
        return classify_error(exc, f"{what} on {self.describe()}")


def classify_error(exc: BaseException, where: str) -> DeliveryError:
    """A library exception as our error: transient or terminal, naming ``where`` (action and target) and the fix."""
    if isinstance(exc, DeliveryError):
        return exc
    text = f"{type(exc).__name__}: {exc}".strip()
    name = type(exc).__name__
    if name in ("AuthenticationException", "BadAuthenticationType", "PasswordRequiredException"):
        return DeliveryTerminalError(
            f"{where}: the server refused the login ({text}); fix: authorise this user's SSH key on the server, "
            "load it into the SSH agent, or set the environment variable named by password_env"
        )
    if name == "BadHostKeyException" or "known_hosts" in text or "not found in known" in text:
        return DeliveryTerminalError(
            f"{where}: the server's host key is not trusted ({text}); fix: add it to the known_hosts file "
            "(ssh-keyscan -p PORT HOST >> ~/.ssh/known_hosts, after checking its fingerprint with the store)"
        )
    if isinstance(exc, PermissionError) or getattr(exc, "errno", None) in (errno.EACCES, errno.EPERM):
        return DeliveryTerminalError(
            f"{where}: permission denied ({text}); fix: grant this user write access to that folder or bucket, "
            "or check the AWS credentials in the environment"
        )
    if isinstance(exc, FileNotFoundError):
        return DeliveryTerminalError(
            f"{where}: not found ({text}); fix: create the folder or bucket, or correct the target URL"
        )
    code = getattr(exc, "errno", None)
    if code in (errno.ENOSPC, errno.EDQUOT):
        return DeliveryTerminalError(f"{where}: the server's disk is full ({text}); fix: ask the store to free space")
    if code == errno.EBUSY or any(s in text for s in ("SlowDown", "503", "reduce your request rate", "ServiceUnavailable")):
        return DeliveryTransientError(f"{where}: the store asks to slow down ({text}); resume the upload later")
    transient_names = {
        "SSHException", "NoValidConnectionsError", "EndpointConnectionError", "ConnectTimeoutError",
        "ReadTimeoutError", "ClientConnectorError", "ServerDisconnectedError", "ClientOSError",
        "ClientPayloadError", "IncompleteRead", "ConnectionClosedError", "ProtocolError",
    }
    if isinstance(exc, ConnectionError | TimeoutError | socket.timeout | EOFError) or name in transient_names:
        return DeliveryTransientError(
            f"{where}: the connection failed ({text}); fix: check the network and the server, then resume"
        )
    if any(s in text for s in ("InternalError", "500 ", "502", "504", "RequestTimeout")):
        return DeliveryTransientError(f"{where}: the store failed ({text}); resume the upload later")
    return DeliveryTerminalError(f"{where}: {text}; fix: check the target URL and the server")


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
        import io

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


# --------------------------------------------------------------------------- open_target


def check_options(url: str, options: dict[str, Any]) -> None:
    """Refuse options that would carry a secret (``ConfigError``): secrets come from the environment."""
    secret = sorted(k for k in options if k not in _ALLOWED_OPTIONS and _SECRET_OPTIONS.search(k))
    if secret:
        raise ConfigError(
            f"target {mask_url(url)}: option(s) {', '.join(secret)} would hold a secret; fix: remove them and use "
            "password_env (SFTP) or the AWS environment / config files (S3), never etl.toml"
        )


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = (parts.username or "") + ":***"
    return parts._replace(netloc=f"{user}@{netloc[1]}").geturl()


def open_target(url: str, **options: Any) -> Target:
    """The target a URL names: ``file://`` or a plain path, ``sftp://``, ``s3://``, or any fsspec protocol.

    Common options: ``retries`` (attempts per operation, default 5), ``backoff``
    (first wait in seconds, default 0.5). ``file``: ``durable`` (fsync, default
    true). ``sftp``: ``key_file``, ``password_env`` (name of the environment
    variable holding the password), ``known_hosts`` (default
    ``~/.ssh/known_hosts``), ``host_key_policy`` (``reject``, the default, or
    ``auto_add``), ``timeout``, ``allow_agent``. ``s3``: ``endpoint_url``,
    ``region``, ``profile``, ``single_put_max``. Other protocols: options go to
    the fsspec filesystem. Raises ``ConfigError`` for a bad URL or option.
    """
    check_options(url, options)
    retry = {k: options.pop(k) for k in ("retries", "backoff") if k in options}
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt"):
        if scheme == "file" and parts.netloc not in ("", "localhost"):
            raise ConfigError(f"target {url}: write file:///absolute/folder (three slashes) or a plain folder path")
        path = unquote(parts.path) if scheme == "file" else url
        durable = bool(options.pop("durable", True))
        _no_more(url, options)
        return LocalTarget(Path(path).expanduser(), durable=durable, **retry)
    if scheme in ("sftp", "ssh"):
        return _open_sftp(url, parts, options, retry)
    if scheme in ("s3", "s3a"):
        return _open_s3(url, parts, options, retry)
    return _open_fsspec(url, parts, options, retry)


def _no_more(url: str, options: dict[str, Any]) -> None:
    if options:
        raise ConfigError(f"target {mask_url(url)}: unknown option(s) {', '.join(sorted(options))}")


def _open_sftp(url: str, parts: Any, options: dict[str, Any], retry: dict[str, Any]) -> Target:
    if parts.password is not None:
        raise ConfigError(
            f"target {mask_url(url)}: a password in the URL is refused; fix: remove it and set password_env "
            "to the name of an environment variable that holds it (or use a key)"
        )
    if not parts.hostname:
        raise ConfigError(f"target {url}: no host; fix: write sftp://user@host[:port]/folder")
    try:
        port = parts.port or 22
    except ValueError:
        raise ConfigError(f"target {url}: the port is not a number") from None
    user = unquote(parts.username) if parts.username else None
    root = unquote(parts.path).rstrip("/") or "."
    key_file = options.pop("key_file", None)
    password_env = options.pop("password_env", None)
    known_hosts = options.pop("known_hosts", None)
    policy = options.pop("host_key_policy", "reject")
    timeout = float(options.pop("timeout", 30))
    allow_agent = bool(options.pop("allow_agent", True))
    _no_more(url, options)
    if policy not in ("reject", "auto_add"):
        raise ConfigError(f"target {url}: host_key_policy must be 'reject' or 'auto_add', got {policy!r}")
    password = None
    if password_env:
        password = os.environ.get(str(password_env))
        if password is None:
            raise ConfigError(
                f"target {url}: password_env names ${password_env}, which is not set; fix: export it, "
                "or remove password_env to log in with a key"
            )
    display = f"sftp://{user + '@' if user else ''}{parts.hostname}:{port}{root if root.startswith('/') else '/' + root}"
    from ._sftp import connect

    try:
        fs = connect(
            parts.hostname, port=port, username=user, key_filename=key_file and str(Path(key_file).expanduser()),
            password=password, known_hosts=known_hosts and str(Path(known_hosts).expanduser()),
            host_key_policy=policy, timeout=timeout, allow_agent=allow_agent,
        )
    except Exception as exc:  # noqa: BLE001 - classified like any operation's fault
        raise classify_error(exc, f"connecting to {display}") from exc
    return SFTPTarget(fs, root, display, **retry)


def _open_s3(url: str, parts: Any, options: dict[str, Any], retry: dict[str, Any]) -> Target:
    bucket = parts.netloc
    if not bucket or "@" in bucket:
        raise ConfigError(f"target {mask_url(url)}: write s3://bucket/prefix (credentials come from the AWS environment)")
    prefix = unquote(parts.path).strip("/")
    endpoint = options.pop("endpoint_url", None)
    region = options.pop("region", None)
    profile = options.pop("profile", None)
    single_put_max = int(options.pop("single_put_max", DEFAULT_SINGLE_PUT_MAX))
    _no_more(url, options)
    import s3fs

    client_kwargs: dict[str, Any] = {}
    if endpoint:
        client_kwargs["endpoint_url"] = endpoint
    if region:
        client_kwargs["region_name"] = region
    session = {"profile": profile} if profile else {}
    fs = s3fs.S3FileSystem(
        client_kwargs=client_kwargs,
        config_kwargs={"retries": {"total_max_attempts": 1, "mode": "standard"}},
        use_listings_cache=False,
        skip_instance_cache=True,
        **session,
    )
    fs.retries = 1  # one retry policy, ours: neither s3fs nor botocore retries a request itself
    display = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
    if endpoint:
        display += f" (endpoint {endpoint})"
    return ObjectTarget(fs, join(bucket, prefix), display, content_md5=True, single_put_max=single_put_max, **retry)


def _open_fsspec(url: str, parts: Any, options: dict[str, Any], retry: dict[str, Any]) -> Target:
    import fsspec

    single_put_max = int(options.pop("single_put_max", DEFAULT_SINGLE_PUT_MAX))
    try:
        fs, root = fsspec.core.url_to_fs(url, skip_instance_cache=True, **options)
    except (ImportError, ValueError) as exc:
        raise ConfigError(
            f"target {mask_url(url)}: {exc}; fix: install the fsspec package for {parts.scheme}:// "
            "(gcsfs for gs://, adlfs for az://), or use file://, sftp:// or s3://"
        ) from None
    return ObjectTarget(fs, root, mask_url(url), single_put_max=single_put_max, **retry)
