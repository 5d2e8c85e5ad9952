"""`etl config check --connect`, `etl run --dry-run` and `etl run` try what delivery depends on (issue 24 item 1).

Real processes: the `etl` command in its own process, PostgreSQL, a real OpenSSH sshd, moto's S3 server, and
the in-process asyncssh server where a server must refuse posix-rename. A healthy two-store setup with
``layout = "ddex-batch"`` passes (before: always "the batch id 'preflight' is not a DDEX batch id"); each
broken part is named with its fix; `etl run` stops before building when a target fails.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest
import sqlalchemy as sa
from conftest import S3_ENV, S3Server, SFTPServer
from etl_cli import etl, one_json
from sshd_server import OpenSSHServer
from test_run_delivery import RELEASES, s3_store, sftp_store, write_config

from ddex_etl.db import make_engine
from ddex_etl.delivery.target_probe import PROBE_PREFIX, probe_target
from ddex_etl.demo.seed import seed_catalog
from ddex_etl.errors import ConfigError, DeliveryTerminalError, ExitCode


@pytest.fixture()
def catalog(db_url: str, tmp_path: Path) -> Iterator[sa.Engine]:
    eng = make_engine(db_url, pool_size=2)
    seed_catalog(eng, RELEASES, seed=5, media_dir=tmp_path / "media")
    yield eng
    eng.dispose()


def _lines(out: str) -> dict[str, str]:
    """`name: detail` of each check line, keyed by name, with its ok/FAILED."""
    found = {}
    for line in out.splitlines():
        status, _, rest = line.strip().partition("  ")
        if status in ("ok", "FAILED"):
            name, _, detail = rest.partition(": ")
            if name.startswith("media root"):
                name = "media root"
            if name == "recipient store-a" or name == "recipient store-b":
                sub, _, detail = detail.partition(": ")
                name = f"{name}: {sub}"
            found[name] = f"{status} {detail}"
    return found


def test_a_healthy_two_store_setup_passes_and_leaves_nothing_behind(
    catalog: sa.Engine, db_url: str, tmp_path: Path, openssh_server: OpenSSHServer, s3_server: S3Server
) -> None:
    folder, bucket = openssh_server.folder(), s3_server.bucket()
    write_config(tmp_path, db_url, [sftp_store(openssh_server, "store-a", folder), s3_store(s3_server, "store-b", bucket)])
    proc = etl(tmp_path, "config", "check", "--connect", env=S3_ENV)
    assert proc.returncode == ExitCode.OK, proc.stdout + proc.stderr
    checks = _lines(proc.stdout)
    assert checks["output"].startswith("ok output folder")
    assert checks["media root"].startswith("ok media root") and "media files of the catalog's first" in checks["media root"]
    sftp = checks["recipient store-a: target"]
    assert sftp.startswith("ok") and "host key trusted" in sftp and "posix-rename" in sftp
    s3 = checks["recipient store-b: target"]
    assert s3.startswith("ok") and f"bucket {bucket} reachable" in s3 and "credentials from the environment" in s3
    assert "output, media and targets are ready" in proc.stdout
    # The probe cleaned up after itself: no probe folder, no temp files on the store.
    assert not [p for p in (openssh_server.root / folder).rglob("*") if PROBE_PREFIX in str(p) or p.is_file()]


def test_each_broken_part_is_named_with_its_fix(
    catalog: sa.Engine, db_url: str, tmp_path: Path, openssh_server: OpenSSHServer, s3_server: S3Server
) -> None:
    missing_bucket = "no-such-bucket-" + str(int(time.time()))
    write_config(tmp_path, db_url, [
        sftp_store(openssh_server, "store-a", "no/such/folder"),
        s3_store(s3_server, "store-b", missing_bucket),
    ])
    empty_media = tmp_path / "empty-media"
    empty_media.mkdir()
    path = tmp_path / "etl.toml"
    path.write_text(path.read_text().replace('media_root = "media"', f'media_root = "{empty_media}"'))
    env = {k: v for k, v in S3_ENV.items() if k != "AWS_SECRET_ACCESS_KEY"}
    proc = etl(tmp_path, "config", "check", "--connect", env={**env, "AWS_SECRET_ACCESS_KEY": ""})
    assert proc.returncode == ExitCode.USAGE, proc.stdout + proc.stderr
    checks = _lines(proc.stdout)
    assert checks["media root"].startswith("FAILED") and "cannot be read there" in checks["media root"]
    assert "fix: point load.media_root" in checks["media root"]
    sftp = checks["recipient store-a: target"]
    assert sftp.startswith("FAILED") and "no/such/folder" in sftp and "fix:" in sftp
    s3 = checks["recipient store-b: target"]
    # Which credential is missing and where it is read from; not "NoCredentialsError ... check the target URL".
    assert s3.startswith("FAILED") and "AWS_SECRET_ACCESS_KEY is missing from the environment" in s3
    assert "check the target URL" not in s3
    assert checks["output"].startswith("ok")


def test_a_missing_bucket_is_named(s3_server: S3Server) -> None:
    with pytest.raises(DeliveryTerminalError, match="bucket no-such-bucket-x does not exist"):
        probe_target("s3://no-such-bucket-x/in", s3_server.options())


def test_a_server_without_posix_rename_is_named(sftp_server: SFTPServer) -> None:
    def no_rename(event: str, path: str) -> None:
        if event == "rename":
            raise asyncssh.SFTPOpUnsupported("posix-rename@openssh.com not supported")

    sftp_server.hook[0] = no_rename
    try:
        with pytest.raises(DeliveryTerminalError, match="does not support posix-rename@openssh.com"):
            probe_target(sftp_server.url(sftp_server.folder()), sftp_server.options())
    finally:
        sftp_server.hook[0] = None


def test_missing_aws_credentials_say_where_they_are_read_from(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(ConfigError) as err:
        probe_target(f"s3://{s3_server.bucket()}/in", s3_server.options())
    text = str(err.value)
    assert "none found" in text and "AWS_ACCESS_KEY_ID" in text and "~/.aws/credentials" in text


def test_etl_run_stops_before_building_and_the_dry_run_checks_the_target(
    catalog: sa.Engine, db_url: str, tmp_path: Path, s3_server: S3Server, sftp_server: SFTPServer
) -> None:
    folder = sftp_server.folder()
    write_config(tmp_path, db_url, [sftp_store(sftp_server, "store-a", folder),
                                     s3_store(s3_server, "store-b", "no-such-bucket-run")])
    dry = etl(tmp_path, "run", "--dry-run", "--json", env=S3_ENV)
    plans = {p["recipient"]: p for p in one_json(dry)["recipients"]}
    assert dry.returncode == ExitCode.FAILED, dry.stdout + dry.stderr
    assert plans["store-a"]["target_error"] is None and "reachable" in plans["store-a"]["target_check"]
    assert "bucket no-such-bucket-run does not exist" in plans["store-b"]["target_error"]
    assert list((sftp_server.root / folder).iterdir()) == []  # the dry run wrote nothing there

    t0 = time.monotonic()
    proc = etl(tmp_path, "run", "--no-progress", "--json", env=S3_ENV)
    took = time.monotonic() - t0
    report = one_json(proc)
    assert proc.returncode == ExitCode.FAILED, proc.stdout + proc.stderr
    outcome = {o["recipient"]: o for o in report["recipients"]}
    assert outcome["store-a"]["exit_code"] == ExitCode.OK
    failed = outcome["store-b"]
    assert failed["status"] == "not started" and "failed the check made before building" in failed["error"]
    assert "does not exist" in failed["error"]
    assert not (tmp_path / "out" / "store-b").exists() or not any((tmp_path / "out" / "store-b").iterdir())
    assert took < 120


def test_etl_run_names_a_missing_credential_before_building(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from ddex_etl.config import Config, RecipientConfig
    from ddex_etl.run.recipients import check_target_first

    store = RecipientConfig(name="store-b", dpid="PADPIDA0000000020B", target=f"s3://{s3_server.bucket()}/in",
                            target_options=s3_server.options())
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    with pytest.raises(ConfigError) as err:
        check_target_first(Config().for_recipient(store))
    assert err.value.exit_code == ExitCode.USAGE
    assert "recipient store-b: its target needs a setting before anything is built" in str(err.value)
    assert "AWS_SECRET_ACCESS_KEY is missing from the environment" in str(err.value)
