"""Uploads against servers that go bad (issue 21): stalls, dropped connections, 500s, a full disk, files altered
behind the journal's back, links planted in the local batch.

Real servers only: OpenSSH's sshd (``openssh_server``) or the asyncssh one, moto for S3, with
``tests/fault_proxy.py`` in front to stall or cut a connection, a real tmpfs for a full disk, real links.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import S3Proxy, S3Server, SFTPServer, make_batch, s3_tree_md5, tree_md5
from fault_proxy import FaultProxy
from sshd_server import OpenSSHServer

from ddex_etl.delivery import BatchUpload, batch_manifest, open_target, upload_batch
from ddex_etl.errors import DeliveryTerminalError, DeliveryTransientError

BATCH = "20260101120000000"
MARKER = f"BatchComplete_{BATCH}.xml"


@contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A small real tmpfs at ``where`` (skips, saying why, when this user may not mount one)."""
    where.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def in_thread(fn: Any) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def body() -> None:
        t0 = time.monotonic()
        try:
            out["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            out["error"] = exc
        out["seconds"] = time.monotonic() - t0

    t = threading.Thread(target=body, daemon=True)
    t.start()
    return t, out


# --------------------------------------------------------------------------- item 9: deadlines


def test_an_sftp_server_that_stalls_mid_upload_fails_within_the_timeout_instead_of_hanging(
    openssh_server: OpenSSHServer, tmp_path: Path
) -> None:
    local = make_batch(tmp_path / "out", BATCH, releases=2, audio_size=200_000)
    proxy = FaultProxy(openssh_server.host, openssh_server.port)
    openssh_server.trust_port(proxy.port)
    folder = openssh_server.folder()
    try:
        target = open_target(openssh_server.url(folder, port=proxy.port),
                             **{**openssh_server.options(), "timeout": 2, "retries": 2})

        def stall_after_first(event: str, path: str) -> None:
            proxy.stall()  # the server stops answering; the connection stays open

        thread, out = in_thread(lambda: upload_batch(local, target, on_file=stall_after_first))
        thread.join(60)
        assert not thread.is_alive(), "the upload hung on a stalled server despite timeout = 2"
        assert isinstance(out.get("error"), DeliveryTransientError), out
        assert "gave up after 2 attempts" in str(out["error"])
        assert out["seconds"] < 30, out["seconds"]
    finally:
        proxy.close()
    with open_target(openssh_server.url(folder), **openssh_server.options()) as fresh:
        report = upload_batch(local, fresh)  # resumable: the next upload finishes the batch
    assert report.complete and tree_md5(openssh_server.root / folder / BATCH) == tree_md5(local)


def test_an_s3_store_that_stalls_fails_within_the_timeout_instead_of_hanging(
    s3_server: S3Server, tmp_path: Path
) -> None:
    local = make_batch(tmp_path / "out", BATCH, releases=2)
    bucket = s3_server.bucket()
    host, port = s3_server.endpoint.removeprefix("http://").split(":")
    proxy = FaultProxy(host, int(port))
    try:
        target = open_target(f"s3://{bucket}/in", endpoint_url=f"http://127.0.0.1:{proxy.port}", timeout=2,
                             retries=2, backoff=0.01)

        def stall_after_first(event: str, path: str) -> None:
            proxy.stall()

        thread, out = in_thread(lambda: upload_batch(local, target, on_file=stall_after_first))
        thread.join(60)
        assert not thread.is_alive(), "the upload hung on a stalled store despite timeout = 2"
        assert isinstance(out.get("error"), DeliveryTransientError), out
        assert out["seconds"] < 30, out["seconds"]
    finally:
        proxy.close()


# --------------------------------------------------------------------------- item 11: transient faults


def test_an_sftp_connection_cut_mid_file_is_retried_not_terminal(openssh_server: OpenSSHServer, tmp_path: Path) -> None:
    local = make_batch(tmp_path / "out", BATCH, releases=2, audio_size=300_000)
    proxy = FaultProxy(openssh_server.host, openssh_server.port)
    openssh_server.trust_port(proxy.port)
    folder = openssh_server.folder()
    try:
        with open_target(openssh_server.url(folder, port=proxy.port), **openssh_server.options()) as target:
            proxy.cut_after(450_000)  # in the middle of the second resource
            report = upload_batch(local, target)
    finally:
        proxy.close()
    assert proxy.cuts == 1 and target.retried >= 1
    assert report.ok and report.complete, report.failed
    assert tree_md5(openssh_server.root / folder / BATCH) == tree_md5(local)


def test_an_s3_500_internal_error_is_retried_not_terminal(s3_server: S3Server, tmp_path: Path) -> None:
    local = make_batch(tmp_path / "out", BATCH, releases=2)
    bucket = s3_server.bucket()
    proxy = S3Proxy(s3_server.endpoint)
    proxy.internal_errors = {"GET": 1, "PUT": 2}  # one 500 on the listing, two on uploads
    try:
        with open_target(f"s3://{bucket}/in", endpoint_url=proxy.url, backoff=0.01) as target:
            report = upload_batch(local, target)
    finally:
        proxy.close()
    assert proxy.internal_errors == {"GET": 0, "PUT": 0}  # every 500 was served
    assert report.ok and report.complete, report.failed
    assert s3_tree_md5(s3_server.client(), bucket, f"in/{BATCH}") == tree_md5(local)


def test_a_file_that_fails_is_counted_once(sftp_server: SFTPServer, tmp_path: Path) -> None:
    local = make_batch(tmp_path / "out", BATCH, releases=2)

    def refuse(event: str, path: str) -> str | None:
        return "drop" if event == "rename" and path.endswith("0602445700001.xml") else None

    folder = sftp_server.folder()
    sftp_server.hook[0] = refuse
    try:
        with open_target(sftp_server.url(folder), **sftp_server.options()) as target:
            report = upload_batch(local, target)
    finally:
        sftp_server.hook[0] = None
    assert [p for p, _ in report.failed] == [f"{BATCH}/0602445700001/0602445700001.xml"]
    assert not report.complete and "1 failed" in report.summary()


# --------------------------------------------------------------------------- item 17: a full disk on the server


def test_a_full_disk_on_the_sftp_server_says_so(openssh_server: OpenSSHServer, tmp_path: Path) -> None:
    local = make_batch(tmp_path / "out", BATCH, releases=2, audio_size=200_000)
    folder = openssh_server.folder()
    with tmpfs(openssh_server.root / folder, "256k"):
        with open_target(openssh_server.url(folder), **openssh_server.options()) as target:
            report = upload_batch(local, target)
        assert report.failed and not report.complete
        assert not (openssh_server.root / folder / BATCH / MARKER).exists()
    why = report.failed[0][1]
    assert "disk may be full" in why and "truncated" in why, why
    assert "check the target URL" not in why


# --------------------------------------------------------------------------- item 3: links in the local batch


@pytest.mark.parametrize("planted", ["message", "resource", "folder", "fifo"])
def test_links_and_special_files_in_the_local_batch_are_never_sent(
    sftp_server: SFTPServer, tmp_path: Path, planted: str
) -> None:
    local = make_batch(tmp_path / "out", BATCH, releases=2)
    secret = tmp_path / "secret.txt"
    secret.write_text("root:$6$not-for-the-store\n", encoding="utf-8")
    release = local / "0602445700001"
    if planted == "message":
        (release / "0602445700001.xml").unlink()
        (release / "0602445700001.xml").symlink_to(secret)
    elif planted == "resource":
        victim = next((release / "resources").iterdir())
        victim.unlink()
        victim.symlink_to(secret)
    elif planted == "folder":
        outside = tmp_path / "elsewhere"
        outside.mkdir()
        (outside / "x.flac").write_bytes(secret.read_bytes())
        (release / "resources" / "ext").symlink_to(outside, target_is_directory=True)
    else:
        os.mkfifo(release / "resources" / "pipe.flac")
    folder = sftp_server.folder()
    with pytest.raises(DeliveryTerminalError, match="not a regular file") as err, \
            open_target(sftp_server.url(folder), **sftp_server.options()) as target:
        upload_batch(local, target)
    assert "0602445700001" in str(err.value) and "fix:" in str(err.value)
    sent = tree_md5(sftp_server.root / folder) if (sftp_server.root / folder).exists() else {}
    assert hashlib.md5(secret.read_bytes()).hexdigest() not in sent.values()
    assert not any(p.endswith(MARKER) for p in sent)


def test_a_file_replaced_by_a_link_after_the_manifest_is_not_sent(sftp_server: SFTPServer, tmp_path: Path) -> None:
    local = make_batch(tmp_path / "out", BATCH, releases=1)
    secret = tmp_path / "secret.txt"
    secret.write_text("root:$6$not-for-the-store\n", encoding="utf-8")
    message = local / "0602445700000" / "0602445700000.xml"
    with open_target(sftp_server.url(sftp_server.folder()), **sftp_server.options()) as target:
        upload = BatchUpload(target, local)
        assert any(e.relpath.endswith(".xml") for e in batch_manifest(local))
        swapped = [False]

        def swap(event: str, path: str) -> None:
            if not swapped[0]:
                swapped[0] = True
                message.unlink()
                message.symlink_to(secret)

        upload.on_file = swap
        with pytest.raises(DeliveryTerminalError, match="not a regular file"):
            upload.send_all()


# --------------------------------------------------------------------------- item 14: altered behind the journal


class _Stop(Exception):
    pass


@pytest.mark.parametrize("server", ["sftp", "openssh"])
def test_a_remote_file_altered_at_the_same_size_after_a_kill_is_sent_again_before_batch_complete(
    request: pytest.FixtureRequest, tmp_path: Path, server: str
) -> None:
    srv: SFTPServer | OpenSSHServer = request.getfixturevalue("sftp_server" if server == "sftp" else "openssh_server")
    local = make_batch(tmp_path / "out", BATCH, releases=2)
    folder = srv.folder()
    count = [0]

    def stop_after_four(event: str, path: str) -> None:
        count[0] += 1
        if count[0] == 4:
            raise _Stop

    with open_target(srv.url(folder), **srv.options()) as target, pytest.raises(_Stop):
        upload_batch(local, target, on_file=stop_after_four)
    sent = sorted(p for p in (srv.root / folder / BATCH).rglob("*") if p.is_file())
    assert len(sent) >= 4  # the transfers in flight beside the fourth may have landed too
    time.sleep(1.1)  # the store's clock moves on (SFTP reports whole seconds)
    victim = sent[0]
    good = victim.read_bytes()
    victim.write_bytes(bytes(b ^ 0xFF for b in good))  # same size, other bytes
    with open_target(srv.url(folder), **srv.options()) as target:
        report = upload_batch(local, target)
    assert report.complete
    assert victim.read_bytes() == good
    assert tree_md5(srv.root / folder / BATCH) == tree_md5(local)
    assert f"{BATCH}/{victim.relative_to(srv.root / folder / BATCH).as_posix()}" in report.uploaded
    assert len(report.skipped) == len(sent) - 1  # the untouched ones are trusted without a read-back


def test_a_stop_asked_for_during_a_stall_ends_the_retries_instead_of_sitting_them_out(
    openssh_server: OpenSSHServer, tmp_path: Path
) -> None:
    local = make_batch(tmp_path / "out", BATCH, releases=2, audio_size=200_000)
    proxy = FaultProxy(openssh_server.host, openssh_server.port)
    openssh_server.trust_port(proxy.port)
    folder = openssh_server.folder()
    stop = threading.Event()

    class Stopped(Exception):
        pass

    def check() -> None:
        if stop.is_set():
            raise Stopped

    def stall_then_stop(event: str, path: str) -> None:
        if not stop.is_set():
            proxy.stall()
            threading.Timer(0.5, stop.set).start()  # SIGTERM arrives while the next file is stuck on the silent server

    try:
        target = open_target(openssh_server.url(folder, port=proxy.port),
                             **{**openssh_server.options(), "timeout": 2, "retries": 5})
        thread, out = in_thread(lambda: upload_batch(local, target, on_file=stall_then_stop, check=check))
        thread.join(60)
        assert not thread.is_alive()
        assert isinstance(out.get("error"), Stopped), out
        assert out["seconds"] < 8, out["seconds"]  # one timeout, not five of them with backoff
    finally:
        proxy.close()


# --------------------------------------------------------------------------- item 1: no removal without local proof


def test_a_resource_lost_locally_but_named_by_its_message_is_never_removed_from_the_store(
    sftp_server: SFTPServer, tmp_path: Path
) -> None:
    local = make_batch(tmp_path / "out", BATCH, releases=2, complete=False)
    release = local / "0602445700001"
    names = sorted(p.name for p in (release / "resources").iterdir())
    (release / "0602445700001.xml").write_text(
        "<NewReleaseMessage>" + "".join(f"<URI>resources/{n}</URI>" for n in names) + "</NewReleaseMessage>",
        encoding="utf-8")
    folder = sftp_server.folder()
    with open_target(sftp_server.url(folder), **sftp_server.options()) as target:
        upload_batch(local, target)  # interrupted before the run finished: no marker yet
        sent = tree_md5(sftp_server.root / folder / BATCH)
        (release / "resources" / names[0]).unlink()  # lost locally (a clean-up), still named by the message
        (local / MARKER).write_bytes(b"")
        with pytest.raises(DeliveryTerminalError, match="named by the local message") as err:
            upload_batch(local, target)
    assert names[0] in str(err.value) and "fix:" in str(err.value)
    assert tree_md5(sftp_server.root / folder / BATCH) == sent  # nothing removed, no BatchComplete
