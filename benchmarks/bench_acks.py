"""What reading a store's acknowledgements costs, against a real OpenSSH sshd behind a WAN-like delay.

The store holds ``BATCHES`` delivered batches of ``RELEASES`` releases with
``RESOURCES`` media files each, and has answered every message with an
``ACK_*.xml`` beside it. Measured in the same run, for each round trip:

* ``walk (before)``: what ddex-etl did before (issue 22 item 6): list each
  batch's whole tree recursively, ``resources/`` included, and read every ACK;
* ``read_acks``: today's first look: the batch folder and each release
  folder, one listing each, never ``resources/``; every ACK read;
* ``read_acks settled``: a batch whose releases are all answered, looked at
  through ``read_acks(settled=...)``: its folder only (``etl acks`` skips such
  a batch altogether: no listing at all);
* ``openssh sftp get``: the tool an engineer would use by hand, OpenSSH's
  ``sftp`` fetching ``<batch>/*/ACK_*.xml`` per batch (globs expand client-side).

Prints seconds, SFTP listing requests (OPENDIR + READDIR) and ratios. Usage::

    python benchmarks/bench_acks.py [rtt_ms,...]    # default 0,40
"""
from __future__ import annotations

import multiprocessing
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "delivery"))

from ack_messages import legacy_ack  # noqa: E402
from delay_proxy import serve  # noqa: E402
from paramiko import sftp  # noqa: E402
from sshd_server import find_sshd, openssh_server  # noqa: E402

from ddex_etl.delivery import open_target, read_acks  # noqa: E402

BATCHES, RELEASES, RESOURCES = 6, 30, 12


def build_store(root: Path) -> list[str]:
    batches = []
    for b in range(BATCHES):
        batch = f"2026010{b + 1}120000000"
        batches.append(batch)
        for r in range(RELEASES):
            ident = f"0602445{b:02d}{r:04d}"
            res = root / batch / ident / "resources"
            res.mkdir(parents=True)
            for i in range(RESOURCES):
                (res / f"{ident}_01_{i:03d}.flac").write_bytes(b"f" * 64)
            (root / batch / ident / f"{ident}.xml").write_bytes(b"<NewReleaseMessage/>")
            (root / batch / ident / f"ACK_{ident}.xml").write_bytes(legacy_ack(ident))
        (root / batch / f"BatchComplete_{batch}.xml").write_bytes(b"")
    return batches


def counted(target: Any) -> dict[int, int]:
    ftp = target.fs.ftp
    counts: dict[int, int] = {}
    send = ftp._async_request

    def counting(fileobj: object, t: int, *args: object) -> object:
        counts[t] = counts.get(t, 0) + 1
        return send(fileobj, t, *args)

    ftp._async_request = counting
    return counts


def listings(counts: dict[int, int]) -> int:
    return counts.get(sftp.CMD_OPENDIR, 0) + counts.get(sftp.CMD_READDIR, 0)


def main(rtts: list[float]) -> None:
    if find_sshd() is None:
        sys.exit("needs OpenSSH's sshd (apt-get install openssh-server)")
    with tempfile.TemporaryDirectory() as tmp, openssh_server(Path(tmp) / "sshd") as server:
        folder = server.folder()
        batches = build_store(server.root / folder)
        files = BATCHES * RELEASES * (RESOURCES + 2)
        print(f"store: {BATCHES} batches x {RELEASES} releases x {RESOURCES} media files ({files:,} files), "
              f"every message acknowledged; OpenSSH sshd on loopback")
        for rtt in rtts:
            ready: Any = multiprocessing.Queue()
            stop = multiprocessing.Event()
            proxy = multiprocessing.Process(target=serve, args=(server.host, server.port, rtt / 2000, ready, stop),
                                            daemon=True)
            proxy.start()
            port = ready.get(timeout=30)
            server.trust_port(port)
            try:
                rows = []
                with open_target(server.url(folder, port=port), **server.options()) as target:
                    counts = counted(target)
                    t0 = time.monotonic()
                    read = 0
                    for batch in batches:
                        for path in sorted(p for p in target.list(batch) if p.rpartition("/")[2].startswith("ACK_")):
                            target.read_bytes(path)
                            read += 1
                    rows.append(("walk (before)", time.monotonic() - t0, listings(counts), read))

                    counts = counted(target)
                    t0 = time.monotonic()
                    reports = [read_acks(target, batch) for batch in batches]
                    rows.append(("read_acks", time.monotonic() - t0, listings(counts),
                                 sum(len(r.records) for r in reports)))

                    counts = counted(target)
                    t0 = time.monotonic()
                    for batch, report in zip(batches, reports, strict=True):
                        read_acks(target, batch, settled=report.release_folders)
                    rows.append(("read_acks settled", time.monotonic() - t0, listings(counts), 0))

                # By hand: OpenSSH's sftp fetching every batch's ACK files (globs expand client-side).
                fetched = Path(tmp) / f"fetched-{rtt:.0f}"
                fetched.mkdir()
                script = Path(tmp) / "get.sftp"
                script.write_text("".join(f"get {server.root}/{folder}/{b}/*/ACK_*.xml {fetched}/\n" for b in batches))
                t0 = time.monotonic()
                subprocess.run(server.sftp_command(port=port, batch=script), capture_output=True, check=True)
                rows.append(("openssh sftp get", time.monotonic() - t0, None, len(list(fetched.iterdir()))))
            finally:
                stop.set()
                proxy.join(10)
            print(f"\nround trip {rtt:.0f} ms")
            print(f"  {'':20} {'seconds':>8} {'listings':>9} {'ACKs':>6} {'vs walk':>8} {'vs sftp get':>12}")
            walk, sftp_ls = rows[0][1], rows[-1][1]
            for name, seconds, lists, acks in rows:
                print(f"  {name:20} {seconds:8.2f} {lists if lists is not None else '-':>9} {acks:>6} "
                      f"{walk / seconds:7.1f}x {sftp_ls / seconds:11.1f}x")


if __name__ == "__main__":
    main([float(x) for x in (sys.argv[1] if len(sys.argv) > 1 else "0,40").split(",")])
