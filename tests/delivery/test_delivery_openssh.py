"""Today's delivery against a real OpenSSH sshd, directly and through a WAN-like delay (tests/delay_proxy.py).

The asyncssh server of the other tests is ours to script; stores run
OpenSSH. These check the pieces the delivery relies on against the real
thing: the login with a key, the host key checked per host and port, the
``posix-rename@openssh.com`` replace, and a whole batch arriving byte for
byte, also when every request waits a round trip.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import make_batch, tree_md5
from delay_proxy import DelayProxy
from sshd_server import OpenSSHServer

from ddex_etl.delivery import open_target, upload_batch
from ddex_etl.delivery.targets import TEMP_DIR
from ddex_etl.errors import DeliveryTerminalError

BATCH = "20260101120000000"


def test_the_server_is_openssh_and_logs_in_with_the_generated_key(openssh_server: OpenSSHServer) -> None:
    folder = openssh_server.folder()
    with open_target(openssh_server.url(folder), **openssh_server.options()) as target:
        banner = target.fs.client.get_transport().remote_version  # type: ignore[attr-defined]
        target.put_bytes("hello.txt", b"hi")
    assert banner.startswith("SSH-2.0-OpenSSH_")
    assert (openssh_server.root / folder / "hello.txt").read_bytes() == b"hi"
    assert f"Accepted publickey for {openssh_server.user}" in openssh_server.log.read_text(errors="replace")


def test_an_existing_file_is_replaced_by_posix_rename(openssh_server: OpenSSHServer) -> None:
    # A plain SFTP rename refuses to overwrite; only OpenSSH's posix-rename extension replaces atomically.
    folder = openssh_server.folder()
    final = openssh_server.root / folder / "B" / "R" / "R.xml"
    with open_target(openssh_server.url(folder), **openssh_server.options()) as target:
        target.put_bytes("B/R/R.xml", b"<first/>")
        inode = final.stat().st_ino
        target.put_bytes("B/R/R.xml", b"<second/>")
    assert final.read_bytes() == b"<second/>" and final.stat().st_ino != inode
    assert [p for p in (openssh_server.root / folder / TEMP_DIR).rglob("*") if p.is_file()] == []


def test_a_batch_arrives_whole_through_a_delay_and_the_host_key_is_checked_per_port(
    openssh_server: OpenSSHServer, tmp_path: Path
) -> None:
    local = make_batch(tmp_path / "out", BATCH, releases=2)
    folder = openssh_server.folder()
    with DelayProxy(openssh_server.host, openssh_server.port, one_way=0.002) as proxy:
        url = openssh_server.url(folder, port=proxy.port)
        # known_hosts names the server's own port; the same key on another port is not trusted until listed
        with pytest.raises(DeliveryTerminalError, match="host key is unknown"):
            open_target(url, **openssh_server.options())
        openssh_server.trust_port(proxy.port)
        with open_target(url, **openssh_server.options()) as target:
            report = upload_batch(local, target)
        assert proxy.accepted == 2
    assert report.ok and report.complete and len(report.uploaded) == len(tree_md5(local))
    remote = openssh_server.root / folder
    assert tree_md5(remote / BATCH) == tree_md5(local)  # byte for byte
    assert [p.name for p in (remote / BATCH).rglob("*") if p.name.startswith(".") or p.suffix == ".part"] == []
    assert [p for p in (remote / TEMP_DIR).rglob("*") if p.is_file()] == []


def test_a_login_with_a_key_the_server_does_not_know_is_refused(openssh_server: OpenSSHServer, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    options = {**openssh_server.options(), "key_file": str(stranger), "retries": 1}
    with pytest.raises(DeliveryTerminalError, match="refused the login"):
        open_target(openssh_server.url(openssh_server.folder()), **options)
