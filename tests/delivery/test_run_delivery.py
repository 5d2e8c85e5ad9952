"""`etl run` delivering to stores: recipients, batches with resources, uploads to loopback SFTP and S3,
kills during the upload, store acknowledgements in `etl errors`, the dry run.

Every test seeds a small demo catalog whose media files really exist (``seed_catalog(media_dir=...)``)
and runs the recipients the way ``etl run`` does (``recipients.run``, or a real ``etl`` subprocess
for the kills), against the in-process asyncssh SFTP server and moto's S3 server of ``conftest``
(and once against a real OpenSSH sshd).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from conftest import S3Proxy, S3Server, SFTPServer, s3_tree_md5, tree_md5
from messages import without_header
from sshd_server import OpenSSHServer

from ddex_etl import run as run_api
from ddex_etl.cli import cli
from ddex_etl.config import Config, load_config
from ddex_etl.db import make_engine
from ddex_etl.demo.seed import seed_catalog
from ddex_etl.errors import ExitCode
from ddex_etl.load import release_identifier
from ddex_etl.run import recipients

RELEASES = 8


@pytest.fixture()
def catalog(db_url: str, tmp_path: Path) -> Iterator[sa.Engine]:
    eng = make_engine(db_url, pool_size=2)
    seed_catalog(eng, RELEASES, seed=5, media_dir=tmp_path / "media")
    yield eng
    eng.dispose()


def _toml_value(v: Any) -> str:
    return json.dumps(v) if not isinstance(v, bool) else ("true" if v else "false")


def write_config(tmp_path: Path, db_url: str, stores: list[dict[str, Any]], *, target: str = "files") -> Path:
    """An etl.toml with these [[recipients]] (each dict: keys, plus "options" for target_options)."""
    lines = [
        "[database]", f"url = {json.dumps(db_url)}",
        "[extract]", "chunk_size = 3",
        "[load]", f'target = "{target}"', 'directory = "out"', 'layout = "ddex-batch"', 'media_root = "media"',
        "[run]", "workers = 2", "retry_for = 2.0", "retry_delay = 0.1",
    ]
    for store in stores:
        lines.append("[[recipients]]")
        options = store.get("options", {})
        for k, v in store.items():
            if k != "options":
                lines.append(f"{k} = {_toml_value(v)}")
        if options:
            lines.append("[recipients.target_options]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in options.items()]
    path = tmp_path / "etl.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "out").mkdir(exist_ok=True)
    return path


def sftp_store(server: SFTPServer | OpenSSHServer, name: str, folder: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "dpid": "PADPIDA0000000010A", "target": server.url(folder), "options": server.options(),
            **extra}


def s3_store(server: S3Server, name: str, bucket: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "dpid": "PADPIDA0000000020B", "target": f"s3://{bucket}/in",
            "options": server.options(), **extra}


def expected_resources(engine: sa.Engine) -> dict[str, dict[str, str]]:
    """Per release folder: resources/<file name> -> the catalog's MD5."""
    out: dict[str, dict[str, str]] = {}
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            """SELECT r.release_id, r.icpn, r.grid, t.audio_file, t.audio_md5 FROM releases r JOIN tracks t USING (release_id)
            UNION ALL SELECT r.release_id, r.icpn, r.grid, i.file, i.md5 FROM releases r JOIN release_images i USING (release_id)"""
        ))
        for rid, icpn, grid, path, md5 in rows:
            out.setdefault(release_identifier(rid, icpn, grid), {})[f"resources/{path.rsplit('/', 1)[1]}"] = md5
    return out


def check_batch(tree: dict[str, str], batch_id: str, expected: dict[str, dict[str, str]], folders: set[str]) -> None:
    """A complete batch: for each release folder its message and every resource, MD5 as in the catalog."""
    assert f"BatchComplete_{batch_id}.xml" in tree
    seen = {p.split("/")[0] for p in tree if "/" in p}
    assert seen == folders
    for folder in folders:
        assert f"{folder}/{folder}.xml" in tree
        resources = {p.split("/", 1)[1]: md5 for p, md5 in tree.items() if p.startswith(f"{folder}/resources/")}
        assert resources == expected[folder], folder


def batch_of(tmp_path: Path, recipient: str) -> Path:
    batches = [p for p in (tmp_path / "out" / recipient).iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(batches) == 1, batches
    return batches[0]


def sftp_tree(server: SFTPServer, folder: str, batch_id: str) -> dict[str, str]:
    return tree_md5(server.root / folder / batch_id)


def visible_temp_names(root: Path) -> list[str]:
    return [str(p.relative_to(root)) for p in root.rglob("*") if p.name.startswith(".") or p.name.endswith(".etl-tmp")]


# --------------------------------------------------------------------------- two stores, one run


def test_two_recipients_get_their_own_complete_batch_with_resources(
    catalog: sa.Engine, db_url: str, tmp_path: Path, sftp_server: SFTPServer, s3_server: S3Server
) -> None:
    folder, bucket = sftp_server.folder(), s3_server.bucket()
    path = write_config(tmp_path, db_url, [
        sftp_store(sftp_server, "store-a", folder, ern_version="4.3"),
        s3_store(s3_server, "store-b", bucket, ern_version="3.8.2", message_control="Test"),
    ])
    cfg = load_config(path, env={})
    report = recipients.run(cfg, progress=False)
    assert report.exit_code == 0, report.summary()
    assert [(o.recipient, o.status) for o in report.outcomes] == [("store-a", "succeeded"), ("store-b", "succeeded")]
    expected = expected_resources(catalog)
    folders = set(expected)
    assert len(folders) == RELEASES

    a = batch_of(tmp_path, "store-a")
    remote_a = sftp_tree(sftp_server, folder, a.name)
    assert remote_a == tree_md5(a)  # byte for byte what the run wrote locally
    check_batch(remote_a, a.name, expected, folders)
    assert not visible_temp_names(sftp_server.root / folder / a.name)

    b = batch_of(tmp_path, "store-b")
    remote_b = s3_tree_md5(s3_server.client(), bucket, f"in/{b.name}")
    assert remote_b == tree_md5(b)
    check_batch(remote_b, b.name, expected, folders)
    assert a.name != b.name

    # Each store's messages: its own ERN version, party id and control type; URIs are the relative resources.
    one = sorted(folders)[0]
    msg_a = (a / one / f"{one}.xml").read_bytes()
    msg_b = (b / one / f"{one}.xml").read_bytes()
    assert b"http://ddex.net/xml/ern/43" in msg_a and b"PADPIDA0000000010A" in msg_a
    assert b"http://ddex.net/xml/ern/382" in msg_b and b"PADPIDA0000000020B" in msg_b
    assert b"<MessageControlType>TestMessage</MessageControlType>" in msg_b
    uris = set(re.findall(rb"<URI>([^<]+)</URI>", msg_a))
    assert uris and all(u.startswith(b"resources/") for u in uris)
    assert {u.decode() for u in uris} == set(expected[one])
    assert report.outcomes[0].report is not None and report.outcomes[0].report.delivery["complete"]


def test_a_run_delivers_to_a_real_openssh_server(
    catalog: sa.Engine, db_url: str, tmp_path: Path, openssh_server: OpenSSHServer
) -> None:
    folder = openssh_server.folder()
    path = write_config(tmp_path, db_url, [sftp_store(openssh_server, "store-a", folder)])
    report = recipients.run(load_config(path, env={}), progress=False)
    assert report.exit_code == 0, report.summary()
    batch = batch_of(tmp_path, "store-a")
    remote = tree_md5(openssh_server.root / folder / batch.name)
    assert remote == tree_md5(batch)  # byte for byte what the run wrote locally
    expected = expected_resources(catalog)
    check_batch(remote, batch.name, expected, set(expected))
    assert not visible_temp_names(openssh_server.root / folder / batch.name)
    outcome = report.outcomes[0].report
    assert outcome is not None and outcome.delivery["complete"]


def test_the_output_table_keeps_one_row_per_recipient_and_release(catalog: sa.Engine, db_url: str, tmp_path: Path) -> None:
    path = write_config(tmp_path, db_url, [
        {"name": "one", "dpid": "PADPIDA0000000010A", "ern_version": "4.3"},
        {"name": "two", "dpid": "PADPIDA0000000020B", "ern_version": "4.2"},
    ], target="table")
    report = recipients.run(load_config(path, env={}), progress=False)
    assert report.exit_code == 0, report.summary()
    with catalog.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT recipient, ern_version, count(*) FROM ddex_etl.documents GROUP BY 1, 2 ORDER BY 1"
        )).all()
    # Before recipients, the second store's run overwrote the first one's rows (keyed by release alone).
    assert [tuple(r) for r in rows] == [("one", "4.3", RELEASES), ("two", "4.2", RELEASES)]


# --------------------------------------------------------------------------- bad media, store rejections


def test_bad_media_rejects_the_release_and_a_store_rejection_shows_in_etl_errors(
    catalog: sa.Engine, db_url: str, tmp_path: Path, sftp_server: SFTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with catalog.begin() as conn:
        missing = conn.execute(sa.text(
            "UPDATE tracks SET audio_file = 'audio/lost/01-01.wav' WHERE track_id = "
            "(SELECT min(track_id) FROM tracks WHERE release_id = 3) RETURNING release_id"
        )).scalar()
        wrong = conn.execute(sa.text(
            "UPDATE tracks SET audio_md5 = md5('not this file') WHERE track_id = "
            "(SELECT min(track_id) FROM tracks WHERE release_id = 5) RETURNING release_id"
        )).scalar()
    folder = sftp_server.folder()
    path = write_config(tmp_path, db_url, [sftp_store(sftp_server, "store-a", folder)])
    cfg = load_config(path, env={})
    report = recipients.run(cfg, progress=False)
    assert report.exit_code == ExitCode.REJECTED, report.summary()
    rejects = {r.release_id: r for r in run_api.rejected(cfg.for_recipient(cfg.recipients[0]))}
    assert set(rejects) == {missing, wrong}
    assert "audio/lost/01-01.wav" in rejects[missing].message and "not found" in rejects[missing].message
    bad_md5 = hashlib.md5(b"not this file").hexdigest()
    assert bad_md5 in rejects[wrong].message and "fix:" in rejects[wrong].message

    # The rest arrived, complete; the rejected releases left nothing on the target or locally.
    expected = expected_resources(catalog)
    with catalog.connect() as conn:
        names = {rid: release_identifier(rid, i, g) for rid, i, g in conn.execute(sa.text(
            "SELECT release_id, icpn, grid FROM releases"))}
    batch = batch_of(tmp_path, "store-a")
    remote = sftp_tree(sftp_server, folder, batch.name)
    check_batch(remote, batch.name, expected, set(expected) - {names[missing], names[wrong]})
    assert not (batch / names[wrong]).exists()

    # The store rejects one delivered release in an acknowledgement beside its message.
    victim = sorted(set(expected) - {names[missing], names[wrong]})[0]
    victim_id = next(rid for rid, n in names.items() if n == victim)
    ack = (Path(__file__).parent / "fixtures" / "ACK_rejected.xml").read_text(encoding="utf-8")
    ack = ack.replace("0602445700001", victim)
    (sftp_server.root / folder / batch.name / victim / f"ACK_{victim}.xml").write_text(ack, encoding="utf-8")

    for name in list(os.environ):
        if name.startswith("ETL_"):
            monkeypatch.delenv(name)
    runner = CliRunner()
    acks = runner.invoke(cli, ["--config", str(path), "acks", "--json"])
    assert acks.exit_code == ExitCode.REJECTED, acks.output
    data = json.loads(acks.stdout)
    assert [r["release_id"] for r in data["recipients"][0]["rejected"]] == [victim_id]

    errors = runner.invoke(cli, ["--config", str(path), "errors"])
    assert errors.exit_code == 0, errors.output
    assert f"release {victim_id} (batch {batch.name}" in errors.stdout and "ResourceCorrupt" in errors.stdout
    assert "truncated FLAC stream" in errors.stdout and "ResendResources" in errors.stdout
    assert f"release {missing} (run" in errors.stdout and f"release {wrong} (run" in errors.stdout  # ours, beside


# --------------------------------------------------------------------------- a failed upload, resumed


def test_a_failed_upload_fails_the_run_and_the_next_run_delivers_what_is_missing(
    catalog: sa.Engine, db_url: str, tmp_path: Path, s3_server: S3Server
) -> None:
    # The store drops the connection on BatchComplete's PUT (the target passed its check before building).
    bucket = s3_server.bucket()
    proxy = S3Proxy(s3_server.endpoint)
    proxy.hook = lambda event, path: "drop" if event == "put" and "BatchComplete_" in path else None
    store = s3_store(s3_server, "store-b", bucket)
    store["options"] = {**store["options"], "endpoint_url": proxy.url}
    path = write_config(tmp_path, db_url, [store])
    cfg = load_config(path, env={})
    try:
        first = recipients.run(cfg, progress=False)
        proxy.hook = None
        second = recipients.run(cfg, progress=False)
    finally:
        proxy.close()
    assert first.exit_code == ExitCode.FAILED
    outcome = first.outcomes[0]
    assert outcome.status == "failed" and "BatchComplete" in (outcome.error or ""), first.summary()
    run_id = outcome.report.run_id if outcome.report else None
    assert run_id is not None

    assert second.exit_code == 0, second.summary()
    report = second.outcomes[0].report
    assert report is not None and report.run_id == run_id and report.resumed  # the same run, continued
    batch = batch_of(tmp_path, "store-b")
    assert s3_tree_md5(s3_server.client(), bucket, f"in/{batch.name}") == tree_md5(batch)


# --------------------------------------------------------------------------- SIGKILL during the upload


def _kill_when(proc: list[subprocess.Popen[bytes]], nth: int, event: str, wanted: str, match: str = "") -> Any:
    """A server hook that SIGKILLs the `etl` process at the nth ``wanted`` event whose path holds ``match``."""
    seen = [0]

    def hook(ev: str, path: str) -> str | None:
        if ev != wanted or match not in path or not proc:
            return None
        seen[0] += 1
        if seen[0] == nth:
            os.kill(proc[0].pid, signal.SIGKILL)
            return "drop"
        return None

    return hook


@pytest.mark.parametrize(
    ("kind", "event", "nth", "match"),
    [
        ("sftp", "write", 3, "/.etl-partial/"),  # mid-transfer of the third file
        ("sftp", "renamed", 7, ""),  # the seventh file committed, the client not told
        ("sftp", "rename", 1, "BatchComplete_"),  # just before BatchComplete
        ("s3", "put-done", 5, ""),  # the fifth object stored, the answer lost
        ("s3", "put", 1, "BatchComplete_"),  # BatchComplete's PUT never reaches the store
    ],
)
def test_sigkill_during_the_upload_then_resume_ends_like_an_undisturbed_delivery(
    catalog: sa.Engine, db_url: str, tmp_path: Path, sftp_server: SFTPServer, s3_server: S3Server,
    kind: str, event: str, nth: int, match: str,
) -> None:
    proc: list[subprocess.Popen[bytes]] = []
    hook = _kill_when(proc, nth, event, event, match)
    proxy: S3Proxy | None = None
    if kind == "sftp":
        folder = sftp_server.folder()
        store = sftp_store(sftp_server, "store", folder)
    else:
        proxy = S3Proxy(s3_server.endpoint)
        bucket = s3_server.bucket()
        store = s3_store(s3_server, "store", bucket)
        store["options"] = {**store["options"], "endpoint_url": proxy.url}
    # The reference: the same store settings, delivered undisturbed to a local folder in the same runs.
    ref = {"name": "ref", "dpid": store["dpid"], "target": str(tmp_path / "ref-store")}
    (tmp_path / "ref-store").mkdir()
    path = write_config(tmp_path, db_url, [store, ref])
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETL_")}
    try:
        if kind == "sftp":
            sftp_server.hook[0] = hook
        else:
            assert proxy is not None
            proxy.hook = hook
        proc.append(subprocess.Popen(
            [sys.executable, "-m", "ddex_etl", "--config", str(path), "run", "--no-progress"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        ))
        out, err = proc[0].communicate(timeout=240)
        assert proc[0].returncode == -signal.SIGKILL, (out + err).decode(errors="replace")[-3000:]
    finally:
        sftp_server.hook[0] = None
        if proxy is not None:
            proxy.hook = None

    batch = batch_of(tmp_path, "store")

    def remote() -> dict[str, str]:
        if kind == "sftp":
            return sftp_tree(sftp_server, folder, batch.name)
        return s3_tree_md5(s3_server.client(), bucket, f"in/{batch.name}")

    killed = remote()
    assert f"BatchComplete_{batch.name}.xml" not in killed  # never on an incomplete batch
    if kind == "sftp":
        assert not visible_temp_names(sftp_server.root / folder / batch.name)

    try:
        cfg = load_config(path, env={})
        report = recipients.run(cfg, progress=False)
    finally:
        if proxy is not None:
            proxy.close()
    assert report.exit_code == 0, report.summary()
    resumed = report.outcomes[0].report
    assert resumed is not None and resumed.resumed and resumed.delivery and resumed.delivery["complete"]

    final = remote()
    assert final == tree_md5(batch)  # every file, byte for byte
    check_batch(final, batch.name, expected_resources(catalog), set(expected_resources(catalog)))
    if kind == "sftp":
        assert not visible_temp_names(sftp_server.root / folder / batch.name)
        assert (sftp_server.root / folder / batch.name / f"BatchComplete_{batch.name}.xml").read_bytes() == b""

    # Against the undisturbed delivery: the same files; resources identical, messages identical but for the header.
    ref_batch = batch_of(tmp_path, "ref")
    ref_root = tmp_path / "ref-store" / ref_batch.name
    ref_tree = tree_md5(ref_root)
    strip = {p.replace(ref_batch.name, "B") for p in ref_tree}
    assert {p.replace(batch.name, "B") for p in final} == strip
    for rel in ref_tree:
        mine = batch / rel.replace(ref_batch.name, batch.name)
        theirs = ref_root / rel
        if rel.endswith(".xml") and "/" in rel:
            assert without_header(mine.read_bytes()) == without_header(theirs.read_bytes()), rel
        else:
            assert mine.read_bytes() == theirs.read_bytes(), rel


# --------------------------------------------------------------------------- dry run


def test_dry_run_reports_per_recipient_and_writes_nothing(
    catalog: sa.Engine, db_url: str, tmp_path: Path, sftp_server: SFTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = sftp_server.folder()
    with catalog.begin() as conn:
        conn.execute(sa.text("UPDATE tracks SET audio_file = 'audio/lost.wav' WHERE track_id = "
                             "(SELECT min(track_id) FROM tracks WHERE release_id = 2)"))
        fr = conn.execute(sa.text(
            "SELECT count(DISTINCT release_id) FROM deals WHERE 'FR' = ANY(territories) OR 'Worldwide' = ANY(territories)"
        )).scalar()
    path = write_config(tmp_path, db_url, [
        sftp_store(sftp_server, "all", folder),
        {"name": "fr-only", "dpid": "PADPIDA0000000030C", "territories": ["FR"], "ern_version": "3.8.2"},
    ])
    for name in list(os.environ):
        if name.startswith("ETL_"):
            monkeypatch.delenv(name)
    result = CliRunner().invoke(cli, ["--config", str(path), "run", "--dry-run", "--json"])
    assert result.exit_code == ExitCode.REJECTED, result.output
    plans = {p["recipient"]: p for p in json.loads(result.stdout)["recipients"]}
    assert plans["all"]["would_build"] == RELEASES - 1 and plans["all"]["rejected"] == 1
    assert "audio/lost.wav" in plans["all"]["rejects"][0]["reason"]
    fr_rejected = plans["fr-only"]["rejected"]
    assert plans["fr-only"]["would_build"] + fr_rejected == fr and plans["fr-only"]["skipped"] == RELEASES - fr
    assert plans["fr-only"]["ern_version"] == "3.8.2"
    # Nothing written: no batch, no upload, no run row.
    assert list((tmp_path / "out").iterdir()) == []
    assert list((sftp_server.root / folder).iterdir()) == []
    with catalog.connect() as conn:
        assert conn.execute(sa.text("SELECT to_regclass('ddex_etl.runs')")).scalar() is None


def test_config_objects_for_recipients_keep_the_shorthand_fingerprint() -> None:
    # A configuration without [[recipients]] hashes as before recipients existed: its unfinished runs resume
    # (runs recorded before per-key fingerprints are matched by the fingerprint they recorded).
    assert Config().legacy_fingerprint() == "9d94a9e81cb89e5f"
