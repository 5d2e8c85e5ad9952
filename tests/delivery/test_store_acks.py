"""A recipient's acknowledgements over many runs: what is listed, what is recorded, what is kept locally.

Batches are written like the ddex-batch loader writes them (``make_batch``),
recorded as runs in a real state schema, delivered with ``deliver_batch`` to a
real target (a local folder, or the loopback SFTP server), and answered by the
test playing the store with acknowledgement messages of both kinds.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from ack_messages import ReleaseAnswer, current_ack, legacy_ack
from click.testing import CliRunner
from conftest import SFTPServer, make_batch

from ddex_etl import state
from ddex_etl.cli import cli
from ddex_etl.config import Config, load_config
from ddex_etl.db import make_engine
from ddex_etl.delivery.deliver import deliver_batch
from ddex_etl.delivery.store_acks import read_store_acks
from ddex_etl.delivery.upload import JOURNAL_DIR
from ddex_etl.errors import ExitCode

RELEASES = ("0602445700000", "0602445700001", "0602445700002")  # make_batch's release folders


def write_config(tmp_path: Path, db_url: str, target: str, **recipient: Any) -> Path:
    options = recipient.pop("options", {})
    # These batches carry no media: a recipient with a target would otherwise require a media root.
    recipient.setdefault("require_media", False)
    lines = [
        "[database]", f"url = {json.dumps(db_url)}",
        "[load]", 'target = "files"', 'directory = "out"', 'layout = "ddex-batch"',
        # A LiveMessage to a store may not name the demo sender.
        "[transform]", 'sender_dpid = "PADPIDA2014040101Z"', 'sender_name = "Aurora Records"',
        "[[recipients]]", 'name = "store-a"', 'dpid = "PADPIDA0000000010M"', f"target = {json.dumps(target)}",
        *(f"{k} = {json.dumps(v) if not isinstance(v, bool) else str(v).lower()}" for k, v in recipient.items()),
    ]
    if options:
        lines += ["[recipients.target_options]", *(f"{k} = {json.dumps(v)}" for k, v in options.items())]
    path = tmp_path / "etl.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def recipient_config(tmp_path: Path, db_url: str, target: str | None = None, **recipient: Any) -> Config:
    if target is None:
        (tmp_path / "store").mkdir(exist_ok=True)
        target = str(tmp_path / "store")
    cfg = load_config(write_config(tmp_path, db_url, target, **recipient), env={})
    return cfg.for_recipient(cfg.recipients[0])


def deliver(cfg: Config, batch_id: str, *, status: str = "succeeded", upload: bool = True) -> Path:
    """A run of ``cfg``'s recipient that wrote ``batch_id`` (three releases) and, when it succeeded, delivered it."""
    directory = Path(cfg.load.directory)
    directory.mkdir(parents=True, exist_ok=True)
    batch = make_batch(directory, batch_id, releases=3, audio_size=200, tracks=1)
    engine = make_engine(cfg.database.url, pool_size=1)
    try:
        state.ensure_current(engine, cfg.database.state_schema)
        with engine.begin() as conn:
            run = state.create_run(conn, cfg.database.state_schema, job=cfg.run.job, mode="full", extract_mode="keyset",
                                   fingerprint=cfg.fingerprint(), target="files", layout="ddex-batch",
                                   output=str(batch), batch_id=batch_id)
            if upload:
                assert cfg.recipient is not None
                deliver_batch(cfg.recipient, batch, run_id=run.id)
            state.finish_run(conn, cfg.database.state_schema, run.id, status=status)
    finally:
        engine.dispose()
    return batch


def answer(store: Path, folder: str, release: str, data: bytes, *, name: str | None = None) -> None:
    """The store's acknowledgement of ``release``, beside its message (legacy) or as named."""
    path = store / folder / release / (name or f"ACK_{release}.xml")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def ack_batch_rows(cfg: Config) -> dict[str, tuple[int, int, bool]]:
    engine = make_engine(cfg.database.url, pool_size=1)
    try:
        with engine.connect() as conn:
            found = state.ack_batches(conn, cfg.database.state_schema, cfg.run.job,
                                      [f"2026010{d}120000000" for d in range(1, 8)])
    finally:
        engine.dispose()
    return {b: (a.releases, a.acknowledged, a.settled) for b, a in found.items()}


B1, B2, B3, B4, B5 = (f"2026010{d}120000000" for d in range(1, 6))


def test_a_batch_answered_in_full_is_never_listed_again(db_url: str, tmp_path: Path) -> None:
    cfg = recipient_config(tmp_path, db_url)
    store = tmp_path / "store"
    for b in (B1, B2, B3):
        deliver(cfg, b)
    for r in RELEASES:
        answer(store, B1, r, legacy_ack(r))  # B1: every release answered
    answer(store, B2, RELEASES[0], legacy_ack(RELEASES[0], "ResourceMissing", "no cover"))
    answer(store, B2, RELEASES[1], current_ack([ReleaseAnswer(RELEASES[1], "ReleaseReceivedByReleaseDistributor")],
                                               batch_id=B2), name=f"acknowledgements/ACK_{B2}_{RELEASES[1]}.xml")

    first = read_store_acks(cfg)
    assert (first.batches, first.settled, first.read) == (3, 0, 5)
    assert first.listings == 3 * (1 + 3) + 1  # each batch folder and release folder once; one acknowledgements/
    assert [a.release for a in first.rejected] == [RELEASES[0]] and first.rejected[0].batch_id == B2
    assert ack_batch_rows(cfg) == {B1: (3, 3, True), B2: (3, 1, False), B3: (3, 0, False)}

    second = read_store_acks(cfg)
    assert (second.settled, second.read, second.new) == (1, 1, 0)  # B1 skipped; only the pending answer re-read
    # B2: its folder and the two release folders without a final answer (one has acknowledgements/); B3: all four
    assert second.listings == (1 + 2 + 1) + (1 + 3)

    for r in RELEASES:
        answer(store, B3, r, legacy_ack(r))
    answer(store, B2, RELEASES[1], current_ack([ReleaseAnswer(RELEASES[1])], batch_id=B2),
           name=f"acknowledgements/ACK_{B2}_{RELEASES[1]}.xml")
    answer(store, B2, RELEASES[2], legacy_ack(RELEASES[2]))
    read_store_acks(cfg)
    assert ack_batch_rows(cfg) == {B1: (3, 3, True), B2: (3, 3, True), B3: (3, 3, True)}
    last = read_store_acks(cfg)
    assert (last.settled, last.listings, last.read) == (3, 0, 0)  # nothing left to look at
    assert last.rejected == []  # B3 delivered the rejected release again, and the store took it


def test_the_batch_folder_follows_the_recipients_choreography_version(
    db_url: str, tmp_path: Path, sftp_server: SFTPServer
) -> None:
    folder = sftp_server.folder()
    cfg = recipient_config(tmp_path, db_url, sftp_server.url(folder), batch_naming="N_{batch_id}",
                           options=sftp_server.options())
    deliver(cfg, B1)
    remote = sftp_server.root / folder
    assert sorted(p.name for p in remote.iterdir() if not p.name.startswith(".")) == [f"N_{B1}"]  # 1.6+: priority N
    assert (remote / f"N_{B1}" / f"BatchComplete_{B1}.xml").is_file()  # the manifest keeps the bare batch id
    answer(remote, f"N_{B1}", "acknowledgements", current_ack(
        [ReleaseAnswer(RELEASES[2], "ProcessingErrorAtReleaseDistributor", "ResourceCorrupt", error_text="bad art")],
        batch_id=B1), name=f"ACK_{B1}_{RELEASES[2]}.xml")
    summary = read_store_acks(cfg)
    [rejected] = summary.rejected
    assert (rejected.release, rejected.status, rejected.error_text) == (
        RELEASES[2], "ProcessingErrorAtReleaseDistributor", "bad art")
    assert rejected.message_file == f"N_{B1}/{RELEASES[2]}/{RELEASES[2]}.xml"

    # A batch delivered before the store moved to 1.6 lies under its bare id: still found, once.
    plain = tmp_path / "plain"
    plain.mkdir()
    cfg_plain = recipient_config(plain, db_url, sftp_server.url(folder), options=sftp_server.options())
    deliver(cfg_plain, B2)
    answer(remote, B2, RELEASES[0], legacy_ack(RELEASES[0], "ResourceMissing"))
    summary = read_store_acks(cfg)
    assert {(a.batch_id, a.release) for a in summary.rejected} == {(B1, RELEASES[2]), (B2, RELEASES[0])}


def test_a_fingerprint_ignores_the_new_settings_at_their_defaults(db_url: str, tmp_path: Path) -> None:
    base = recipient_config(tmp_path, db_url)
    same = recipient_config(tmp_path, db_url, batch_naming="{batch_id}", keep_batches=9, ack_folder="outbox",
                            keep_unacknowledged=False)
    other = recipient_config(tmp_path, db_url, batch_naming="N_{batch_id}")
    assert base.fingerprint() == same.fingerprint() != other.fingerprint()  # only where a batch lands counts


def test_acknowledgements_in_the_recipients_ack_folder_are_tied_to_their_batch(db_url: str, tmp_path: Path) -> None:
    cfg = recipient_config(tmp_path, db_url, ack_folder="outbox/acks")
    store = tmp_path / "store"
    deliver(cfg, B1)
    deliver(cfg, B2)
    outbox = store / "outbox" / "acks"
    (outbox / B2).mkdir(parents=True)
    # by the batch id in its name (choreography 1.7's ACK_<batch>_<release>.xml) ...
    (outbox / f"ACK_{B1}_{RELEASES[1]}.xml").write_bytes(current_ack(
        [ReleaseAnswer(RELEASES[1], "ProcessingErrorAtReleaseDistributor")], batch_id=None))
    # ... by its BatchId ...
    (outbox / "ACK_whatever.xml").write_bytes(current_ack([ReleaseAnswer(RELEASES[0])], batch_id=B1))
    # ... and by the sub-folder named after the batch
    (outbox / B2 / f"ACK_{RELEASES[2]}.xml").write_bytes(legacy_ack(RELEASES[2], "NewReleaseMessageInvalid"))
    summary = read_store_acks(cfg)
    assert summary.problems == []
    assert {(a.batch_id, a.release, a.accepted) for a in summary.rejected} == {
        (B1, RELEASES[1], False), (B2, RELEASES[2], False)}
    assert summary.read == 3
    assert summary.listings == 2 + 1 + 1  # the two batch folders once (no release folders), the outbox, its B2/


def _local(cfg: Config, batch_id: str) -> tuple[bool, list[str]]:
    directory = Path(cfg.load.directory)
    return (directory / batch_id).exists(), sorted(p.name for p in (directory / JOURNAL_DIR).glob(f"{batch_id}.*"))


@pytest.mark.parametrize("keep_unacknowledged", [True, False])
def test_old_local_batches_go_once_the_store_has_answered_for_them(
    db_url: str, tmp_path: Path, keep_unacknowledged: bool
) -> None:
    cfg = recipient_config(tmp_path, db_url, keep_batches=2, keep_unacknowledged=keep_unacknowledged)
    store = tmp_path / "store"
    deliver(cfg, B1)  # old, answered in full
    deliver(cfg, B2)  # old, never answered
    deliver(cfg, B3, status="failed", upload=False)  # old, not finished: `etl resume` needs it
    deliver(cfg, B4)
    deliver(cfg, B5)  # the newest two are kept whatever happens
    for r in RELEASES:
        answer(store, B1, r, legacy_ack(r))
        answer(store, B5, r, legacy_ack(r))
    assert _local(cfg, B1)[1]  # the upload journal is there
    directory = Path(cfg.load.directory)
    elsewhere = tmp_path / "elsewhere" / B2
    elsewhere.mkdir(parents=True)

    summary = read_store_acks(cfg)
    assert summary.pruned == ([B1] if keep_unacknowledged else [B2, B1])
    assert summary.kept_unacknowledged == ([B2] if keep_unacknowledged else [])
    assert _local(cfg, B1) == (False, [])
    assert _local(cfg, B2)[0] is keep_unacknowledged
    assert _local(cfg, B3)[0] and _local(cfg, B4)[0] and _local(cfg, B5)[0]
    assert elsewhere.is_dir() and (directory / B3 / f"BatchComplete_{B3}.xml").is_file()


def test_keep_batches_zero_keeps_everything(db_url: str, tmp_path: Path) -> None:
    cfg = recipient_config(tmp_path, db_url, keep_batches=0)
    for b in (B1, B2):
        deliver(cfg, b)
        for r in RELEASES:
            answer(tmp_path / "store", b, r, legacy_ack(r))
    assert read_store_acks(cfg).pruned == []
    assert _local(cfg, B1)[0] and _local(cfg, B2)[0]


def test_a_link_named_like_a_batch_is_never_followed_when_pruning(db_url: str, tmp_path: Path) -> None:
    cfg = recipient_config(tmp_path, db_url, keep_batches=1)
    deliver(cfg, B1)
    deliver(cfg, B2)
    for r in RELEASES:
        answer(tmp_path / "store", B1, r, legacy_ack(r))
    directory = Path(cfg.load.directory)
    precious = tmp_path / "precious"
    (directory / B1).rename(precious)
    (directory / B1).symlink_to(precious)
    read_store_acks(cfg)
    assert (precious / RELEASES[0] / f"{RELEASES[0]}.xml").is_file() and (directory / B1).is_symlink()


# --------------------------------------------------------------------------- what a store writes, as we show it

# XML 1.0 lets a store send line breaks and C1 controls (U+009B is a terminal's CSI): all shown escaped.
FAKE = "took the release\nERROR pipeline [job nightly, run 9]: database is corrupt; fix: DROP SCHEMA ddex_etl\x9b2J"


def test_store_text_cannot_forge_a_line_in_etl_acks_errors_or_the_log(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = recipient_config(tmp_path, db_url)
    store = tmp_path / "store"
    deliver(cfg, B1)
    answer(store, B1, RELEASES[0], legacy_ack(RELEASES[0], "ResourceCorrupt", FAKE))
    answer(store, B1, RELEASES[1], legacy_ack(RELEASES[1]), name="ACK_x\nERROR pipeline forged.xml")
    for name in list(os.environ):
        if name.startswith("ETL_"):
            monkeypatch.delenv(name)
    runner = CliRunner()
    path = tmp_path / "etl.toml"
    for args in (["acks"], ["errors"]):
        result = runner.invoke(cli, ["--config", str(path), *args])
        assert result.exit_code in (0, ExitCode.REJECTED), result.output
        lines = (result.stdout + result.stderr).splitlines()
        assert not [line for line in lines if line.lstrip().startswith("ERROR")]  # no forged log line
        assert "\x9b" not in result.stdout + result.stderr
        assert "took the release\\nERROR pipeline [job nightly, run 9]: database is corrupt" in result.stdout
        assert "DROP SCHEMA ddex_etl\\x9b2J" in result.stdout
        if args == ["acks"]:
            assert "ACK_x\\nERROR pipeline forged.xml" in result.stdout + result.stderr


def test_the_json_of_etl_acks_keeps_the_stores_text_as_written(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = recipient_config(tmp_path, db_url)
    deliver(cfg, B1)
    answer(tmp_path / "store", B1, RELEASES[0], legacy_ack(RELEASES[0], "ResourceCorrupt", FAKE))
    for name in list(os.environ):
        if name.startswith("ETL_"):
            monkeypatch.delenv(name)
    result = CliRunner().invoke(cli, ["--config", str(tmp_path / "etl.toml"), "acks", "--json"])
    assert result.exit_code == ExitCode.REJECTED, result.output
    [rejected] = json.loads(result.stdout)["recipients"][0]["rejected"]
    assert rejected["error_text"] == FAKE  # JSON escapes it; the data is not altered
    engine = make_engine(db_url, pool_size=1)
    try:
        with engine.connect() as conn:
            stored = conn.execute(sa.text("SELECT error_text FROM ddex_etl.store_acks")).scalar_one()
    finally:
        engine.dispose()
    assert stored == FAKE


def test_a_batch_the_store_moved_away_costs_one_listing_after_the_first_look(db_url: str, tmp_path: Path) -> None:
    import shutil

    cfg = recipient_config(tmp_path, db_url)
    deliver(cfg, B1)
    shutil.rmtree(tmp_path / "store" / B1)  # ingested and moved away, as some stores do
    first = read_store_acks(cfg)
    assert first.listings == 1 + 3  # its folder, then once each under the other choreography names
    assert read_store_acks(cfg).listings == 1
