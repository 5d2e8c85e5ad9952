"""What to say when an SFTP server's host key is not the trusted one: unknown and changed are different advice.

An *unknown* key (no entry for the host in the known_hosts file) is the
first connection to a store: fetch the key, compare its fingerprint with
the one the store gives you, and add it to the known_hosts file the target
uses (``target_options.known_hosts``, named in the message). A *changed*
key (an entry exists and the server shows another key) is what a
man-in-the-middle looks like: the advice never suggests appending the new
key, only asking the store by another channel and replacing the entry once
they confirm it.
"""
from __future__ import annotations

import re
from typing import Any

from ..errors import DeliveryTerminalError

DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
_UNKNOWN = re.compile(r".*Server '(?P<entry>[^']+)' not found in known_hosts.*", re.S)
_ENTRY = re.compile(r"\[(?P<host>[^\]]+)\]:(?P<port>[0-9]+)")


def _fingerprint(key: Any) -> str:
    """A key's SHA256 fingerprint as `ssh-keygen -l` prints it (paramiko keys)."""
    fp = getattr(key, "fingerprint", None)
    if isinstance(fp, str):
        return fp
    try:
        return "MD5:" + key.get_fingerprint().hex()
    except Exception:  # noqa: BLE001 - only for the message
        return "(unknown)"


def _host_port(entry: str) -> tuple[str, int]:
    m = _ENTRY.fullmatch(entry)
    return (m["host"], int(m["port"])) if m else (entry, 22)


def host_key_error(exc: BaseException, where: str, known_hosts: str | None, *, host: str | None = None,
                   port: int | None = None) -> DeliveryTerminalError | None:
    """The error for a host key the client refused (``exc`` from paramiko), or None when ``exc`` is something else.

    ``known_hosts`` is the file the target checks against (None: the default ``~/.ssh/known_hosts``);
    ``host`` and ``port`` the server's, as the known_hosts entry names them.
    """
    path = known_hosts or DEFAULT_KNOWN_HOSTS
    name = type(exc).__name__
    if name == "BadHostKeyException":
        host = host or str(getattr(exc, "hostname", "") or "the server")
        port = port or 22
        entry = host if port == 22 else f"[{host}]:{port}"
        got, expected = _fingerprint(getattr(exc, "key", None)), _fingerprint(getattr(exc, "expected_key", None))
        return DeliveryTerminalError(
            f"{where}: the server's host key has CHANGED: {entry} presented {got}, but {path} trusts {expected} "
            "for it. This may be an attack (a man-in-the-middle posing as the store); nothing was sent. "
            "fix: do not trust the new key on your own: ask the store, by a channel you trust (phone, their "
            "support portal; not this connection), whether they changed their host key and what its fingerprint "
            f"is; only if they confirm {got}, remove the old entry (ssh-keygen -R '{entry}' -f {path}) and add the "
            f"key they confirm (ssh-keyscan -p {port} {host}, checking `ssh-keygen -lf` shows {got})"
        )
    m = _UNKNOWN.fullmatch(str(exc))
    if m is not None:
        entry = m["entry"]
        host, port = _host_port(entry)
        return DeliveryTerminalError(
            f"{where}: the server's host key is unknown: {path} has no entry for {entry}; fix: ask the store for "
            f"its host key fingerprint, fetch the key (ssh-keyscan -p {port} {host} > store.key; ssh-keygen -lf "
            f"store.key), and only if the fingerprints match add it to {path} (cat store.key >> {path}); "
            "target_options.known_hosts names the file this target checks"
        )
    return None
