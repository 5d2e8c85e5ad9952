"""The configuration fingerprint: which keys a run is tied to, and what the refusal says (issue 24 item 4).

A recipient's target, its options, the media roots and the executor do not
change a document's bytes: fixing a typo in the target URL continues the
unfinished run (no rebuild). A key that does change them supersedes it, and
both the superseding run and `etl resume` name the key and give the same
next step. Real PostgreSQL, the in-process asyncssh SFTP server of
``conftest`` (its hook fails the upload of BatchComplete, so a run stops
unfinished after its batch is built).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import SFTPServer
from test_run_delivery import RELEASES, batch_of, sftp_store, write_config

from ddex_etl.config import Config, RecipientConfig, load_config
from ddex_etl.db import make_engine
from ddex_etl.demo.seed import seed_catalog
from ddex_etl.errors import ExitCode
from ddex_etl.run import recipients
from ddex_etl.state.run_selection import ConfigPrint


@pytest.fixture()
def catalog(db_url: str, tmp_path: Path) -> Iterator[sa.Engine]:
    eng = make_engine(db_url, pool_size=2)
    seed_catalog(eng, RELEASES, seed=5, media_dir=tmp_path / "media")
    yield eng
    eng.dispose()


def _fail_batch_complete(event: str, path: str) -> str | None:
    return "drop" if event == "rename" and "BatchComplete_" in path else None


def _failed_run(cfg: Config, server: SFTPServer) -> int:
    server.hook[0] = _fail_batch_complete
    try:
        report = recipients.run(cfg, progress=False)
    finally:
        server.hook[0] = None
    assert report.exit_code == ExitCode.FAILED, report.summary()
    outcome = report.outcomes[0]
    assert outcome.report is not None and outcome.status == "failed", report.summary()
    return outcome.report.run_id


def test_fixing_the_target_url_continues_the_run_and_a_changed_key_is_named(
    catalog: sa.Engine, db_url: str, tmp_path: Path, sftp_server: SFTPServer
) -> None:
    wrong, right = sftp_server.folder(), sftp_server.folder()
    path = write_config(tmp_path, db_url, [sftp_store(sftp_server, "store-a", wrong)])
    run_id = _failed_run(load_config(path, env={}), sftp_server)

    # The typo fixed (another folder), and another worker count: the same run continues, nothing rebuilt.
    fixed = write_config(tmp_path, db_url, [sftp_store(sftp_server, "store-a", right)])
    cfg = load_config(fixed, env={}).with_overrides(run={"workers": 1})
    report = recipients.run(cfg, progress=False)
    assert report.exit_code == ExitCode.OK, report.summary()
    again = report.outcomes[0].report
    assert again is not None and again.run_id == run_id and again.resumed and again.superseded is None
    batch = batch_of(tmp_path, "store-a")
    assert (sftp_server.root / right / batch.name / f"BatchComplete_{batch.name}.xml").is_file()

    # A key that changes the messages: the refusal and the superseding run name it and agree on the fix.
    second = _failed_run(cfg, sftp_server)
    test = write_config(tmp_path, db_url, [sftp_store(sftp_server, "store-a", right, message_control="Test")])
    changed = load_config(test, env={})
    step = f"restore recipients.message_control as run {second} had it, then `etl resume {second}`"
    refused = recipients.resume(changed, second, progress=False)
    assert refused.exit_code == ExitCode.USAGE
    error = refused.outcomes[0].error or ""
    assert "recipients.message_control changed since it started" in error and step in error
    assert "fingerprint" not in error  # the keys, not two opaque hashes

    superseding = recipients.run(changed, progress=False)
    assert superseding.exit_code == ExitCode.OK, superseding.summary()
    report_ = superseding.outcomes[0].report
    assert report_ is not None and report_.superseded is not None
    assert report_.superseded["run_id"] == second
    assert "recipients.message_control changed" in report_.superseded["reason"]
    assert report_.superseded["next_step"] == f"to finish it instead, {step}"
    assert step in superseding.summary()


def test_keys_that_do_not_change_a_document_are_not_fingerprinted() -> None:
    store = RecipientConfig(name="a", dpid="PADPIDA0000000010A", target="sftp://ddex@store.example/in")
    base = Config().for_recipient(store)
    same = [
        Config().for_recipient(dataclasses.replace(store, target="sftp://ddex@store.example.com/in",
                                                   target_options={"key_file": "/k"}, media_root="/srv/m")),
        base.with_overrides(run={"executor": "dask", "scheduler": "tcp://10.0.0.5:8786", "workers": 7,
                                 "retry_for": 5.0}),
        base.with_overrides(load={"media_root": "s3://masters/audio"}, transform={"schema_dir": Path("/x")}),
    ]
    for other in same:
        assert other.fingerprint() == base.fingerprint()
    differ = {
        "recipients.dpid": Config().for_recipient(dataclasses.replace(store, dpid="PADPIDA0000000020B")),
        "transform.ern_version": base.with_overrides(transform={"ern_version": "3.8.2"}),
        "extract.chunk_size": base.with_overrides(extract={"chunk_size": 7}),
        "load.directory": base.with_overrides(load={"directory": Path("elsewhere")}),
    }
    for key, other in differ.items():
        assert other.fingerprint() != base.fingerprint()
        fields = {name: None for name in ("id", "job", "status", "mode", "extract_mode", "target", "layout",
                                          "output", "batch_id")}
        from ddex_etl.state import RunRow

        row = RunRow(**{**{f: None for f in RunRow.__dataclass_fields__}, **fields, "id": 3,
                        "config_fingerprint": base.fingerprint(), "options": {"config_keys": base.fingerprint_keys()}})
        now = ConfigPrint.of(other)
        assert not now.matches(row)
        assert now.changed(row) == [key]
        assert ConfigPrint.of(base).matches(row)


def test_a_run_recorded_before_per_key_hashes_still_continues() -> None:
    from ddex_etl.state import RunRow

    store = RecipientConfig(name="a", dpid="PADPIDA0000000010A", target="sftp://ddex@store.example/in")
    cfg = Config().for_recipient(store)
    old = RunRow(**{**{f: None for f in RunRow.__dataclass_fields__}, "id": 9,
                    "config_fingerprint": cfg.legacy_fingerprint(), "options": {"force": False}})
    assert ConfigPrint.of(cfg).matches(old)
    moved = Config().for_recipient(dataclasses.replace(store, target="sftp://ddex@store.example.com/in"))
    now = ConfigPrint.of(moved)
    assert not now.matches(old)  # the old fingerprint held the target: no way to tell which key changed
    assert "started by an older version" in now.difference(old)
    assert now.restore_hint(old) == "restore the configuration run 9 started with, then `etl resume 9`"
