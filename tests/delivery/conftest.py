"""Real servers on 127.0.0.1 for the delivery tests, started and stopped by the tests.

* ``sftp_server``: an in-process asyncssh SFTP server (its own event loop in a
  thread) serving a temporary folder as its root, with a generated host key
  and a generated client key; ``known_hosts`` holds the host key, so the
  client checks it like it would a store's.
* ``openssh_server``: a real OpenSSH ``sshd`` on a free loopback port
  (``tests/sshd_server.py``), logging in the current user with a generated
  key; it answers like ``SFTPServer`` (``url``, ``options``, ``folder``,
  ``root``), so a test can run against both. Skipped when sshd is not
  installed (``.ci/run`` installs Debian's openssh-server).
* ``s3_server``: moto's ``ThreadedMotoServer`` on a free loopback port.

All are session-scoped (starting them is the slow part); each test gets its
own folder or bucket. ``tests/delay_proxy.py`` puts a WAN's round trip in
front of any of them.
"""
from __future__ import annotations

import asyncio
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sshd_server import OpenSSHServer, find_sshd, start_openssh_server

asyncssh = pytest.importorskip("asyncssh", reason="the SFTP tests need asyncssh (pip install -e '.[test]')")

SFTP_USER = "ddex"
SFTP_PASSWORD = "correct horse battery staple"


@dataclass
class SFTPServer:
    """A running loopback SFTP server; ``root`` is what the client sees as ``/``."""

    host: str
    port: int
    root: Path
    key_file: Path
    known_hosts: Path
    loop: asyncio.AbstractEventLoop
    server: Any
    thread: threading.Thread
    logins: list[str] = field(default_factory=list)
    connections: list[Any] = field(default_factory=list)
    #: ``hook[0](event, path)`` runs in the server on "write", "rename" (before) and "renamed" (after);
    #: returning "drop" refuses the request. The kill tests stop the client at exact protocol instants.
    hook: list[Any] = field(default_factory=lambda: [None])

    def url(self, folder: str) -> str:
        return f"sftp://{SFTP_USER}@{self.host}:{self.port}/{folder}"

    def options(self) -> dict[str, Any]:
        return {"key_file": str(self.key_file), "known_hosts": str(self.known_hosts), "allow_agent": False,
                "backoff": 0.01}

    def folder(self) -> str:
        """A fresh folder on the server for one test (its name, relative to the root)."""
        name = "t" + uuid.uuid4().hex[:10]
        (self.root / name).mkdir()
        return name

    def stop(self) -> None:
        async def close() -> None:
            self.server.close()
            await self.server.wait_closed()
            for conn in self.connections:
                conn.close()
                await conn.wait_closed()
            # let the closed sessions' handler tasks finish before the loop stops
            pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def start_sftp_server(base: Path) -> SFTPServer:
    """Start an asyncssh SFTP server on 127.0.0.1 (a free port) serving ``base/root``."""
    root = base / "root"
    root.mkdir(parents=True)
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    key_file = base / "id_ed25519"
    key_file.write_bytes(client_key.export_private_key("openssh"))
    key_file.chmod(0o600)
    authorized = asyncssh.import_authorized_keys(client_key.export_public_key("openssh").decode())
    logins: list[str] = []
    connections: list[Any] = []

    class Server(asyncssh.SSHServer):
        def connection_made(self, conn: Any) -> None:
            connections.append(conn)

        def begin_auth(self, username: str) -> bool:
            logins.append(username)
            return True

        def password_auth_supported(self) -> bool:
            return True

        def validate_password(self, username: str, password: str) -> bool:
            return username == SFTP_USER and password == SFTP_PASSWORD

    hook: list[Any] = [None]

    class HookedSFTPServer(asyncssh.SFTPServer):  # type: ignore[misc]
        """The stock server, telling the hook about writes and renames."""

        def __init__(self, chan: Any) -> None:
            super().__init__(chan, chroot=str(root).encode())
            self._paths: dict[int, bytes] = {}

        def _tell(self, event: str, path: bytes) -> None:
            # "drop": the hook killed the client; do not carry out its request
            if hook[0] is not None and hook[0](event, path.decode()) == "drop":
                raise asyncssh.SFTPFailure("client gone")

        def open(self, path: bytes, pflags: int, attrs: Any) -> Any:
            f = super().open(path, pflags, attrs)
            self._paths[id(f)] = path
            return f

        def write(self, file_obj: Any, offset: int, data: bytes) -> Any:
            self._tell("write", self._paths.get(id(file_obj), b"?"))
            return super().write(file_obj, offset, data)

        def posix_rename(self, oldpath: bytes, newpath: bytes) -> Any:
            self._tell("rename", newpath)
            result = super().posix_rename(oldpath, newpath)
            self._tell("renamed", newpath)
            return result

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="sftp-server", daemon=True)
    thread.start()

    async def listen() -> Any:
        return await asyncssh.listen(
            "127.0.0.1", 0,
            server_factory=Server,
            server_host_keys=[host_key],
            authorized_client_keys=authorized,
            sftp_factory=HookedSFTPServer,
            allow_scp=False,
        )

    server = asyncio.run_coroutine_threadsafe(listen(), loop).result(30)
    port = server.sockets[0].getsockname()[1]
    known_hosts = base / "known_hosts"
    public = host_key.export_public_key("openssh").decode().split()[:2]
    known_hosts.write_text(f"[127.0.0.1]:{port} {' '.join(public)}\n")
    return SFTPServer("127.0.0.1", port, root, key_file, known_hosts, loop, server, thread, logins, connections, hook)


@pytest.fixture(scope="session")
def sftp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SFTPServer]:
    server = start_sftp_server(tmp_path_factory.mktemp("sftp"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def openssh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenSSHServer]:
    if find_sshd() is None:
        pytest.skip("OpenSSH's sshd is not installed (no /usr/sbin/sshd): apt-get install openssh-server "
                    "(.ci/run does), or set ETL_TEST_SSHD to its path")
    server = start_openssh_server(tmp_path_factory.mktemp("openssh"))
    try:
        yield server
    finally:
        server.stop()


# --------------------------------------------------------------------------- S3 (moto)


@dataclass
class S3Server:
    endpoint: str
    server: Any

    def options(self) -> dict[str, Any]:
        return {"endpoint_url": self.endpoint, "backoff": 0.01}

    def bucket(self) -> str:
        """A fresh, empty bucket for one test."""
        import boto3

        name = "b" + uuid.uuid4().hex[:12]
        boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1").create_bucket(Bucket=name)
        return name

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    moto_server = pytest.importorskip("moto.server", reason="the S3 tests need moto[server] (pip install -e '.[test]')")
    saved = {k: os.environ.get(k) for k in S3_ENV}
    os.environ.update(S3_ENV)  # the client reads credentials from the environment, as in production
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield S3Server(f"http://127.0.0.1:{port}", server)
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class S3Proxy:
    """A loopback HTTP proxy in front of moto, to play the faults a real store shows.

    The first ``slowdowns`` PUTs get ``503 SlowDown``. ``hook(event, path)`` runs
    on "put" (request received, before forwarding; return "drop" to forward
    nothing and close) and "put-done" (moto committed it, before the client
    hears back): the kill tests stop the client at exactly those instants.
    """

    def __init__(self, upstream: str, slowdowns: int = 0) -> None:
        import http.client
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.upstream = upstream.removeprefix("http://")
        self.slowdowns = slowdowns
        self.refused = 0
        self.forwarded_puts = 0
        self.requests: list[tuple[str, str]] = []  # (method, path with query) of every request, in order
        self.hook: Any = None
        #: method -> how many more requests of that method get ``500 InternalError`` (a store's own fault)
        self.internal_errors: dict[str, int] = {}
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                return None

            def _reply(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
                try:
                    self.send_response(status)
                    for k, v in headers:
                        self.send_header(k, v)
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                except OSError:
                    self.close_connection = True  # the client is gone (killed): nothing to tell it

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                with proxy.lock:
                    proxy.requests.append((self.command, self.path))
                    fail = proxy.internal_errors.get(self.command, 0) > 0
                    if fail:
                        proxy.internal_errors[self.command] -= 1
                if fail:
                    payload = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code>'
                               b"<Message>We encountered an internal error. Please try again.</Message></Error>")
                    self._reply(500, [("Content-Type", "application/xml"), ("Content-Length", str(len(payload)))],
                                payload)
                    return
                if self.command == "PUT":
                    with proxy.lock:
                        refuse = proxy.slowdowns > 0
                        if refuse:
                            proxy.slowdowns -= 1
                            proxy.refused += 1
                    if refuse:
                        payload = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
                                   b"<Message>Please reduce your request rate.</Message></Error>")
                        self._reply(503, [("Content-Type", "application/xml"), ("Content-Length", str(len(payload)))],
                                    payload)
                        return
                    if proxy.hook is not None and proxy.hook("put", self.path) == "drop":
                        self.close_connection = True
                        return
                    with proxy.lock:
                        proxy.forwarded_puts += 1
                conn = http.client.HTTPConnection(proxy.upstream, timeout=30)
                conn.request(self.command, self.path, body, headers=dict(self.headers))
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                if self.command == "PUT" and proxy.hook is not None and proxy.hook("put-done", self.path) == "drop":
                    self.close_connection = True
                    return
                headers = [(k, v) for k, v in resp.getheaders()
                           if k.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date")]
                headers.append(("Content-Length", resp.getheader("Content-Length") or str(len(data))))
                self._reply(resp.status, headers, data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --------------------------------------------------------------------------- local batches


def make_batch(parent: Path, batch_id: str = "20260101120000000", releases: int = 3, *, audio_size: int = 20_000,
               tracks: int = 2, complete: bool = True, seed: int = 1) -> Path:
    """A local DDEX batch folder like the ddex-batch loader writes it, with resources; deterministic bytes."""
    import random

    rnd = random.Random(seed)
    batch = parent / batch_id
    batch.mkdir(parents=True)
    for n in range(releases):
        ident = f"06024457{n:05d}"
        folder = batch / ident
        (folder / "resources").mkdir(parents=True)
        for t in range(1, tracks + 1):
            (folder / "resources" / f"{ident}_01_{t:03d}.flac").write_bytes(rnd.randbytes(audio_size))
        (folder / "resources" / f"{ident}_T0_cover.jpg").write_bytes(rnd.randbytes(audio_size // 4))
        message = f"<NewReleaseMessage><ReleaseId>{ident}</ReleaseId>{'x' * 500}</NewReleaseMessage>"
        (folder / f"{ident}.xml").write_text(message, encoding="utf-8")
    if complete:
        (batch / f"BatchComplete_{batch_id}.xml").write_bytes(b"")
    return batch


def tree_md5(root: Path) -> dict[str, str]:
    """Every visible file below ``root`` (dot files and folders excluded) -> MD5."""
    import hashlib

    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_file() and not any(part.startswith(".") for part in rel.parts):
            out[rel.as_posix()] = hashlib.md5(path.read_bytes()).hexdigest()
    return out


def batch_tree(root: Path) -> dict[str, str]:
    """What a local batch delivers: its visible files, and the media its releases send from the media root."""
    import json

    out = tree_md5(root)
    for listed in root.glob("*/resources/.etl-media.json"):
        folder = listed.parent.parent.name
        for row in json.loads(listed.read_bytes())["files"]:
            out.setdefault(f"{folder}/{row['uri']}", row["md5"])
    return dict(sorted(out.items()))


def s3_tree_md5(client: Any, bucket: str, prefix: str) -> dict[str, str]:
    """Every object below ``prefix`` -> MD5 of its bytes (read back, not the ETag)."""
    import hashlib

    out = {}
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix.rstrip("/") + "/")
    for page in pages:
        for obj in page.get("Contents", []):
            body = client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
            out[obj["Key"][len(prefix.rstrip("/")) + 1:]] = hashlib.md5(body).hexdigest()
    return out
