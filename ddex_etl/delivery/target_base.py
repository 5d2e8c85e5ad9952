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
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
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
        from .probe import credentials_error

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
    if code == errno.EBUSY or any(s in text for s in ("SlowDown", "503", "reduce your request rate", "ServiceUnavailable")):
        return DeliveryTransientError(f"{where}: the store asks to slow down ({text}); resume the upload later")
    transient_names = {
        "SSHException", "NoValidConnectionsError", "EndpointConnectionError", "ConnectTimeoutError",
        "ReadTimeoutError", "ClientConnectorError", "ServerDisconnectedError", "ClientOSError",
        "ClientPayloadError", "IncompleteRead", "ConnectionClosedError", "ProtocolError",
    }
    # paramiko's words for an SSH session that went away under an open SFTP channel (a plain OSError, no errno).
    dropped = any(s in text for s in ("Socket is closed", "Server connection dropped", "Connection reset"))
    if isinstance(exc, ConnectionError | TimeoutError | socket.timeout | EOFError) or name in transient_names or dropped:
        return DeliveryTransientError(
            f"{where}: the connection failed ({text}); fix: check the network and the server, then resume"
        )
    if any(s in text for s in ("InternalError", "500 ", "502", "504", "RequestTimeout")):
        return DeliveryTransientError(f"{where}: the store failed ({text}); resume the upload later")
    return DeliveryTerminalError(f"{where}: {text}; fix: check the target URL and the server")
