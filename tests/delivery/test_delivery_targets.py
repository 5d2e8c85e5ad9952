"""Targets by URL against real servers on loopback: a local folder, asyncssh SFTP, OpenSSH's sshd, moto S3."""
from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import SFTP_PASSWORD, S3Proxy, S3Server, SFTPServer
from sshd_server import OpenSSHServer

from ddex_etl.delivery import UnsafePathError, mask_url, open_target, safe_relpath
from ddex_etl.delivery.targets import TEMP_DIR, Target
from ddex_etl.errors import ConfigError, DeliveryTerminalError, DeliveryTransientError

# --------------------------------------------------------------------------- paths (pure)

SAFE = ["a.xml", "20260101/0602445790001/0602445790001.xml", "b/resources/01 Intro.flac", "ü/ñ.jpg"]
UNSAFE = [
    ("", "empty"),
    ("/etc/passwd", "absolute"),
    ("../x.xml", "'..'"),
    ("a/../../x.xml", "'..'"),
    ("a//b.xml", "empty"),
    ("a/./b.xml", "'.'"),
    ("a\\..\\b.xml", "backslash"),
    ("a/b\x00.xml", "control character"),
    ("a/b\n.xml", "control character"),
    ("C:/Windows/x", "absolute"),
    ("s3://other-bucket/x", "URL"),
    ("a/" + "x" * 300, "longer than"),
]


@pytest.mark.parametrize("path", SAFE)
def test_safe_paths_pass_unchanged(path: str) -> None:
    assert safe_relpath(path) == path


@pytest.mark.parametrize(("path", "why"), UNSAFE)
def test_unsafe_paths_are_refused_with_the_reason(path: str, why: str) -> None:
    with pytest.raises(UnsafePathError) as err:
        safe_relpath(path, what="tracks[0].audio_file")
    assert why in str(err.value) and "tracks[0].audio_file" in str(err.value) and "fix:" in str(err.value)
    assert not err.value.retryable


def test_mask_url_hides_the_password() -> None:
    assert mask_url("sftp://ddex:s3cret@host:2222/in") == "sftp://ddex:***@host:2222/in"
    assert mask_url("s3://bucket/prefix") == "s3://bucket/prefix"


# --------------------------------------------------------------------------- one fixture per kind of target


@dataclass
class Place:
    """A target and a way to look at the real storage behind it, bypassing the target."""

    target: Target
    kind: str
    files: Any  # () -> {path relative to the storage root (temp area included): bytes}
    root_name: str  # the target's folder/prefix name inside the storage root


@pytest.fixture(params=["file", "sftp", "openssh", "s3"])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Place]:
    if request.param == "file":
        storage = tmp_path / "storage"
        (storage / "out").mkdir(parents=True)
        target = open_target(f"file://{storage / 'out'}")
        yield Place(target, "file", lambda: _dir_files(storage), "out")
    elif request.param in ("sftp", "openssh"):
        server: SFTPServer | OpenSSHServer = request.getfixturevalue(
            "sftp_server" if request.param == "sftp" else "openssh_server")
        folder = server.folder()
        target = open_target(server.url(folder), **server.options())
        yield Place(target, "sftp", lambda: _dir_files(server.root / folder, prefix=folder), folder)
    else:
        s3: S3Server = request.getfixturevalue("s3_server")
        bucket = s3.bucket()
        target = open_target(f"s3://{bucket}/out", **s3.options())
        client = s3.client()
        yield Place(target, "s3", lambda: _bucket_files(client, bucket), "out")
    target.close()


def _dir_files(root: Path, prefix: str = "") -> dict[str, bytes]:
    out = {}
    for p in root.rglob("*"):
        if p.is_file():
            rel = p.relative_to(root).as_posix()
            out[f"{prefix}/{rel}" if prefix else rel] = p.read_bytes()
    return out


def _bucket_files(client: Any, bucket: str) -> dict[str, bytes]:
    listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {o["Key"]: client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}


def test_put_read_list_remove(place: Place, tmp_path: Path) -> None:
    t = place.target
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(300_000))
    t.put_bytes("B/R/R.xml", b"<one/>")
    t.put_bytes("B/R/R.xml", b"<second/>")  # replaced
    t.put_file("B/R/resources/a.flac", big)
    assert t.exists("B/R/R.xml") and not t.exists("B/R/nothing.xml")
    assert t.read_bytes("B/R/R.xml") == b"<second/>"
    assert t.md5("B/R/resources/a.flac") == hashlib.md5(big.read_bytes()).hexdigest()
    listed = t.list("B")
    assert sorted(listed) == ["B/R/R.xml", "B/R/resources/a.flac"]
    assert listed["B/R/resources/a.flac"].size == 300_000
    if place.kind == "s3":  # a single PUT: the ETag is the MD5 of the whole body
        assert listed["B/R/R.xml"].md5 == hashlib.md5(b"<second/>").hexdigest()
    t.remove("B/R/R.xml")
    t.remove("B/R/R.xml")  # removing what is gone is fine
    assert sorted(t.list("B")) == ["B/R/resources/a.flac"]
    assert t.list("nothing-here") == {}
    # what really is in storage: the two files under the target's folder, no temp file anywhere
    stored = place.files()
    assert stored[f"{place.root_name}/B/R/resources/a.flac"] == big.read_bytes()
    assert [k for k in stored if TEMP_DIR in k or k.endswith(".part")] == []


@pytest.mark.parametrize(("path", "why"), UNSAFE[1:8])
def test_paths_that_escape_are_refused_and_write_nothing(place: Place, path: str, why: str) -> None:
    before = place.files()
    for call in (lambda: place.target.put_bytes(path, b"x"), lambda: place.target.read_bytes(path),
                 lambda: place.target.remove(path), lambda: place.target.exists(path)):
        with pytest.raises(UnsafePathError, match=why):
            call()
    assert place.files() == before


def test_a_missing_local_folder_is_reported_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(DeliveryTerminalError, match="does not exist; fix: create it"):
        open_target(str(tmp_path / "nope"))


# --------------------------------------------------------------------------- SFTP specifics


@pytest.fixture(params=["asyncssh", "openssh"])
def any_sftp(request: pytest.FixtureRequest) -> SFTPServer | OpenSSHServer:
    """The in-process asyncssh server, then a real OpenSSH sshd: what holds for one must hold for the other."""
    server: SFTPServer | OpenSSHServer = request.getfixturevalue(
        "sftp_server" if request.param == "asyncssh" else "openssh_server")
    return server


def test_sftp_replace_renames_a_new_file_into_place(any_sftp: SFTPServer | OpenSSHServer) -> None:
    folder = any_sftp.folder()
    target = open_target(any_sftp.url(folder), **any_sftp.options())
    final = any_sftp.root / folder / "B" / "R" / "R.xml"
    target.put_bytes("B/R/R.xml", b"<first/>")
    first_inode = final.stat().st_ino
    target.put_bytes("B/R/R.xml", b"<second/>")
    # posix-rename of a new file over the old one: a new inode; writing in place would keep the old one
    assert final.stat().st_ino != first_inode and final.read_bytes() == b"<second/>"
    assert sorted(p.name for p in final.parent.iterdir()) == ["R.xml"]  # no temp name in the batch folder
    partial = any_sftp.root / folder / TEMP_DIR
    assert partial.is_dir() and [p for p in partial.rglob("*") if p.is_file()] == []
    assert target.clean_temp("B") == 0
    target.close()


def test_sftp_clean_temp_removes_what_a_killed_upload_left(any_sftp: SFTPServer | OpenSSHServer) -> None:
    folder = any_sftp.folder()
    left = any_sftp.root / folder / TEMP_DIR / "B" / "123-abc.part"
    left.parent.mkdir(parents=True)
    left.write_bytes(b"half a fi")
    target = open_target(any_sftp.url(folder), **any_sftp.options())
    assert target.list() == {}  # temp files are never listed
    assert target.clean_temp("B") == 1
    assert not left.parent.exists()
    target.close()


def test_sftp_refuses_a_host_key_it_does_not_know(any_sftp: SFTPServer | OpenSSHServer, tmp_path: Path) -> None:
    other = tmp_path / "known_hosts"
    other.write_text(f"[127.0.0.1]:{any_sftp.port} ssh-ed25519 "
                     "AAAAC3NzaC1lZDI1NTE5AAAAIDmmJBjbKJtPdnPXnqE6FjlIUgXL9WFLdOEkZjOLIPYd\n")
    options = {**any_sftp.options(), "known_hosts": str(other)}
    with pytest.raises(DeliveryTerminalError) as err:
        open_target(any_sftp.url("x"), **options)
    assert "host key" in str(err.value) and "known_hosts" in str(err.value)
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    with pytest.raises(DeliveryTerminalError, match="host key is unknown"):
        open_target(any_sftp.url("x"), **{**any_sftp.options(), "known_hosts": str(empty)})


def test_sftp_password_only_from_the_environment(sftp_server: SFTPServer, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = sftp_server.folder()
    options = {"known_hosts": str(sftp_server.known_hosts), "allow_agent": False, "password_env": "STORE_SFTP_PW"}
    monkeypatch.delenv("STORE_SFTP_PW", raising=False)
    with pytest.raises(ConfigError, match=r"\$STORE_SFTP_PW, which is not set"):
        open_target(sftp_server.url(folder), **options)
    monkeypatch.setenv("STORE_SFTP_PW", SFTP_PASSWORD)
    target = open_target(sftp_server.url(folder), **options)
    target.put_bytes("a.xml", b"<a/>")
    assert (sftp_server.root / folder / "a.xml").read_bytes() == b"<a/>"
    assert SFTP_PASSWORD not in target.describe() and SFTP_PASSWORD not in repr(target)
    target.close()
    monkeypatch.setenv("STORE_SFTP_PW", "wrong")
    with pytest.raises(DeliveryTerminalError, match="refused the login"):
        open_target(sftp_server.url(folder), **{**options, "retries": 1})
    url = f"sftp://ddex:{SFTP_PASSWORD.replace(' ', '%20')}@127.0.0.1:{sftp_server.port}/{folder}"
    with pytest.raises(ConfigError) as err:
        open_target(url, **options)
    assert "password in the URL is refused" in str(err.value) and "%20" not in str(err.value)


@pytest.mark.parametrize("option", ["password", "secret", "aws_secret_access_key", "token", "key", "passphrase"])
def test_options_that_would_hold_a_secret_are_refused(option: str) -> None:
    with pytest.raises(ConfigError) as err:
        open_target("s3://bucket/prefix", **{option: "hunter2"})
    assert option in str(err.value) and "hunter2" not in str(err.value)


def test_unknown_options_and_bad_urls_are_configuration_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown option"):
        open_target(str(tmp_path), colour="blue")
    with pytest.raises(ConfigError, match="no host"):
        open_target("sftp:///incoming")
    with pytest.raises(ConfigError, match="three slashes"):
        open_target("file://relative/folder")
    with pytest.raises(ConfigError, match="host_key_policy"):
        open_target("sftp://u@127.0.0.1:1/x", host_key_policy="trust-everyone")


# --------------------------------------------------------------------------- S3 specifics


def test_s3_puts_whole_objects_and_leaves_no_multipart_upload(s3_server: S3Server, tmp_path: Path) -> None:
    bucket = s3_server.bucket()
    target = open_target(f"s3://{bucket}/deliveries", **s3_server.options())
    data = os.urandom(2_000_000)
    (tmp_path / "a.flac").write_bytes(data)
    target.put_file("B/R/resources/a.flac", tmp_path / "a.flac")
    client = s3_server.client()
    head = client.head_object(Bucket=bucket, Key="deliveries/B/R/resources/a.flac")
    assert head["ETag"].strip('"') == hashlib.md5(data).hexdigest()  # one PUT, not parts (parts give md5-N)
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_s3_missing_bucket_is_terminal_with_the_fix(s3_server: S3Server) -> None:
    target = open_target("s3://no-such-bucket-14/x", **{**s3_server.options(), "retries": 2})
    with pytest.raises(DeliveryTerminalError, match="fix:") as err:
        target.put_bytes("a.xml", b"<a/>")
    assert "s3://no-such-bucket-14/x" in str(err.value)


def test_s3_backs_off_on_503_slowdown_then_succeeds(s3_server: S3Server) -> None:
    bucket = s3_server.bucket()
    proxy = S3Proxy(s3_server.endpoint, slowdowns=3)
    try:
        target = open_target(f"s3://{bucket}/p", endpoint_url=proxy.url, retries=5, backoff=0.01)
        target.put_bytes("B/a.xml", b"<a/>")
        assert proxy.refused == 3 and proxy.forwarded_puts == 1  # our retries, not the library's
        assert target.retried == 3
        assert s3_server.client().get_object(Bucket=bucket, Key="p/B/a.xml")["Body"].read() == b"<a/>"
        proxy.slowdowns = 10
        with pytest.raises(DeliveryTransientError) as err:
            target.put_bytes("B/b.xml", b"<b/>")
        assert "slow down" in str(err.value) and "gave up after 5 attempts" in str(err.value)
        assert err.value.retryable
    finally:
        proxy.close()


def test_any_other_fsspec_url_is_an_object_store_target() -> None:
    target = open_target("memory://deliveries-14/in")  # fsspec's own in-process filesystem
    target.put_bytes("B/R/R.xml", b"<m/>")
    assert target.read_bytes("B/R/R.xml") == b"<m/>" and sorted(target.list("B")) == ["B/R/R.xml"]
    assert not target.renames and target.describe() == "memory://deliveries-14/in"
    target.remove("B/R/R.xml")


def test_a_protocol_whose_package_is_missing_says_what_to_install() -> None:
    pytest.importorskip("fsspec")
    try:
        import gcsfs  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="gcsfs for gs://"):
            open_target("gs://bucket/prefix")
    else:
        pytest.skip("gcsfs is installed here")
