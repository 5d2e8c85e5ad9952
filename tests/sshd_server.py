"""A real OpenSSH ``sshd`` on 127.0.0.1, started and stopped by a test or a benchmark.

``start_openssh_server(base)`` writes everything it needs below ``base``: a
generated host key, a generated client key authorised for the current user,
a ``known_hosts`` file holding the host key, and an ``sshd_config`` that
listens on 127.0.0.1 only, on a free port (never 22), lets only this user in,
with that key only (no passwords, no PAM), and serves nothing but SFTP
(``ForceCommand internal-sftp``: no shell, no forwarding). Then it runs
``sshd -D -e`` as a child process and waits for its banner.

It logs in as whoever runs the tests (root on the development VM, hence
``PermitRootLogin prohibit-password``), without a chroot, so paths on the
server are the machine's own: ``root`` is a temporary folder and
``url(folder)`` names it by its absolute path. The object answers like the
asyncssh fixture's ``SFTPServer`` (``url``, ``options``, ``folder``, ``root``,
``port``, ``known_hosts``, ``key_file``), so a test can run against either;
``sftp_command()`` gives the OpenSSH ``sftp`` client's arguments for the
same server (the benchmark's baseline).

Run as root, sshd insists on its privilege-separation folder ``/run/sshd``,
which Debian's service creates at boot; ``start_openssh_server`` creates it
(empty, 0755) when it is missing, as the service would.
"""
from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self
from urllib.parse import quote

HOST = "127.0.0.1"
SSHD_PATHS = ("/usr/sbin/sshd", "/usr/local/sbin/sshd")


def find_sshd() -> Path | None:
    """The sshd binary: ``$ETL_TEST_SSHD``, else /usr/sbin/sshd or /usr/local/sbin/sshd; None when absent."""
    configured = os.environ.get("ETL_TEST_SSHD")
    if configured:
        return Path(configured) if os.access(configured, os.X_OK) else None
    for candidate in SSHD_PATHS:
        if os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


def find_ssh_keygen() -> str | None:
    return shutil.which("ssh-keygen") or next((p for p in ("/usr/bin/ssh-keygen",) if os.access(p, os.X_OK)), None)


@dataclass
class OpenSSHServer:
    """A running OpenSSH server on 127.0.0.1; ``root`` is a folder it serves (by its absolute path)."""

    host: str
    port: int
    root: Path
    key_file: Path
    known_hosts: Path
    user: str
    base: Path
    log: Path
    process: subprocess.Popen[bytes]
    host_key_line: str  # "ssh-ed25519 AAAA..." as known_hosts wants it

    def url(self, folder: str, *, port: int | None = None) -> str:
        """The sftp:// URL of ``root/folder``; ``port``: reach it through a proxy on that port instead."""
        path = quote(f"{self.root}/{folder}".rstrip("/"))
        return f"sftp://{self.user}@{self.host}:{port or self.port}{path}"

    def options(self) -> dict[str, Any]:
        """Target options that log in with the generated key and check the host key."""
        return {"key_file": str(self.key_file), "known_hosts": str(self.known_hosts), "allow_agent": False,
                "backoff": 0.01}

    def folder(self) -> str:
        """A fresh folder below ``root`` (its name, relative to ``root``)."""
        name = "t" + uuid.uuid4().hex[:10]
        (self.root / name).mkdir()
        return name

    def trust_port(self, port: int) -> None:
        """Add this server's host key for 127.0.0.1:``port`` to ``known_hosts`` (a proxy in front of it)."""
        with open(self.known_hosts, "a", encoding="ascii") as f:
            f.write(f"[{self.host}]:{port} {self.host_key_line}\n")

    def sftp_command(self, *, port: int | None = None, batch: str | os.PathLike[str] | None = None) -> list[str]:
        """OpenSSH's ``sftp`` client for this server: the generated key, host key checked, no user config."""
        sftp = shutil.which("sftp") or "sftp"
        args = [sftp, "-q", "-F", "/dev/null", "-P", str(port or self.port), "-i", str(self.key_file),
                "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null"]
        if batch is not None:
            args += ["-b", str(batch)]
        return [*args, f"{self.user}@{self.host}"]

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """Stop the listener (sessions still open end when their clients disconnect)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _keygen(keygen: str, path: Path, comment: str) -> None:
    subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _config(base: Path, port: int, user: str) -> str:
    if port == 22 or port < 1024:
        raise ValueError(f"refusing to start a test sshd on port {port}: only a free unprivileged port on {HOST}")
    return f"""\
# A throwaway OpenSSH server for ddex-etl's tests and benchmarks (tests/sshd_server.py).
ListenAddress {HOST}:{port}
HostKey {base / 'ssh_host_ed25519_key'}
PidFile {base / 'sshd.pid'}
AuthorizedKeysFile {base / 'authorized_keys'}
AllowUsers {user}
StrictModes no
UsePAM no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
PermitUserEnvironment no
AllowTcpForwarding no
AllowAgentForwarding no
AllowStreamLocalForwarding no
X11Forwarding no
PermitTunnel no
PermitTTY no
Subsystem sftp internal-sftp
ForceCommand internal-sftp
MaxSessions 64
MaxStartups 64:30:128
LogLevel INFO
"""


def _wait_for_banner(server: OpenSSHServer, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.running():
            return False
        try:
            with socket.create_connection((HOST, server.port), timeout=2) as s:
                if s.recv(64).startswith(b"SSH-2.0-"):
                    return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def start_openssh_server(base: Path, *, sshd: str | os.PathLike[str] | None = None, timeout: float = 20.0) -> OpenSSHServer:
    """Start sshd on 127.0.0.1 (a free port) serving ``base/root`` to the current user; see the module docstring."""
    binary = Path(sshd) if sshd is not None else find_sshd()
    if binary is None:
        raise FileNotFoundError("OpenSSH's sshd is not installed (/usr/sbin/sshd); "
                                "on Debian: apt-get install openssh-server")
    keygen = find_ssh_keygen()
    if keygen is None:
        raise FileNotFoundError("ssh-keygen is not installed; on Debian: apt-get install openssh-client")
    base = Path(base).absolute()
    root = base / "root"
    root.mkdir(parents=True, exist_ok=True)
    _keygen(keygen, base / "ssh_host_ed25519_key", "ddex-etl test host")
    _keygen(keygen, base / "id_ed25519", "ddex-etl test client")
    shutil.copyfile(base / "id_ed25519.pub", base / "authorized_keys")
    host_key_line = " ".join((base / "ssh_host_ed25519_key.pub").read_text(encoding="ascii").split()[:2])
    user = getpass.getuser()
    if os.geteuid() == 0 and not os.path.isdir("/run/sshd"):
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation; what the service makes at boot
    problems = []
    for _attempt in range(5):  # another process may take the free port between our probe and sshd's bind
        port = _free_port()
        config = base / "sshd_config"
        config.write_text(_config(base, port, user), encoding="ascii")
        known_hosts = base / "known_hosts"
        known_hosts.write_text(f"[{HOST}]:{port} {host_key_line}\n", encoding="ascii")
        log = base / "sshd.log"
        with open(log, "ab") as out:
            # sshd must be started by its absolute path (it re-executes itself for each connection)
            process = subprocess.Popen([str(binary.absolute()), "-D", "-e", "-f", str(config)], stdin=subprocess.DEVNULL,
                                       stdout=out, stderr=out)
        server = OpenSSHServer(HOST, port, root, base / "id_ed25519", known_hosts, user, base, log, process,
                               host_key_line)
        if _wait_for_banner(server, timeout):
            return server
        server.stop()
        problems.append(log.read_text(encoding="utf-8", errors="replace").strip()[-2000:])
        if "Address already in use" not in problems[-1] and "Bind to port" not in problems[-1]:
            break
    raise RuntimeError(f"sshd ({binary}) did not start on {HOST}; its log:\n" + "\n".join(problems))


@contextlib.contextmanager
def openssh_server(base: Path, **kw: Any) -> Any:
    """``start_openssh_server`` as a context manager that stops it."""
    server = start_openssh_server(base, **kw)
    try:
        yield server
    finally:
        server.stop()
