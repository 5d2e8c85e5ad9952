"""Batch uploads: choreography order, BatchComplete last, and kill-then-resume on real servers.

Each runs against a local folder, the in-process asyncssh server, a real
OpenSSH sshd and moto. The kill tests run the upload in a subprocess and
SIGKILL it: after a chosen file, or at exact instants of the protocol,
chosen by the servers themselves (the asyncssh server and the S3 proxy call
a hook on each write, rename and PUT):
mid-transfer, after the server committed a file but before the client heard
back, between files, and just before BatchComplete. The upload is then
started again in this process; the target must end byte-identical to an
undisturbed upload, with nothing committed sent twice, no temp name in the
batch folder and BatchComplete only once the batch is whole.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import S3Proxy, S3Server, SFTPServer, make_batch, s3_tree_md5, tree_md5
from sshd_server import OpenSSHServer

from ddex_etl.delivery import BatchUpload, FileJournal, batch_manifest, open_target, upload_batch
from ddex_etl.delivery.targets import TEMP_DIR
from ddex_etl.errors import DeliveryTerminalError

BATCH = "20260101120000000"
MARKER = f"BatchComplete_{BATCH}.xml"


@dataclass
class Remote:
    """A target plus what really is in its storage (read behind the target's back)."""

    kind: str
    url: str
    options: dict[str, Any]
    tree: Callable[[], dict[str, str]]  # batch-relative path -> md5, every visible file of the batch folder
    temp_files: Callable[[], list[str]]  # temp files anywhere under the target (SFTP/local: .etl-partial)
    batch_names: Callable[[], list[str]]  # every name inside the remote batch folder, hidden ones included

    def open(self) -> Any:
        return open_target(self.url, **self.options)


def _local_remote(root: Path) -> Remote:
    root.mkdir(parents=True, exist_ok=True)
    return Remote(
        "file", f"file://{root}", {},
        lambda: tree_md5(root / BATCH) if (root / BATCH).is_dir() else {},
        lambda: [str(p) for p in (root / TEMP_DIR).rglob("*") if p.is_file()] if (root / TEMP_DIR).exists() else [],
        lambda: [p.name for p in (root / BATCH).rglob("*")] if (root / BATCH).exists() else [],
    )


@pytest.fixture(params=["file", "sftp", "openssh", "s3"])
def remote(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Remote]:
    if request.param == "file":
        yield _local_remote(tmp_path / "store")
    elif request.param in ("sftp", "openssh"):
        server: SFTPServer | OpenSSHServer = request.getfixturevalue(
            "sftp_server" if request.param == "sftp" else "openssh_server")
        folder = server.folder()
        root = server.root / folder
        r = _local_remote(root)
        yield Remote("sftp", server.url(folder), server.options(), r.tree, r.temp_files, r.batch_names)
    else:
        s3: S3Server = request.getfixturevalue("s3_server")
        bucket = s3.bucket()
        client = s3.client()

        def names() -> list[str]:
            listed = client.list_objects_v2(Bucket=bucket, Prefix=f"in/{BATCH}/").get("Contents", [])
            return [o["Key"].rsplit("/", 1)[1] for o in listed]

        yield Remote("s3", f"s3://{bucket}/in", s3.options(), lambda: s3_tree_md5(client, bucket, f"in/{BATCH}"),
                     lambda: [u["Key"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])],
                     names)


# --------------------------------------------------------------------------- whole uploads


def test_upload_sends_resources_then_messages_then_batch_complete(remote: Remote, tmp_path: Path) -> None:
    local = make_batch(tmp_path / "out", BATCH, releases=3)
    events: list[tuple[str, str]] = []
    with remote.open() as target:
        report = upload_batch(local, target, on_file=lambda e, p: events.append((e, p)))
    assert report.ok and report.complete and report.skipped == []
    assert remote.tree() == tree_md5(local)  # byte-identical, file by file
    sent = [p.removeprefix(f"{BATCH}/") for e, p in events]
    assert all(e == "uploaded" for e, _ in events) and len(sent) == len(tree_md5(local))
    kinds = ["resource" if "/resources/" in p else "marker" if p == MARKER else "message" for p in sent]
    assert kinds == sorted(kinds, key=["resource", "message", "marker"].index)  # resources, messages, marker last
    assert sent[-1] == MARKER
    assert report.bytes_uploaded == sum(p.stat().st_size for p in local.rglob("*") if p.is_file())
    assert remote.temp_files() == []
    assert all(not n.startswith(".") and not n.endswith(".part") for n in remote.batch_names())


def test_a_second_upload_sends_nothing(remote: Remote, tmp_path: Path) -> None:
    local = make_batch(tmp_path / "out", BATCH, releases=2)
    with remote.open() as target:
        upload_batch(local, target)
        again = upload_batch(local, target)
    assert again.uploaded == [] and len(again.skipped) == len(tree_md5(local)) and again.complete
    assert "uploaded 0 files" in again.summary() and "batch complete" in again.summary()


def test_without_a_local_batch_complete_the_marker_is_never_sent(remote: Remote, tmp_path: Path) -> None:
    local = make_batch(tmp_path / "out", BATCH, releases=2, complete=False)
    with remote.open() as target:
        report = upload_batch(local, target)
    assert report.ok and not report.complete
    assert MARKER not in remote.tree() and remote.tree() == tree_md5(local)


def test_release_by_release_then_complete(remote: Remote, tmp_path: Path) -> None:
    local = make_batch(tmp_path / "out", BATCH, releases=3, complete=False)
    with remote.open() as target:
        upload = BatchUpload(target, local)
        first = upload.send_release("0602445700000")
        assert len(first.uploaded) == 4 and all("/0602445700000/" in p for p in first.uploaded)
        assert first.uploaded[-1].endswith("/0602445700000.xml")  # the message after its resources
        assert MARKER not in remote.tree()
        (local / MARKER).write_bytes(b"")  # the run finished: the batch is whole
        report = upload.complete()
    assert report.complete and remote.tree() == tree_md5(local)
    assert len(report.uploaded) == len(tree_md5(local))  # the first release was not sent twice


def test_a_changed_file_of_a_closed_batch_is_refused(remote: Remote, tmp_path: Path) -> None:
    local = make_batch(tmp_path / "out", BATCH, releases=2)
    with remote.open() as target:
        upload_batch(local, target)
        (local / "0602445700001" / "0602445700001.xml").write_text("<changed/>", encoding="utf-8")
        with pytest.raises(DeliveryTerminalError, match="already complete.*new batch"):
            upload_batch(local, target)
    assert remote.tree()["0602445700001/0602445700001.xml"] != hashlib.md5(b"<changed/>").hexdigest()


def test_dry_run_reports_and_writes_nothing(remote: Remote, tmp_path: Path) -> None:
    local = make_batch(tmp_path / "out", BATCH, releases=2)
    with remote.open() as target:
        report = upload_batch(local, target, dry_run=True)
    assert report.dry_run and len(report.uploaded) == len(tree_md5(local)) and "would upload" in report.summary()
    assert remote.tree() == {}
    assert not (tmp_path / "out" / ".etl-delivery").exists() or not any((tmp_path / "out" / ".etl-delivery").iterdir())


def test_manifest_skips_temp_and_hidden_files(tmp_path: Path) -> None:
    local = make_batch(tmp_path / "out", BATCH, releases=1)
    (local / "0602445700000" / ".0602445700000.xml.123.etl-tmp").write_bytes(b"half")
    (local / ".DS_Store").write_bytes(b"x")
    names = [e.relpath for e in batch_manifest(local)]
    assert not any(".etl-tmp" in n or ".DS_Store" in n for n in names) and names[-1] == MARKER


def test_a_torn_journal_line_is_ignored(tmp_path: Path) -> None:
    journal = FileJournal(tmp_path / "j.jsonl")
    journal.record("B/a.xml", "0" * 32, 3)
    with open(journal.path, "a", encoding="utf-8") as f:
        f.write('{"path": "B/b.xml", "md5": "12')  # killed mid-line
    assert journal.committed() == {"B/a.xml": "0" * 32}


# --------------------------------------------------------------------------- kill, then resume

CHILD = r"""
import json, os, signal, sys
from ddex_etl.delivery import open_target, upload_batch
args = json.loads(sys.argv[1])
target = open_target(args["url"], **args["options"])
count = [0]
def on_file(event, path):
    count[0] += 1
    if count[0] == args.get("kill_after_files"):
        os.kill(os.getpid(), signal.SIGKILL)
upload_batch(args["local"], target, on_file=on_file)
print("finished")
"""


def _run_child(local: Path, remote: Remote, kill_after_files: int | None = None) -> subprocess.Popen[bytes]:
    args = {"url": remote.url, "options": remote.options, "local": str(local), "kill_after_files": kill_after_files}
    return subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=os.environ.copy())


def _settled(remote: Remote) -> dict[str, str]:
    """The remote tree once requests the dead client left in flight (a server may still finish them) are done."""
    before = remote.tree()
    while True:
        time.sleep(0.3)
        now = remote.tree()
        if now == before:
            return now
        before = now


def _resume_and_check(local: Path, remote: Remote, reference: dict[str, str]) -> None:
    after_kill = _settled(remote)
    assert MARKER not in after_kill  # BatchComplete only on a complete batch
    for path, md5 in after_kill.items():  # whatever is visible is whole: every file is all or nothing
        assert reference[path] == md5, f"{path} is visible but not whole after the kill"
    assert all(not n.startswith(".") and not n.endswith(".part") for n in remote.batch_names())
    with remote.open() as target:
        report = upload_batch(local, target)
    assert report.ok and report.complete
    assert remote.tree() == reference  # byte-identical to an undisturbed upload
    skipped = {p.removeprefix(f"{BATCH}/") for p in report.skipped}
    uploaded = {p.removeprefix(f"{BATCH}/") for p in report.uploaded}
    assert set(after_kill) == skipped  # what was committed is not sent again ...
    assert uploaded == set(reference) - set(after_kill)  # ... and what was not, is
    assert remote.temp_files() == []
    assert all(not n.startswith(".") and not n.endswith(".part") for n in remote.batch_names())


def _reference_tree(local: Path) -> dict[str, str]:
    return tree_md5(local)  # an undisturbed upload ends with exactly the local batch (checked above, per target)


@pytest.mark.parametrize("kill_after_files", [1, 5, 12])  # after the first file, mid-resources, before the marker
def test_killed_between_files_then_resumed(remote: Remote, tmp_path: Path, kill_after_files: int) -> None:
    local = make_batch(tmp_path / "out", BATCH, releases=3)  # 9 resources, 3 messages, 1 marker: 13 files
    reference = _reference_tree(local)
    proc = _run_child(local, remote, kill_after_files=kill_after_files)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, err.decode()
    # the transfers in flight beside the n-th may have committed too (and not been journaled): the resume checks them
    assert kill_after_files <= len(remote.tree()) < 13
    _resume_and_check(local, remote, reference)


def _kill_on(proc_holder: list[subprocess.Popen[bytes] | None], match: Callable[[str, str], bool]) -> Callable[..., Any]:
    fired = [False]

    def hook(event: str, path: str) -> str | None:
        if not fired[0] and proc_holder[0] is not None and match(event, path):
            fired[0] = True
            os.kill(proc_holder[0].pid, signal.SIGKILL)
            proc_holder[0].wait(30)  # the client is dead before the server goes on
            return "drop"
        return None

    return hook


def _nth(n: int, event: str, contains: str = "") -> Callable[[str, str], bool]:
    seen = [0]

    def match(e: str, path: str) -> bool:
        if e == event and contains in path:
            seen[0] += 1
            return seen[0] == n
        return False

    return match


SFTP_INSTANTS = {
    # the first resource is half sent: the third write request into a temp file
    "mid-transfer": lambda: _nth(3, "write", ".etl-partial/"),
    # the server renamed a resource into place; the client never heard back, nor journaled it
    "renamed-not-journaled": lambda: _nth(4, "renamed"),
    # the message of the second release was renamed, the rest not yet
    "message-renamed": lambda: _nth(2, "renamed", ".xml"),
    # everything is there but BatchComplete is about to be renamed in
    "before-batch-complete": lambda: _nth(1, "rename", "BatchComplete_"),
}


@pytest.mark.parametrize("instant", sorted(SFTP_INSTANTS))
def test_sftp_killed_at_protocol_instants_then_resumed(sftp_server: SFTPServer, tmp_path: Path, instant: str) -> None:
    folder = sftp_server.folder()
    root = sftp_server.root / folder
    base = _local_remote(root)
    remote = Remote("sftp", sftp_server.url(folder), sftp_server.options(), base.tree, base.temp_files,
                    base.batch_names)
    local = make_batch(tmp_path / "out", BATCH, releases=3, audio_size=200_000)  # several write requests per file
    reference = _reference_tree(local)
    holder: list[subprocess.Popen[bytes] | None] = [None]
    sftp_server.hook[0] = _kill_on(holder, SFTP_INSTANTS[instant]())
    try:
        holder[0] = _run_child(local, remote)
        _, err = holder[0].communicate(timeout=120)
    finally:
        sftp_server.hook[0] = None
    assert holder[0].returncode == -signal.SIGKILL, err.decode()
    if instant == "mid-transfer":  # the half file exists, but only under a temp name outside the batch
        leftovers = [p for p in (root / TEMP_DIR).rglob("*.part")]
        assert leftovers and all(p.stat().st_size < 200_000 for p in leftovers)
    _resume_and_check(local, remote, reference)


S3_INSTANTS = {
    # the 5th PUT reached the store but was never committed (the client died sending it)
    "put-in-flight": lambda: _nth(5, "put"),
    # the store committed the 5th object; the client died before the answer (and the journal line)
    "put-committed-unanswered": lambda: _nth(5, "put-done"),
    # a message is committed, unanswered
    "message-committed-unanswered": lambda: _nth(1, "put-done", ".xml"),
    # BatchComplete's PUT arrives: it must not land
    "batch-complete-in-flight": lambda: _nth(1, "put", "BatchComplete_"),
}


@pytest.mark.parametrize("instant", sorted(S3_INSTANTS))
def test_s3_killed_at_protocol_instants_then_resumed(s3_server: S3Server, tmp_path: Path, instant: str) -> None:
    bucket = s3_server.bucket()
    client = s3_server.client()
    proxy = S3Proxy(s3_server.endpoint)
    options = {"endpoint_url": proxy.url, "backoff": 0.01}

    def names() -> list[str]:
        listed = client.list_objects_v2(Bucket=bucket, Prefix=f"in/{BATCH}/").get("Contents", [])
        return [o["Key"].rsplit("/", 1)[1] for o in listed]

    remote = Remote("s3", f"s3://{bucket}/in", options, lambda: s3_tree_md5(client, bucket, f"in/{BATCH}"),
                    lambda: [u["Key"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])], names)
    local = make_batch(tmp_path / "out", BATCH, releases=3)
    reference = _reference_tree(local)
    holder: list[subprocess.Popen[bytes] | None] = [None]
    proxy.hook = _kill_on(holder, S3_INSTANTS[instant]())
    try:
        holder[0] = _run_child(local, remote)
        _, err = holder[0].communicate(timeout=120)
        assert holder[0].returncode == -signal.SIGKILL, err.decode()
        proxy.hook = None
        # Several PUTs are in flight at once: those beside the n-th may have been committed too.
        low, high = {"put-committed-unanswered": (5, 12), "message-committed-unanswered": (10, 12),
                     "put-in-flight": (0, 12), "batch-complete-in-flight": (12, 12)}[instant]
        assert low <= len(_settled(remote)) <= high
        _resume_and_check(local, remote, reference)
    finally:
        proxy.close()


def test_a_release_dropped_after_an_interrupted_upload_is_removed_before_batch_complete(
        remote: Remote, tmp_path: Path) -> None:
    local = make_batch(tmp_path / "out", BATCH, releases=3, complete=False)
    with remote.open() as target:
        upload_batch(local, target)  # interrupted before the run finished: no marker yet
        target.put_bytes(f"{BATCH}/0602445700002/ACK_0602445700002.xml", b"<FtpAcknowledgementMessage/>")
        for f in sorted((local / "0602445700002").rglob("*"), reverse=True):  # the resumed run rejected it
            f.unlink() if f.is_file() else f.rmdir()
        (local / "0602445700002").rmdir()
        (local / MARKER).write_bytes(b"")
        report = upload_batch(local, target)
    assert report.complete and len(report.removed) == 4 and "4 removed" in report.summary()
    left = remote.tree()
    assert left.pop("0602445700002/ACK_0602445700002.xml")  # the store's file stays
    assert left == tree_md5(local)
