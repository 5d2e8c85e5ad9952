"""Many transfers in flight: concurrency with the choreography's order kept, progress, bandwidth limits,
media streamed from the media root (hashed on the way, committed only with the expected MD5)."""
from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path

import pytest
from conftest import S3Proxy, S3Server, make_batch, s3_tree_md5, tree_md5

from ddex_etl.delivery import open_target, upload_batch
from ddex_etl.delivery.target_base import SourceMismatch
from ddex_etl.delivery.upload import MEDIA_LIST, UploadProgress, batch_manifest
from ddex_etl.errors import ConfigError

BATCH = "20260101120000000"


def test_s3_puts_go_side_by_side_and_batch_complete_goes_last(s3_server: S3Server, tmp_path: Path) -> None:
    local = make_batch(tmp_path / "out", BATCH, releases=4)  # 12 resources, 4 messages, 1 marker
    proxy = S3Proxy(s3_server.endpoint)
    bucket = s3_server.bucket()
    lock = threading.Lock()
    in_flight = [0]
    most = [0]
    events: list[tuple[str, str]] = []

    def hook(event: str, key: str) -> None:
        with lock:
            events.append((event, key))
            if event == "put":
                in_flight[0] += 1
                most[0] = max(most[0], in_flight[0])
            elif event == "put-done":
                in_flight[0] -= 1
        if event == "put":
            time.sleep(0.05)  # a little latency, so PUTs overlap when the client allows it

    proxy.hook = hook
    try:
        with open_target(f"s3://{bucket}/in", endpoint_url=proxy.url, transfers=8) as target:
            report = upload_batch(local, target)
    finally:
        proxy.close()
    assert report.ok and report.complete
    assert s3_tree_md5(s3_server.client(), bucket, f"in/{BATCH}") == tree_md5(local)
    assert most[0] > 1, "one PUT at a time"
    puts = [k for e, k in events if e == "put"]
    done = [k for e, k in events if e == "put-done"]
    marker = next(i for i, (e, k) in enumerate(events) if e == "put" and "BatchComplete_" in k)
    # BatchComplete's PUT starts only after every other object was committed
    assert len([k for e, k in events[:marker] if e == "put-done"]) == len(puts) - 1 == len(done) - 1
    # every resource was committed before the first message went
    first_message = next(i for i, (e, k) in enumerate(events) if e == "put" and k.endswith(".xml"))
    assert len([k for e, k in events[:first_message] if e == "put-done" and "/resources/" in k]) == 12


def test_progress_counts_files_and_bytes_with_rate_and_eta(tmp_path: Path) -> None:
    local = make_batch(tmp_path / "out", BATCH, releases=3)
    (tmp_path / "store").mkdir()
    seen: list[tuple[int, int, int, int]] = []

    def on_progress(p: UploadProgress) -> None:
        seen.append((p.files_done, p.files_total, p.bytes_done, p.bytes_total))
        assert "files" in p.line() and "MB/s" in p.line() and "ETA" in p.line()

    with open_target(str(tmp_path / "store"), transfers=4) as target:
        upload_batch(local, target, on_progress=on_progress)
    total = sum(e.size for e in batch_manifest(local))
    assert seen[-1] == (13, 13, total, total)
    assert [s[0] for s in seen] == list(range(1, 14))  # one step per file, never backwards


def test_max_bandwidth_limits_the_rate_over_all_transfers(tmp_path: Path) -> None:
    local = make_batch(tmp_path / "out", BATCH, releases=2, audio_size=400_000)  # ~1.6 MB of audio
    (tmp_path / "store").mkdir()
    total = sum(e.size for e in batch_manifest(local))
    t0 = time.monotonic()
    with open_target(str(tmp_path / "store"), transfers=8, max_bandwidth="512k") as target:
        upload_batch(local, target)
    # 512 KiB/s, a quarter second of burst allowed
    assert time.monotonic() - t0 >= total / (512 * 1024) - 0.3


@pytest.mark.parametrize("options, problem", [
    ({"transfers": 0}, "transfers must be 1 to 64"),
    ({"transfers": "8"}, "transfers must be a whole number"),
    ({"max_bandwidth": "fast"}, "is not a rate"),
    ({"max_bandwidth": 0}, "must be more than 0"),
])
def test_bad_transfer_options_are_refused(tmp_path: Path, options: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        open_target(str(tmp_path), **options)


def _streamed_batch(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """A batch whose release lists its media (no local copies), and the media root they are in."""
    media = tmp_path / "media"
    (media / "audio").mkdir(parents=True)
    files = {}
    rows = []
    for n in range(3):
        data = os.urandom(50_000 + n)
        (media / "audio" / f"t{n}.wav").write_bytes(data)
        md5 = hashlib.md5(data).hexdigest()
        files[f"R1/resources/t{n}.wav"] = md5
        rows.append({"uri": f"resources/t{n}.wav", "source": f"audio/t{n}.wav", "size": len(data), "md5": md5})
    batch = tmp_path / "out" / BATCH
    (batch / "R1" / "resources").mkdir(parents=True)
    (batch / "R1" / "R1.xml").write_bytes(b"<NewReleaseMessage/>")
    (batch / "R1" / "resources" / MEDIA_LIST).write_text(json.dumps({"media_root": str(media), "files": rows}))
    (batch / f"BatchComplete_{BATCH}.xml").write_bytes(b"")
    files["R1/R1.xml"] = hashlib.md5(b"<NewReleaseMessage/>").hexdigest()
    files[f"BatchComplete_{BATCH}.xml"] = hashlib.md5(b"").hexdigest()
    return batch, media, files


@pytest.mark.parametrize("kind", ["file", "s3"])
def test_media_go_from_the_media_root_and_a_changed_file_is_never_committed(
        tmp_path: Path, s3_server: S3Server, kind: str) -> None:
    batch, media, files = _streamed_batch(tmp_path)
    (media / "audio" / "t1.wav").write_bytes(os.urandom(50_001))  # changed since the run checked it: same size

    def open_store() -> tuple[object, object]:
        if kind == "file":
            (tmp_path / "store").mkdir(exist_ok=True)
            return open_target(str(tmp_path / "store")), lambda: tree_md5(tmp_path / "store" / BATCH)
        bucket = s3_server.bucket() if not hasattr(open_store, "bucket") else open_store.bucket  # type: ignore[attr-defined]
        open_store.bucket = bucket  # type: ignore[attr-defined]
        return (open_target(f"s3://{bucket}/in", **s3_server.options()),
                lambda: s3_tree_md5(s3_server.client(), bucket, f"in/{BATCH}"))

    target, tree = open_store()
    with target:  # type: ignore[attr-defined]
        report = upload_batch(batch, target)  # type: ignore[arg-type]
    assert not report.complete and [p for p, _ in report.failed] == [f"{BATCH}/R1/resources/t1.wav"]
    assert "expected 50,001 bytes with MD5" in report.failed[0][1]
    landed = tree()  # type: ignore[operator]
    assert "R1/resources/t1.wav" not in landed and f"BatchComplete_{BATCH}.xml" not in landed
    assert landed["R1/resources/t0.wav"] == files["R1/resources/t0.wav"]

    # the right file back: a resume sends only what is missing, and the batch completes
    batch2, _, files2 = _streamed_batch(tmp_path / "again")
    rows = json.loads((batch2 / "R1" / "resources" / MEDIA_LIST).read_text())["files"]
    for row in rows:
        (media / row["source"]).write_bytes((tmp_path / "again" / "media" / row["source"]).read_bytes())
    listed = json.loads((batch / "R1" / "resources" / MEDIA_LIST).read_text())
    listed["files"] = rows
    (batch / "R1" / "resources" / MEDIA_LIST).write_text(json.dumps(listed))
    target, tree = open_store()
    with target:  # type: ignore[attr-defined]
        report = upload_batch(batch, target)  # type: ignore[arg-type]
    assert report.ok and report.complete
    assert tree() == files2  # type: ignore[operator]


def test_s3_multipart_parts_go_side_by_side_and_complete_only_with_the_right_md5(
        s3_server: S3Server, tmp_path: Path) -> None:
    bucket = s3_server.bucket()
    client = s3_server.client()
    data = os.urandom(12 * 2**20 + 123)  # three parts of 5 MiB
    (tmp_path / "big.wav").write_bytes(data)
    options = {**s3_server.options(), "multipart_threshold": 5 * 2**20, "part_size": 5 * 2**20}
    with open_target(f"s3://{bucket}/in", **options) as target:
        target.put_stream("B/R/resources/big.wav", lambda: open(tmp_path / "big.wav", "rb"), size=len(data),
                          md5=hashlib.md5(data).hexdigest())
        body = client.get_object(Bucket=bucket, Key="in/B/R/resources/big.wav")["Body"].read()
        assert hashlib.md5(body).hexdigest() == hashlib.md5(data).hexdigest()
        assert client.head_object(Bucket=bucket, Key="in/B/R/resources/big.wav")["ETag"].endswith('-3"')
        # the file changed since its MD5 was taken: every part goes, the upload is aborted, nothing appears
        with pytest.raises(SourceMismatch, match="it changed after the run checked it"):
            target.put_stream("B/R/resources/other.wav", lambda: open(tmp_path / "big.wav", "rb"),
                              size=len(data), md5="0" * 32)
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys == ["in/B/R/resources/big.wav"]
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
