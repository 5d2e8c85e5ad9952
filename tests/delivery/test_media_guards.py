"""What the media root may hand to a batch: regular files inside it, not empty, not too large, with an MD5.

Issue 21, items 3 (media root), 4, 5 and 13, against real files: real symbolic
links (to /etc/passwd, /etc/shadow, /dev/zero, a linked folder), a real FIFO
(os.mkfifo), a real character device and socket, a real tmpfs for a full or
read-only disk, and an S3 media root on moto's server. Every test here failed
on the code before the fix (links were followed, the FIFO blocked open() for
ever, the empty file and the file without an MD5 were copied, a full disk was
blamed on the release); the end-to-end ones run the real `etl` command.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import S3Server
from test_run_delivery import batch_of, check_batch, expected_resources, tree_md5, write_config

from ddex_etl import config
from ddex_etl.config import load_config
from ddex_etl.db import make_engine
from ddex_etl.delivery import MediaItem, MediaRoot, copy_resources, media_source, plan_resources
from ddex_etl.delivery.media_source import MediaRefused
from ddex_etl.delivery.resources import ResourceWriteError
from ddex_etl.demo import media as demo_media
from ddex_etl.demo.seed import seed_catalog
from ddex_etl.errors import ConfigError, ExitCode, MediaError
from ddex_etl.load import release_identifier

EMPTY_MD5 = hashlib.md5(b"").hexdigest()
PASSWD = Path("/etc/passwd").read_bytes()
PASSWD_LINE = PASSWD.split(b"\n", 1)[0].decode()  # must never show up in a message or a batch


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def plan(*items: tuple[str, str | None]) -> list[Any]:
    planned, problems = plan_resources(MediaItem(src, digest, f"tracks[{i}].audio_file")
                                       for i, (src, digest) in enumerate(items))
    assert problems == []
    return planned


def resources(release_dir: Path) -> list[str]:
    folder = release_dir / "resources"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def within(seconds: float, fn: Callable[[], Any], unblock: Callable[[], None] | None = None) -> Any:
    """``fn()``, failing the test (instead of hanging it) when it has not returned after ``seconds``."""
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:  # handed to the test below
            out["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        if unblock is not None:
            unblock()
        thread.join(10)
        pytest.fail(f"still blocked after {seconds} s")
    if "error" in out:
        raise out["error"]
    return out.get("value")


@contextmanager
def tmpfs(where: Path, size: str, *options: str) -> Iterator[Path]:
    """A small real tmpfs at ``where`` (the test skips, saying why, when this user may not mount one)."""
    where.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join([f"size={size}", *options]), "tmpfs", str(where)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


# --------------------------------------------------------------------------- links (item 3)


def _passwd_with_md5(media: Path) -> tuple[str, str | None]:
    (media / "audio").mkdir(parents=True)
    (media / "audio" / "evil.wav").symlink_to("/etc/passwd")
    return "audio/evil.wav", md5(PASSWD)


def _shadow_without_md5(media: Path) -> tuple[str, str | None]:
    (media / "audio").mkdir(parents=True)
    (media / "audio" / "evil2.wav").symlink_to("/etc/shadow")
    return "audio/evil2.wav", None


def _linked_folder(media: Path) -> tuple[str, str | None]:
    (media / "audio").mkdir(parents=True)
    (media / "audio" / "ext").symlink_to("/etc")
    return "audio/ext/passwd", md5(PASSWD)


def _link_inside_the_root(media: Path) -> tuple[str, str | None]:
    (media / "audio").mkdir(parents=True)
    (media / "audio" / "real.wav").write_bytes(b"RIFF audio")
    (media / "audio" / "alias.wav").symlink_to("real.wav")
    return "audio/alias.wav", md5(b"RIFF audio")


def _linked_top_folder(media: Path) -> tuple[str, str | None]:
    media.mkdir(parents=True)
    (media / "audio").symlink_to("/etc")
    return "audio/passwd", md5(PASSWD)


def _dangling(media: Path) -> tuple[str, str | None]:
    (media / "audio").mkdir(parents=True)
    (media / "audio" / "gone.wav").symlink_to("/nonexistent/gone.wav")
    return "audio/gone.wav", "0" * 32


LINKS = {
    "evil.wav -> /etc/passwd, the catalog holding its MD5": (_passwd_with_md5, "audio/evil.wav"),
    "evil2.wav -> /etc/shadow, no MD5, unverified media allowed": (_shadow_without_md5, "audio/evil2.wav"),
    "audio/ext -> /etc, then ext/passwd": (_linked_folder, "audio/ext"),
    "audio -> /etc (the first segment)": (_linked_top_folder, "audio"),
    "a link to a file inside the root": (_link_inside_the_root, "audio/alias.wav"),
    "a dangling link": (_dangling, "audio/gone.wav"),
}


@pytest.mark.parametrize("case", list(LINKS))
def test_a_symbolic_link_in_the_media_root_is_never_followed(tmp_path: Path, case: str) -> None:
    make, link = LINKS[case]
    media = tmp_path / "media"
    source, digest = make(media)
    release_dir = tmp_path / "batch" / "R"
    with pytest.raises(MediaError) as err:
        copy_resources(9, plan((source, digest)), media, release_dir, allow_unverified=True)
    [problem] = err.value.problems
    assert problem.field == "tracks[0].audio_file" and problem.value == source
    text = str(err.value)
    assert text.startswith("release 9: ") and f"{media}/{link} is a symbolic link" in text and "fix: " in text
    assert PASSWD_LINE not in text
    assert resources(release_dir) == []


def test_the_media_root_itself_may_be_a_link_its_operator_made(tmp_path: Path) -> None:
    (tmp_path / "real" / "audio").mkdir(parents=True)
    (tmp_path / "real" / "audio" / "01.wav").write_bytes(b"RIFF one")
    (tmp_path / "media").symlink_to(tmp_path / "real")
    [copied] = copy_resources(1, plan(("audio/01.wav", md5(b"RIFF one"))), tmp_path / "media", tmp_path / "R")
    assert copied.verified and (tmp_path / "R" / "resources" / "01.wav").read_bytes() == b"RIFF one"


def test_a_resumed_copy_never_trusts_a_link_planted_in_the_batch(tmp_path: Path) -> None:
    """A link in resources/ with the right MD5 behind it was counted as in place (and later uploaded)."""
    media = tmp_path / "media"
    (media / "a").mkdir(parents=True)
    (media / "a" / "passwd.wav").write_bytes(PASSWD)  # the same bytes as the link's target
    release_dir = tmp_path / "R"
    (release_dir / "resources").mkdir(parents=True)
    (release_dir / "resources" / "passwd.wav").symlink_to("/etc/passwd")
    [copied] = copy_resources(1, plan(("a/passwd.wav", md5(PASSWD))), media, release_dir)
    placed = release_dir / "resources" / "passwd.wav"
    assert copied.copied and not placed.is_symlink() and placed.read_bytes() == PASSWD
    assert Path("/etc/passwd").read_bytes() == PASSWD


# --------------------------------------------------------------------------- special files, sizes (items 4, 13)


def test_a_fifo_is_refused_at_once_instead_of_blocking_the_worker(tmp_path: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    fifo = media / "01.wav"
    os.mkfifo(fifo)

    def unblock() -> None:  # the old code sits in open(): give it a writer so the thread can end
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)

    with pytest.raises(MediaError) as err:
        within(20, lambda: copy_resources(3, plan(("01.wav", "0" * 32)), media, tmp_path / "R"), unblock)
    assert f"{fifo} is a FIFO (named pipe), not a regular file" in str(err.value)
    # The dry run's check does not block either.
    with pytest.raises(MediaRefused, match="FIFO"):
        within(20, lambda: MediaRoot(media).check("01.wav"), unblock)


@pytest.mark.parametrize("kind", ["a link to /dev/zero", "a character device", "a socket", "a folder"])
def test_devices_sockets_and_folders_are_refused_before_a_byte_is_read(tmp_path: Path, kind: str) -> None:
    media = tmp_path / "media"
    media.mkdir()
    target = media / "01.wav"
    expected = {"a link to /dev/zero": "is a symbolic link", "a character device": "is a character device",
                "a socket": "is a socket", "a folder": "is a folder"}[kind]
    sock = None
    if kind == "a link to /dev/zero":
        target.symlink_to("/dev/zero")
    elif kind == "a character device":
        try:
            os.mknod(target, 0o600 | 0o020000, os.makedev(1, 5))  # what /dev/zero is
        except PermissionError as exc:
            pytest.skip(f"cannot make a device node here: {exc}")
    elif kind == "a socket":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(target))
    else:
        target.mkdir()
    try:
        # The old code copied /dev/zero until the disk was full: give it only a small one.
        with tmpfs(tmp_path / "out", "2m") as out:
            with pytest.raises(MediaError) as err:
                within(60, lambda: copy_resources(3, plan(("01.wav", "0" * 32)), media, out / "R"))
            assert f"{target} {expected}" in str(err.value)
            assert resources(out / "R") == []
    finally:
        if sock is not None:
            sock.close()


def test_an_empty_file_is_refused_even_with_a_matching_md5(tmp_path: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    (media / "01.wav").write_bytes(b"")
    with pytest.raises(MediaError) as err:
        copy_resources(5, plan(("01.wav", EMPTY_MD5)), media, tmp_path / "R")
    text = str(err.value)
    assert text.startswith("release 5: tracks[0].audio_file='01.wav': ") and f"{media}/01.wav is empty (0 bytes)" in text
    assert "fix: replace it with the real file" in text
    assert resources(tmp_path / "R") == []


def test_a_file_larger_than_the_limit_is_refused_naming_its_size_and_the_setting(tmp_path: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    data = os.urandom(5000)
    (media / "big.wav").write_bytes(data)
    (media / "small.wav").write_bytes(data[:1000])
    with pytest.raises(MediaError) as err:
        copy_resources(6, plan(("small.wav", md5(data[:1000])), ("big.wav", md5(data))), media, tmp_path / "R",
                       max_bytes=4096)
    [problem] = err.value.problems
    assert problem.value == "big.wav"
    assert f"{media}/big.wav is 5,000 bytes, more than load.max_media_bytes = 4,096" in problem.problem
    assert "raise load.max_media_bytes" in problem.fix
    assert resources(tmp_path / "R") == []  # nothing of the rejected release stays, not even small.wav
    [copied] = copy_resources(6, plan(("big.wav", md5(data))), media, tmp_path / "R", max_bytes=5000)
    assert copied.size == 5000


def test_a_file_that_changes_while_it_is_read_is_not_passed_on(tmp_path: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    (media / "grows.wav").write_bytes(b"x" * 100)
    root = MediaRoot(media)
    with root.open("grows.wav", max_bytes=150) as f:
        assert f.size == 100
        with open(media / "grows.wav", "ab") as w:
            w.write(b"y" * 100)  # still being written by someone else
        with pytest.raises(MediaRefused, match="grew past load.max_media_bytes = 150"):
            while f.read(64):
                pass
    with root.open("grows.wav") as f:
        (media / "grows.wav").write_bytes(b"z")  # truncated and rewritten under the reader
        with pytest.raises(MediaRefused, match=r"changed while it was read \(200 bytes when opened, 1 read\)"):
            while f.read(64):
                pass


# --------------------------------------------------------------------------- unverified media (item 3)


def test_a_file_without_a_catalog_md5_is_refused_unless_unverified_media_are_allowed(tmp_path: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    (media / "a.wav").write_bytes(b"RIFF....")
    with pytest.raises(MediaError) as err:
        copy_resources(1, plan(("a.wav", None)), media, tmp_path / "R")
    text = str(err.value)
    assert f"{media}/a.wav has no MD5 in the catalog" in text
    assert "tracks.audio_md5" in text and "allow_unverified_media = true" in text
    assert resources(tmp_path / "R") == []
    [copied] = copy_resources(1, plan(("a.wav", None)), media, tmp_path / "R", allow_unverified=True)
    assert copied.md5 == md5(b"RIFF....") and not copied.verified and copied.source == "a.wav"


# --------------------------------------------------------------------------- an S3 media root


def test_an_s3_media_root_refuses_keys_leaving_the_prefix_folders_empty_and_large_objects(
    s3_server: S3Server, tmp_path: Path
) -> None:
    bucket = s3_server.bucket()
    client = s3_server.client()
    client.put_object(Bucket=bucket, Key="media/a/01.flac", Body=b"flac" * 100)
    client.put_object(Bucket=bucket, Key="media/a/empty.flac", Body=b"")
    client.put_object(Bucket=bucket, Key="media/dir/inner.flac", Body=b"x")
    client.put_object(Bucket=bucket, Key="secret/key.pem", Body=b"-----BEGIN")
    root = MediaRoot(f"s3://{bucket}/media", client_kwargs={"endpoint_url": s3_server.endpoint},
                     skip_instance_cache=True, use_listings_cache=False)
    for key in ("../secret/key.pem", "a/../../secret/key.pem", "a//01.flac", "./a/01.flac", "/secret/key.pem"):
        with pytest.raises(MediaRefused, match="would leave the media root"):
            root.open(key)
    with pytest.raises(MediaRefused, match=f"{bucket}/media/dir is a folder"):
        root.open("dir")
    with pytest.raises(MediaRefused, match="is empty"):
        root.open("a/empty.flac")
    with pytest.raises(MediaRefused, match="is 400 bytes, more than load.max_media_bytes = 399"):
        root.open("a/01.flac", max_bytes=399)
    with root.open("a/01.flac") as f:
        assert f.size == 400 and f.read(1000) == b"flac" * 100
    planned = plan(("a/empty.flac", EMPTY_MD5), ("a/01.flac", md5(b"flac" * 100)))
    with pytest.raises(MediaError, match="empty"):
        copy_resources(1, planned, root, tmp_path / "R")


# --------------------------------------------------------------------------- our own disk (item 5)


def test_a_full_disk_while_copying_media_is_the_runs_fault_not_the_releases(tmp_path: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    data = os.urandom(3 << 20)
    (media / "big.wav").write_bytes(data)
    with tmpfs(tmp_path / "full", "1m") as out:
        with pytest.raises(ResourceWriteError) as err:  # an OSError of the output, never a MediaError
            copy_resources(8, plan(("big.wav", md5(data))), media, out / "R")
        assert err.value.errno == errno.ENOSPC and err.value.path == out / "R" / "resources" / "big.wav"
        assert err.value.what == "tracks[0].audio_file of release 8 (big.wav)"
        assert resources(out / "R") == []  # no temp file left filling the disk


def test_a_read_only_output_while_copying_media_is_the_runs_fault(tmp_path: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    (media / "a.wav").write_bytes(b"RIFF a")
    with tmpfs(tmp_path / "ro", "1m", "ro") as out:
        with pytest.raises(ResourceWriteError) as err:
            copy_resources(8, plan(("a.wav", md5(b"RIFF a"))), media, out / "R")
        assert err.value.errno == errno.EROFS


# --------------------------------------------------------------------------- through `etl run`

RELEASES = 8


@pytest.fixture()
def catalog(db_url: str, tmp_path: Path) -> Iterator[sa.Engine]:
    eng = make_engine(db_url, pool_size=2)
    seed_catalog(eng, RELEASES, seed=5, media_dir=tmp_path / "media")
    yield eng
    eng.dispose()


def _first_track(conn: sa.Connection, release_id: int, audio_file: str, audio_md5: str | None) -> None:
    conn.execute(sa.text(
        "UPDATE tracks SET audio_file = :f, audio_md5 = :m WHERE track_id = "
        "(SELECT min(track_id) FROM tracks WHERE release_id = :r)"
    ), {"f": audio_file, "m": audio_md5, "r": release_id})


def sabotage(engine: sa.Engine, media: Path) -> dict[int, str]:
    """Plant the issue's media in releases 2-6; returns release -> what its rejection must name."""
    audio = media / "audio"
    (audio / "evil.wav").symlink_to("/etc/passwd")
    (audio / "evil2.wav").symlink_to("/etc/shadow")
    (audio / "ext").symlink_to("/etc")
    os.mkfifo(audio / "fifo.wav")
    (audio / "empty.wav").write_bytes(b"")
    with engine.begin() as conn:
        _first_track(conn, 2, "audio/evil.wav", md5(PASSWD))
        _first_track(conn, 3, "audio/evil2.wav", None)
        _first_track(conn, 4, "audio/ext/passwd", md5(PASSWD))
        _first_track(conn, 5, "audio/fifo.wav", "0" * 32)
        _first_track(conn, 6, "audio/empty.wav", EMPTY_MD5)
    return {2: f"{audio}/evil.wav is a symbolic link", 3: f"{audio}/evil2.wav has no MD5 in the catalog",
            4: f"{audio}/ext is a symbolic link", 5: f"{audio}/fifo.wav is a FIFO (named pipe)",
            6: f"{audio}/empty.wav is empty (0 bytes)"}


def etl(cwd: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """The real `etl`, in its own session, killed with its workers if it outlives ``timeout`` (a FIFO hang)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETL_")}
    proc = subprocess.Popen([sys.executable, "-m", "ddex_etl", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"`etl {' '.join(args)}` still running after {timeout} s")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def names(engine: sa.Engine) -> dict[int, str]:
    with engine.connect() as conn:
        return {rid: release_identifier(rid, i, g)
                for rid, i, g in conn.execute(sa.text("SELECT release_id, icpn, grid FROM releases"))}


def test_etl_run_rejects_linked_special_empty_and_unverified_media_and_ships_the_rest(
    catalog: sa.Engine, db_url: str, tmp_path: Path
) -> None:
    expected = expected_resources(catalog)  # before the sabotage: what the good releases must hold
    why = sabotage(catalog, tmp_path / "media")
    (tmp_path / "store").mkdir()
    path = write_config(tmp_path, db_url, [{"name": "store", "dpid": "PADPIDA0000000010M",
                                            "target": str(tmp_path / "store")}])
    proc = etl(tmp_path, "--config", str(path), "run", "--no-progress")
    assert proc.returncode == ExitCode.REJECTED, proc.stderr[-3000:]
    errors = etl(tmp_path, "--config", str(path), "errors", "--json")
    assert errors.returncode == 0, errors.stderr
    [store_errors] = json.loads(errors.stdout)
    rejects = {r["release_id"]: r for r in store_errors["rejected"]}
    assert set(rejects) == set(why)
    for rid, reason in why.items():
        assert reason in rejects[rid]["message"] and "fix: " in rejects[rid]["message"], rejects[rid]["message"]
        assert "tracks[0].audio_file" in rejects[rid]["message"]
    everything = proc.stdout + proc.stderr + errors.stdout
    assert PASSWD_LINE not in everything
    # The store got the other releases, whole, and nothing from /etc; the local batch holds the same.
    folders = names(catalog)
    good = {folders[rid] for rid in folders if rid not in why}
    batch = batch_of(tmp_path, "store")
    store = tree_md5(tmp_path / "store" / batch.name)
    check_batch(store, batch.name, {f: expected[f] for f in good}, good)
    assert store == tree_md5(batch)
    secrets = {md5(PASSWD), md5(Path("/etc/shadow").read_bytes()), md5(Path("/etc/hostname").read_bytes())}
    assert not secrets & set(store.values())


def test_the_dry_run_applies_the_same_rules_and_does_not_block_on_a_fifo(
    catalog: sa.Engine, db_url: str, tmp_path: Path
) -> None:
    why = sabotage(catalog, tmp_path / "media")
    path = write_config(tmp_path, db_url, [{"name": "store", "dpid": "PADPIDA0000000010M"}])
    proc = etl(tmp_path, "--config", str(path), "run", "--dry-run", "--json", timeout=120)
    assert proc.returncode == ExitCode.REJECTED, proc.stderr[-3000:]
    [plan_] = json.loads(proc.stdout)["recipients"]
    assert plan_["rejected"] == len(why) and plan_["would_build"] == RELEASES - len(why)
    reasons = {r["release_id"]: r["reason"] for r in plan_["rejects"]}
    for rid, reason in why.items():
        assert reason in reasons[rid], reasons[rid]
    assert list((tmp_path / "out").iterdir()) == []


def test_unverified_media_go_only_to_a_recipient_that_allows_them_and_are_logged(
    catalog: sa.Engine, db_url: str, tmp_path: Path
) -> None:
    demo_media.write_media(tmp_path / "media", {"audio/01-01.wav"})
    with catalog.begin() as conn:
        _first_track(conn, 3, "audio/01-01.wav", None)
    path = write_config(tmp_path, db_url, [
        {"name": "strict", "dpid": "PADPIDA0000000010M"},
        {"name": "lenient", "dpid": "PADPIDA0000000020I", "allow_unverified_media": True},
    ])
    proc = etl(tmp_path, "--config", str(path), "run", "--no-progress")
    assert proc.returncode == ExitCode.REJECTED, proc.stderr[-3000:]
    folder = names(catalog)[3]
    assert not (batch_of(tmp_path, "strict") / folder).exists()
    lenient = batch_of(tmp_path, "lenient") / folder
    assert (lenient / "resources" / "01-01.wav").is_file()
    assert (f"release 3: tracks[0].audio_file 'audio/01-01.wav' went into the batch unverified (no MD5 in the "
            f"catalog; allow_unverified_media = true): {tmp_path / 'media' / 'audio' / '01-01.wav'}") in proc.stderr


def test_max_media_bytes_is_a_setting_and_rejects_larger_files(
    catalog: sa.Engine, db_url: str, tmp_path: Path
) -> None:
    path = write_config(tmp_path, db_url, [{"name": "store", "dpid": "PADPIDA0000000010M"}])
    path.write_text(path.read_text().replace('media_root = "media"', 'media_root = "media"\nmax_media_bytes = 1000'))
    proc = etl(tmp_path, "--config", str(path), "run", "--no-progress")
    assert proc.returncode == ExitCode.REJECTED, proc.stderr[-3000:]
    assert "bytes, more than load.max_media_bytes = 1,000; fix: raise load.max_media_bytes" in proc.stderr


@pytest.mark.parametrize(("text", "where"), [
    ("[load]\nmax_media_bytes = 0\n", "load.max_media_bytes: must be at least 1"),
    ("[load]\nallow_unverified_media = \"maybe\"\n", "load.allow_unverified_media: expected true or false"),
    ('[[recipients]]\nname = "a"\ndpid = "PADPIDA0000000010M"\nallow_unverified_media = 3\n',
     "recipients[0].allow_unverified_media: expected true or false"),
])
def test_media_settings_are_validated(tmp_path: Path, text: str, where: str) -> None:
    (tmp_path / "etl.toml").write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "etl.toml", env={})
    assert any(where in p for p in err.value.problems), err.value.problems


def test_the_seam_and_the_setting_share_their_default() -> None:
    assert media_source.MAX_MEDIA_BYTES == config.MAX_MEDIA_BYTES == config.LoadConfig().max_media_bytes == 4 << 30


def test_a_recipient_inherits_or_overrides_the_unverified_media_policy(tmp_path: Path) -> None:
    (tmp_path / "etl.toml").write_text(
        "[load]\nallow_unverified_media = true\n"
        '[[recipients]]\nname = "a"\ndpid = "PADPIDA0000000010M"\n'
        '[[recipients]]\nname = "b"\ndpid = "PADPIDA0000000020I"\nallow_unverified_media = false\n'
    )
    cfg = load_config(tmp_path / "etl.toml", env={})
    a, b = (cfg.for_recipient(r) for r in cfg.recipients)
    assert (a.load.allow_unverified_media, b.load.allow_unverified_media) == (True, False)
    assert a.fingerprint() != b.fingerprint()
