"""The ``Target`` interface, and the one place library faults become transient or terminal errors.

See ``ddex_etl.delivery.targets`` for the URLs and what each kind of target
does; this module holds what they share: path checks on every call, the
retry loop with exponential backoff and jitter, and ``classify_error``.
"""
from __future__ import annotations

import errno
import hashlib
import logging
import os
import random
import socket
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ..errors import ConfigError, DeliveryError, DeliveryTerminalError, DeliveryTransientError
from .paths import join, safe_relpath

log = logging.getLogger("ddex_etl.delivery")

TEMP_DIR = ".etl-partial"
DEFAULT_RETRIES = 5
DEFAULT_BACKOFF = 0.5
MAX_BACKOFF = 30.0
#: Files in flight at once per target (rclone's is 4, the aws CLI's 10).
DEFAULT_TRANSFERS = 8
MAX_TRANSFERS = 64
#: Bytes read from a source per block while streaming it to a target.
STREAM_BLOCK = 1 << 20

T = TypeVar("T")

_EREMOTEIO = getattr(errno, "EREMOTEIO", 121)
# What paramiko raises (a bare OSError, no errno) when the connection dropped under a transfer.
_DROPPED_TEXTS = frozenset({"Socket is closed"})


@dataclass(frozen=True, slots=True)
class RemoteObject:
    """One object on a target: its size, its MD5 when the store reports one (S3 single-part ETag), and its
    modification time as the store reports it (seconds; SFTP: whole seconds), when it does."""

    size: int
    md5: str | None = None
    mtime: float | None = None


@dataclass(frozen=True, slots=True)
class Folder:
    """One folder on a target, listed with a single request: its files (by name) and sub-folder names."""

    exists: bool
    files: dict[str, RemoteObject]
    folders: tuple[str, ...] = ()


class Target(ABC):
    """A place batches go to. Paths are relative to the URL's folder or prefix; see the module docstring."""

    scheme: str = ""
    #: True when a file is written under a temp name and renamed (local, SFTP); False for object stores.
    renames: bool = False

    def __init__(self, display: str, *, retries: int = DEFAULT_RETRIES, backoff: float = DEFAULT_BACKOFF,
                 transfers: int = DEFAULT_TRANSFERS, max_bandwidth: float | None = None) -> None:
        if retries < 1:
            raise ConfigError(f"target {display}: retries must be at least 1, got {retries}")
        if backoff < 0:
            raise ConfigError(f"target {display}: backoff must not be negative, got {backoff}")
        if not 1 <= transfers <= MAX_TRANSFERS:
            raise ConfigError(f"target {display}: transfers must be 1 to {MAX_TRANSFERS} (files in flight at once), "
                              f"got {transfers}")
        self._display = display
        self.retries = retries
        self.backoff = backoff
        #: How many files an upload keeps in flight at once; every method may be called from that many threads.
        self.transfers = transfers
        self.throttle = Throttle(max_bandwidth) if max_bandwidth else None
        #: How many attempts were retried after a transient fault, for reports and benchmarks.
        self.retried = 0
        self._retried_lock = threading.Lock()
        #: Called before each retry; what it raises ends the operation there (an upload told to stop
        #: does not sit out every retry against a server that stopped answering).
        self.before_retry: Callable[[], None] | None = None

    # ------------------------------------------------------------------ public interface

    def describe(self) -> str:
        """The target's URL for messages and logs; never holds a password."""
        return self._display

    def put_bytes(self, relpath: str, data: bytes) -> RemoteObject | None:
        """Store ``data`` at ``relpath``, whole or not at all (replacing what was there).

        Returns what the store said it now holds when it said so at no extra cost (SFTP, local: size and
        modification time), else None.
        """
        rel = safe_relpath(relpath)
        if self.throttle is not None:
            self.throttle.take(len(data))
        return self._retrying(f"uploading {rel}", lambda: self._put_bytes(rel, data))

    def put_file(self, relpath: str, local_path: str | os.PathLike[str]) -> RemoteObject | None:
        """Store the local file at ``relpath``, whole or not at all; large files are never read into memory whole.

        Returns what the store said it now holds, as ``put_bytes`` does.
        """
        rel = safe_relpath(relpath)
        return self._retrying(f"uploading {rel}", lambda: self._put_file(rel, Path(local_path)))

    def put_stream(self, relpath: str, open_source: Callable[[], Any], *, size: int, md5: str | None,
                   what: str = "") -> RemoteObject | None:
        """Store what ``open_source()`` reads at ``relpath``, committed only when its MD5 and size are the expected ones.

        The source is read in blocks and hashed on the way (bounded memory);
        each attempt opens it again. When the bytes read are not ``size``
        bytes with MD5 ``md5`` (when given), nothing is committed and
        ``SourceMismatch`` is raised (``what`` names the source in it). A fault
        reading the source is a ``SourceError``, never retried. Returns what
        the store said it now holds, as ``put_bytes`` does.
        """
        rel = safe_relpath(relpath)
        shown = what or rel

        def attempt() -> RemoteObject | None:
            try:
                raw = open_source()
            except DeliveryError:
                raise
            except Exception as exc:  # noqa: BLE001 - the source's fault, not the target's
                raise SourceError(f"cannot read {shown}: {exc}") from exc
            with raw:
                return self._put_stream(rel, HashingReader(raw, shown, self.throttle), size, md5)

        return self._retrying(f"uploading {rel}", attempt)

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

    def list_folder(self, folder: str = "") -> Folder:
        """The files and sub-folders directly in ``folder`` (not below): one listing request, whatever lies deeper.

        ``Folder(exists=False, ...)`` when there is no such folder. Only regular
        files count as files; links and special files are left out.
        """
        rel = safe_relpath(folder) if folder else ""
        found = self._retrying(f"listing {rel or '/'}", lambda: self._list_folder(rel))
        if not rel and TEMP_DIR in found.folders:
            found = Folder(found.exists, found.files, tuple(f for f in found.folders if f != TEMP_DIR))
        return found

    def read_head(self, relpath: str, limit: int) -> bytes:
        """At most ``limit`` bytes from the start of the file at ``relpath``: memory stays bounded, whatever its size."""
        rel = safe_relpath(relpath)

        def read() -> bytes:
            with self._open_read(rel) as f:  # one read call: each kind reads until ``limit`` or the end
                data: bytes = f.read(limit)
                return data

        return self._retrying(f"reading {rel}", read)

    def prepare_folders(self, relpaths: Iterable[str]) -> None:
        """Make sure the folders that will hold these files exist (many at once), before they are sent.

        Only a hint: a put makes what is missing anyway. Targets where a folder
        costs a round trip (SFTP) make them side by side here instead of one
        by one in front of each file.
        """
        rels = [safe_relpath(r) for r in relpaths if "/" in r]
        folders = {r.rsplit("/", 1)[0] for r in rels}
        if folders and self.renames:
            folders |= {self._temp_name(r).rsplit("/", 1)[0] for r in rels}  # where their temp files go
            self._retrying("making folders", lambda: self._prepare(sorted(folders)))

    def _prepare(self, folders: list[str]) -> None:
        return None

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
    def _put_bytes(self, rel: str, data: bytes) -> RemoteObject | None: ...

    @abstractmethod
    def _put_file(self, rel: str, local: Path) -> RemoteObject | None: ...

    @abstractmethod
    def _put_stream(self, rel: str, src: HashingReader, size: int, md5: str | None) -> RemoteObject | None:
        """Send ``src`` to ``rel``; call ``src.verify(size, md5)`` after the last block and before the commit."""

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

    @abstractmethod
    def _list_folder(self, rel: str) -> Folder: ...

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
            if self.before_retry is not None:
                self.before_retry()
            with self._retried_lock:
                self.retried += 1
            delay = min(MAX_BACKOFF, self.backoff * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5)
            # One line per fault, naming the target (its host): a flaky store shows here, a slow one does not.
            # (Target URLs hold no password: config and open_target refuse one.)
            reconnects = type(self)._reconnect is not Target._reconnect
            log.warning("%s; %s in %.1f s (attempt %d of %d)", error,
                        "reconnecting and retrying" if reconnects else "retrying", delay, attempt + 1, self.retries,
                        extra={"fields": {"event": "reconnect" if reconnects else "retry", "target": self.describe()}})
            time.sleep(delay)
            try:
                self._reconnect()
            except Exception:  # noqa: BLE001 - the next attempt reports the fault
                pass

    def _classify(self, exc: BaseException, what: str) -> DeliveryError:
        return classify_error(exc, f"{what} on {self.describe()}")


class SourceError(DeliveryTerminalError):
    """A file being sent could not be read (the media root's or the local batch's fault, not the target's)."""


class SourceMismatch(DeliveryTerminalError):
    """The bytes read from a source are not the ones expected (MD5 or size); nothing was committed."""


class Throttle:
    """A token bucket shared by every transfer of a target: at most ``rate`` bytes per second on average."""

    def __init__(self, rate: float) -> None:
        if rate <= 0:
            raise ConfigError(f"max_bandwidth must be positive (bytes per second), got {rate}")
        self.rate = float(rate)
        self._lock = threading.Lock()
        self._next = time.monotonic()  # when the bytes taken so far will have gone at ``rate``

    def take(self, nbytes: int) -> None:
        """Wait until ``nbytes`` more may go."""
        with self._lock:
            now = time.monotonic()
            start = max(self._next, now - 0.25)  # a short burst after idling, not an unbounded one
            self._next = start + nbytes / self.rate
            wait = self._next - now
        if wait > 0:
            time.sleep(wait)


class HashingReader:
    """A source read in blocks, hashed and counted on the way (and throttled, when the target has a limit)."""

    def __init__(self, raw: Any, what: str, throttle: Throttle | None = None) -> None:
        self._raw, self.what, self._throttle = raw, what, throttle
        self._digest = hashlib.md5()
        self.size = 0

    def read(self, n: int = STREAM_BLOCK) -> bytes:
        try:
            block: bytes = self._raw.read(n)
        except DeliveryError:
            raise
        except Exception as exc:  # noqa: BLE001 - a read fault is the source's, never retried against the target
            raise SourceError(f"cannot read {self.what}: {exc}") from exc
        if block:
            self._digest.update(block)
            self.size += len(block)
            if self._throttle is not None:
                self._throttle.take(len(block))
        return block

    def read_exact(self, n: int) -> bytes:
        """Up to ``n`` bytes: fewer only at the end of the source."""
        parts, got = [], 0
        while got < n:
            block = self.read(min(STREAM_BLOCK, n - got))
            if not block:
                break
            parts.append(block)
            got += len(block)
        return b"".join(parts)

    @property
    def md5(self) -> str:
        return self._digest.hexdigest()

    def verify(self, size: int, md5: str | None) -> None:
        """Raise ``SourceMismatch`` unless what was read is ``size`` bytes with MD5 ``md5`` (when given)."""
        if self.size != size or (md5 is not None and self.md5 != md5.lower()):
            raise SourceMismatch(
                f"{self.what} read as {self.size:,} bytes with MD5 {self.md5}, expected {size:,} bytes with MD5 "
                f"{md5 or '(any)'}: it changed after the run checked it, so it was not committed; fix: put the "
                "right file back (or run again to deliver the new one), then resume"
            )


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
        from .host_keys import host_key_error

        return host_key_error(exc, where, None) or DeliveryTerminalError(
            f"{where}: the server's host key is not trusted ({text}); fix: compare its fingerprint with the one "
            "the store gives you before adding it to the known_hosts file (target_options.known_hosts)"
        )
    if name in ("NoCredentialsError", "PartialCredentialsError"):
        from .target_probe import credentials_error

        return credentials_error(exc, where)
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
    if "size mismatch in put" in text:
        # paramiko's check after a put: the server kept fewer bytes than were sent, and said nothing
        return DeliveryTerminalError(
            f"{where}: the server kept fewer bytes than were sent ({text}): the store's disk may be full (or its "
            "quota reached), or the file was truncated on the server; nothing was renamed into place; fix: ask "
            "the store to check its free space, then resume (`etl resume`) to send only what is missing"
        )
    if code == _EREMOTEIO:
        # s3fs's translation of a store's 500 InternalError (and of other 5xx without a code of their own)
        return DeliveryTransientError(f"{where}: the store failed ({text}); resume the upload later")
    if code == errno.EBUSY or any(s in text for s in ("SlowDown", "503", "reduce your request rate", "ServiceUnavailable")):
        return DeliveryTransientError(f"{where}: the store asks to slow down ({text}); resume the upload later")
    transient_names = {
        "SSHException", "NoValidConnectionsError", "EndpointConnectionError", "ConnectTimeoutError",
        "ReadTimeoutError", "ClientConnectorError", "ServerDisconnectedError", "ClientOSError",
        "ClientPayloadError", "IncompleteRead", "ConnectionClosedError", "ProtocolError",
    }
    # paramiko's words for an SSH session that went away under an open SFTP channel (a plain OSError, no errno).
    dropped = (isinstance(exc, OSError) and code is None and str(exc) in _DROPPED_TEXTS) or any(
        s in text for s in ("Socket is closed", "Server connection dropped", "Connection reset"))
    if isinstance(exc, ConnectionError | TimeoutError | socket.timeout | EOFError) or name in transient_names or dropped:
        return DeliveryTransientError(
            f"{where}: the connection failed ({text}); fix: check the network and the server, then resume"
        )
    if any(s in text for s in ("InternalError", "500 ", "502", "504", "RequestTimeout")):
        return DeliveryTransientError(f"{where}: the store failed ({text}); resume the upload later")
    return DeliveryTerminalError(f"{where}: {text}; fix: check the target URL and the server")
