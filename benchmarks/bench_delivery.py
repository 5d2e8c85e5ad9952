"""Print delivery throughput (releases/s, MB/s) to local files, a loopback SFTP server and a loopback S3 server.

    python benchmarks/bench_delivery.py [--releases 200] [--message-kb 30] [--audio-kb 100] [--image-kb 20]

A generated ddex-batch folder (each release: one message, one audio file, one
cover image; BatchComplete last) is uploaded with ``upload_batch`` to:

* ``copytree``: a plain ``shutil.copytree`` of the folder (no fsync), the floor;
* ``file://``: the local-folder target (temp file, fsync, rename, per file);
* ``sftp://``: an asyncssh SFTP server on 127.0.0.1, in its own process;
* ``s3://``: moto's S3 server on 127.0.0.1, in its own process.

Each target is then uploaded to a second time: every file is already there,
so that line is the cost of a resume's check (one listing plus the journal).
The servers run on the same 2-core machine as the client, so the remote
figures measure the client's and the protocol's overhead, not a network.
"""
from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import random
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ddex_etl.delivery import open_target, upload_batch

BATCH = "20260101120000000"


def make_batch(parent: Path, releases: int, message_kb: int, audio_kb: int, image_kb: int) -> Path:
    rnd = random.Random(14)
    batch = parent / BATCH
    for n in range(releases):
        ident = f"{5_000_000_000_000 + n:013d}"
        folder = batch / ident
        (folder / "resources").mkdir(parents=True)
        (folder / "resources" / f"{ident}_01_001.flac").write_bytes(rnd.randbytes(audio_kb * 1024))
        (folder / "resources" / f"{ident}_T0_cover.jpg").write_bytes(rnd.randbytes(image_kb * 1024))
        body = "<Title>Northern Lights</Title>" * (message_kb * 1024 // 30)
        (folder / f"{ident}.xml").write_text(f"<NewReleaseMessage>{body}</NewReleaseMessage>", encoding="utf-8")
    (batch / f"BatchComplete_{BATCH}.xml").write_bytes(b"")
    return batch


# --------------------------------------------------------------------------- servers, each in its own process


def _sftp_server(root: str, key_file: str, known_hosts: str, ready: Any, stop: Any) -> None:
    import asyncssh

    async def main() -> None:
        host_key = asyncssh.generate_private_key("ssh-ed25519")
        client_key = asyncssh.generate_private_key("ssh-ed25519")
        Path(key_file).write_bytes(client_key.export_private_key("openssh"))
        os.chmod(key_file, 0o600)
        authorized = asyncssh.import_authorized_keys(client_key.export_public_key("openssh").decode())
        server = await asyncssh.listen(
            "127.0.0.1", 0, server_host_keys=[host_key], authorized_client_keys=authorized,
            sftp_factory=lambda chan: asyncssh.SFTPServer(chan, chroot=root.encode()), allow_scp=False,
        )
        port = server.sockets[0].getsockname()[1]
        public = " ".join(host_key.export_public_key("openssh").decode().split()[:2])
        Path(known_hosts).write_text(f"[127.0.0.1]:{port} {public}\n")
        ready.put(port)
        await asyncio.get_running_loop().run_in_executor(None, stop.wait)
        server.close()

    asyncio.run(main())


def _s3_server(port: int, ready: Any, stop: Any) -> None:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    ready.put(port)
    stop.wait()
    server.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _files_in(folder: Path) -> tuple[int, int]:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def _line(name: str, releases: int, nbytes: int, seconds: float, note: str = "") -> None:
    print(f"{name:<28} {seconds:8.2f} s {releases / seconds:10.0f} releases/s {nbytes / seconds / 2**20:8.1f} MB/s  {note}")


def _timed_upload(name: str, batch: Path, url: str, options: dict[str, Any], releases: int, nbytes: int) -> None:
    target = open_target(url, **options)
    start = time.perf_counter()
    report = upload_batch(batch, target)
    seconds = time.perf_counter() - start
    assert report.ok and report.complete, report.summary()
    _line(name, releases, nbytes, seconds, f"{len(report.uploaded)} files")
    start = time.perf_counter()
    again = upload_batch(batch, target)
    seconds = time.perf_counter() - start
    assert again.uploaded == [] and again.complete
    _line(f"  {name} again (resume check)", releases, nbytes, seconds, f"{len(again.skipped)} files skipped")
    target.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--releases", type=int, default=200)
    parser.add_argument("--message-kb", type=int, default=30)
    parser.add_argument("--audio-kb", type=int, default=100)
    parser.add_argument("--image-kb", type=int, default=20)
    args = parser.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

    with tempfile.TemporaryDirectory(prefix="bench-delivery-") as tmp:
        work = Path(tmp)
        batch = make_batch(work / "out", args.releases, args.message_kb, args.audio_kb, args.image_kb)
        nfiles, nbytes = _files_in(batch)
        print(f"batch: {args.releases} releases, {nfiles} files, {nbytes / 2**20:.1f} MB "
              f"(message {args.message_kb} kB, audio {args.audio_kb} kB, image {args.image_kb} kB each); "
              f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")

        start = time.perf_counter()
        shutil.copytree(batch, work / "copy" / BATCH)
        _line("copytree (no fsync)", args.releases, nbytes, time.perf_counter() - start)

        (work / "files").mkdir()
        _timed_upload("file://", batch, f"file://{work / 'files'}", {}, args.releases, nbytes)

        ctx = mp.get_context("spawn")
        stop = ctx.Event()
        sftp_root = work / "sftp"
        sftp_root.mkdir()
        ready: Any = ctx.Queue()
        sftp = ctx.Process(target=_sftp_server, args=(str(sftp_root), str(work / "key"), str(work / "known_hosts"),
                                                      ready, stop), daemon=True)
        sftp.start()
        s3 = ctx.Process(target=_s3_server, args=(_free_port(), ready, stop), daemon=True)
        s3.start()
        ports = [ready.get(timeout=60), ready.get(timeout=60)]
        try:
            sftp_port = next(p for p in ports if (work / "known_hosts").exists()
                             and f"]:{p} " in (work / "known_hosts").read_text())
            s3_port = next(p for p in ports if p != sftp_port)
            (sftp_root / "in").mkdir()
            _timed_upload("sftp:// (loopback)", batch, f"sftp://bench@127.0.0.1:{sftp_port}/in",
                          {"key_file": str(work / "key"), "known_hosts": str(work / "known_hosts"),
                           "allow_agent": False}, args.releases, nbytes)
            import boto3

            endpoint = f"http://127.0.0.1:{s3_port}"
            boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench")
            _timed_upload("s3:// (loopback moto)", batch, "s3://bench/in", {"endpoint_url": endpoint},
                          args.releases, nbytes)
        finally:
            stop.set()
            sftp.join(10)
            s3.join(10)


if __name__ == "__main__":
    main()
