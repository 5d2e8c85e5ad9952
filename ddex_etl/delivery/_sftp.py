"""The SFTP connection: fsspec's paramiko filesystem, with the server's host key checked.

fsspec's ``SFTPFileSystem`` never loads a known_hosts file and trusts any
host key by default; a delivery tool must not (a man in the middle would
receive the label's unreleased audio). This subclass loads the known_hosts
file (``~/.ssh/known_hosts`` unless told otherwise) and refuses unknown keys
unless ``host_key_policy="auto_add"``. Imported only when an SFTP target is
opened, so paramiko is not loaded otherwise.
"""
from __future__ import annotations

import os
from typing import Any

import paramiko
from fsspec.implementations.sftp import SFTPFileSystem


class CheckedSFTPFileSystem(SFTPFileSystem):
    """``SFTPFileSystem`` that verifies the server's host key against a known_hosts file."""

    def __init__(self, host: str, *, known_hosts: str | None = None, **ssh_kwargs: Any) -> None:
        self._known_hosts = known_hosts
        super().__init__(host, **ssh_kwargs)

    def _connect(self) -> None:
        client = paramiko.SSHClient()
        path = self._known_hosts or os.path.expanduser("~/.ssh/known_hosts")
        if self._known_hosts or os.path.isfile(path):
            client.load_host_keys(path)  # a configured file that is missing is an error
        client.set_missing_host_key_policy(self.host_key_policy)
        client.connect(self.host, **self.ssh_kwargs)
        self.client = client
        self.ftp = client.open_sftp()
        timeout = self.ssh_kwargs.get("timeout")
        if timeout:
            # paramiko's own timeouts cover only the login: a server that stops answering without closing
            # would hang every later request for ever. The channel's timeout bounds each read and each wait
            # for window space (socket.timeout, classified transient: the retry reconnects).
            self.ftp.get_channel().settimeout(timeout)


def connect(host: str, *, port: int, username: str | None, key_filename: str | None, password: str | None,
            known_hosts: str | None, host_key_policy: str, timeout: float, allow_agent: bool) -> CheckedSFTPFileSystem:
    """An open SFTP filesystem (a new connection, never a cached one)."""
    kwargs: dict[str, Any] = {
        "port": port,
        "timeout": timeout,
        "banner_timeout": timeout,
        "auth_timeout": timeout,
        "allow_agent": allow_agent,
        "look_for_keys": key_filename is None and password is None,
    }
    if username:
        kwargs["username"] = username
    if key_filename:
        kwargs["key_filename"] = key_filename
    if password is not None:
        kwargs["password"] = password
    return CheckedSFTPFileSystem(
        host, known_hosts=known_hosts, host_key_policy=host_key_policy, skip_instance_cache=True, **kwargs
    )
