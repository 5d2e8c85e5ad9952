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
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from conftest import S3Proxy, S3Server, SFTPServer, batch_tree, s3_tree_md5, tree_md5
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


def write_config(tmp_path: Path, db_url: str, stores: list[dict[str, Any]], *, target: str = "files",
                 run: str = "") -> Path:
    """An etl.toml with these [[recipients]] (each dict: keys, plus "options" for target_options)."""
    lines = [
        "[database]", f"url = {json.dumps(db_url)}",
        "[extract]", "chunk_size = 3",
        # A LiveMessage to a store may not name the demo sender.
        "[transform]", 'sender_dpid = "PADPIDA2014040101Z"', 'sender_name = "Aurora Records"',
        "[load]", f'target = "{target}"', 'directory = "out"', 'layout = "ddex-batch"', 'media_root = "media"',
        "[run]", "workers = 2", "retry_for = 2.0", "retry_delay = 0.1", run,
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
    return {"name": name, "dpid": "PADPIDA0000000010M", "target": server.url(folder), "options": server.options(),
            **extra}


def s3_store(server: S3Server, name: str, bucket: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "dpid": "PADPIDA0000000020I", "target": f"s3://{bucket}/in",
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
    assert remote_a == batch_tree(a)  # byte for byte what the run wrote locally, media from the media root
    check_batch(remote_a, a.name, expected, folders)
    assert not visible_temp_names(sftp_server.root / folder / a.name)

    b = batch_of(tmp_path, "store-b")
    remote_b = s3_tree_md5(s3_server.client(), bucket, f"in/{b.name}")
    assert remote_b == batch_tree(b)
    check_batch(remote_b, b.name, expected, folders)
    assert a.name != b.name

    # Each store's messages: its own ERN version, party id and control type; URIs are the relative resources.
    one = sorted(folders)[0]
    msg_a = (a / one / f"{one}.xml").read_bytes()
    msg_b = (b / one / f"{one}.xml").read_bytes()
    assert b"http://ddex.net/xml/ern/43" in msg_a and b"PADPIDA0000000010M" in msg_a
    assert b"http://ddex.net/xml/ern/382" in msg_b and b"PADPIDA0000000020I" in msg_b
    assert b"<MessageControlType>TestMessage</MessageControlType>" in msg_b
    uris = set(re.findall(rb"<URI>([^<]+)</URI>", msg_a))
    assert uris and all(u.startswith(b"resources/") for u in uris)
    assert {u.decode() for u in uris} == set(expected[one])
    assert report.outcomes[0].report is not None and report.outcomes[0].report.delivery["complete"]
    # What --json gives per recipient: files, bytes, seconds, MB/s, retries (and the transfers in flight)
    for outcome in report.outcomes:
        delivered = outcome.as_dict()["delivery"]
        assert delivered["files"] == len(batch_tree(a if outcome.recipient == "store-a" else b))
        assert delivered["bytes"] > 0 and delivered["seconds"] > 0 and delivered["mb_per_s"] > 0
        assert delivered["retries"] == 0 and delivered["transfers"] == 8
    # Remote stores: the media went from the media root to each store; neither local batch holds a copy.
    for local in (a, b):
        assert not [p for p in local.rglob("resources/*") if not p.name.startswith(".")]


def test_recipients_go_side_by_side_and_a_stalled_store_holds_back_no_other(
    catalog: sa.Engine, db_url: str, tmp_path: Path, s3_server: S3Server
) -> None:
    # Store "slow" does not answer its first PUT until store "quick" holds a complete batch. One after the
    # other (the old way) "quick" would never start: the hook gives up after 60 s and "slow" fails.
    proxy = S3Proxy(s3_server.endpoint)
    bucket = s3_server.bucket()
    slow = s3_store(s3_server, "slow", bucket)
    slow["options"] = {**slow["options"], "endpoint_url": proxy.url}
    (tmp_path / "quick-store").mkdir()
    quick = {"name": "quick", "dpid": "PADPIDA0000000010M", "target": str(tmp_path / "quick-store")}
    path = write_config(tmp_path, db_url, [slow, quick])
    waited: list[float] = []

    def hold_until_quick_is_done(event: str, key: str) -> str | None:
        if event != "put" or waited:
            return None
        t0 = time.monotonic()
        while time.monotonic() - t0 < 60:
            if list((tmp_path / "quick-store").glob("*/BatchComplete_*.xml")):
                waited.append(time.monotonic() - t0)
                return None
            time.sleep(0.05)
        waited.append(-1.0)
        return "drop"

    proxy.hook = hold_until_quick_is_done
    try:
        report = recipients.run(load_config(path, env={}), progress=False)
    finally:
        proxy.close()
    assert waited and waited[0] >= 0, "store quick never finished while store slow was stalled"
    assert report.exit_code == 0, report.summary()
    assert [(o.recipient, o.status) for o in report.outcomes] == [("slow", "succeeded"), ("quick", "succeeded")]


def test_a_run_delivers_to_a_real_openssh_server(
    catalog: sa.Engine, db_url: str, tmp_path: Path, openssh_server: OpenSSHServer
) -> None:
    folder = openssh_server.folder()
    path = write_config(tmp_path, db_url, [sftp_store(openssh_server, "store-a", folder)])
    report = recipients.run(load_config(path, env={}), progress=False)
    assert report.exit_code == 0, report.summary()
    batch = batch_of(tmp_path, "store-a")
    remote = tree_md5(openssh_server.root / folder / batch.name)
    assert remote == batch_tree(batch)  # byte for byte what the run wrote locally, media from the media root
    expected = expected_resources(catalog)
    check_batch(remote, batch.name, expected, set(expected))
    assert not visible_temp_names(openssh_server.root / folder / batch.name)
    outcome = report.outcomes[0].report
    assert outcome is not None and outcome.delivery["complete"]


def test_the_output_table_keeps_one_row_per_recipient_and_release(catalog: sa.Engine, db_url: str, tmp_path: Path) -> None:
    path = write_config(tmp_path, db_url, [
        {"name": "one", "dpid": "PADPIDA0000000010M", "ern_version": "4.3"},
        {"name": "two", "dpid": "PADPIDA0000000020I", "ern_version": "4.2"},
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
    assert s3_tree_md5(s3_server.client(), bucket, f"in/{batch.name}") == batch_tree(batch)


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
    # one after the other: the kill lands in "store"'s upload, and "ref" runs undisturbed afterwards
    path = write_config(tmp_path, db_url, [store, ref], run="parallel_recipients = 1")
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
    assert final == batch_tree(batch)  # every file, byte for byte
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
        elif "/resources/" in rel:  # sent from the media root: the local batch holds no copy
            assert final[rel.replace(ref_batch.name, batch.name)] == ref_tree[rel], rel
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
        {"name": "fr-only", "dpid": "PADPIDA0000000030E", "territories": ["FR"], "ern_version": "3.8.2"},
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
    # (The shipped demo parties became valid DPIDs in issue 23: with the old ones, the old fingerprint.)
    old_demo = Config().with_overrides(transform={"sender_dpid": "PADPIDA0000000001X", "recipient_dpid": "PADPIDA0000000002X"})
    assert old_demo.legacy_fingerprint() == "9d94a9e81cb89e5f"


# --------------------------------------------------------------------------- kill -9 at random moments


def _journaled(out: Path) -> set[str]:
    """Every remote path the upload journals under ``out`` record as committed."""
    found: set[str] = set()
    for journal in out.rglob("*.jsonl"):
        for line in journal.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                found.add(str(json.loads(line)["path"]))
            except (ValueError, KeyError, TypeError):
                continue
    return found


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sftp", "s3"])
def test_sigkill_at_random_moments_of_a_concurrent_upload_then_resume(
    catalog: sa.Engine, db_url: str, tmp_path: Path, sftp_server: SFTPServer, s3_server: S3Server, kind: str,
) -> None:
    """`etl run`, then `etl resume` again and again, each killed (-9) at a random instant of its upload.

    In the end the store holds exactly the batch, BatchComplete last; no partial file or object was ever
    visible; and no file was committed again once a journal line said it was there.
    """
    rnd = random.Random(f"issue22-{kind}")
    media_bytes = sum(p.stat().st_size for p in (tmp_path / "media").rglob("*") if p.is_file())
    # the upload lasts about 3 s: room for many kills, each landing somewhere else in it
    throttle = {"transfers": 8, "max_bandwidth": max(media_bytes // 3, 4096)}
    commits: list[str] = []
    started = threading.Event()
    seen_complete: list[bool] = []
    proxy: S3Proxy | None = None
    batch_path = re.compile(r"(\d{17}/.+)$")

    def hook(event: str, path: str) -> str | None:
        if event == "put" or (event == "write" and ".etl-partial" in path):
            started.set()
        if event in ("put-done", "renamed"):
            found = batch_path.search(path)
            if found:
                commits.append(found.group(1))
        return None

    if kind == "sftp":
        folder = sftp_server.folder()
        store = sftp_store(sftp_server, "store", folder)
        sftp_server.hook[0] = hook
    else:
        proxy = S3Proxy(s3_server.endpoint)
        bucket = s3_server.bucket()
        store = s3_store(s3_server, "store", bucket)
        store["options"] = {**store["options"], "endpoint_url": proxy.url}
        proxy.hook = hook
    store["options"] = {**store["options"], **throttle}
    path = write_config(tmp_path, db_url, [store])
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETL_")}
    out = tmp_path / "out" / "store"
    kills = 0
    try:
        for attempt in range(40):
            started.clear()
            command = "run" if attempt == 0 else "resume"
            proc = subprocess.Popen([sys.executable, "-m", "ddex_etl", "--config", str(path), command, "--no-progress"],
                                    env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            while not started.wait(0.02) and proc.poll() is None:
                pass
            if proc.poll() is None and kills < 12:
                time.sleep(rnd.uniform(0.0, 0.3))
                proc.kill()
            out_text, err_text = proc.communicate(timeout=240)
            if proc.returncode != -signal.SIGKILL:
                assert proc.returncode == 0, (out_text + err_text).decode(errors="replace")[-3000:]
                break
            kills += 1
            time.sleep(0.3)  # what the dead client left in flight settles
            seen_complete.append(any("BatchComplete_" in c for c in commits))
            if kind == "sftp":
                batch_dirs = [p for p in (sftp_server.root / folder).iterdir() if p.is_dir() and p.name[0] != "."]
                for b in batch_dirs:  # nothing half-written is visible in a batch folder
                    assert not [p for p in b.rglob("*") if p.name.startswith(".") or p.name.endswith(".part")]
            else:
                uploads = s3_server.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])
                assert all("BatchComplete_" not in u["Key"] for u in uploads)
            # from here on, no journaled file may be committed again (checked at the end)
            commits.append("--journal " + json.dumps(sorted(_journaled(out))))
    finally:
        sftp_server.hook[0] = None
        if proxy is not None:
            proxy.close()
    assert kills >= 10, f"only {kills} kills landed during the upload"
    assert not any(seen_complete[:-1]), "BatchComplete was committed before the last attempt"

    # nothing journaled as committed was committed again afterwards
    journaled_so_far: set[str] = set()
    for entry in commits:
        if entry.startswith("--journal "):
            journaled_so_far |= {p.split("/", 1)[1] if p.startswith("in/") else p
                                 for p in json.loads(entry.removeprefix("--journal "))}
            journaled_so_far = {batch_path.search(p).group(1) for p in journaled_so_far if batch_path.search(p)}
        elif not entry.startswith("--"):
            assert entry not in journaled_so_far, f"{entry} was sent again after its commit was journaled"

    batch = batch_of(tmp_path, "store")
    final = sftp_tree(sftp_server, folder, batch.name) if kind == "sftp" else \
        s3_tree_md5(s3_server.client(), bucket, f"in/{batch.name}")
    assert final == batch_tree(batch)
    check_batch(final, batch.name, expected_resources(catalog), set(expected_resources(catalog)))
    assert commits[-1].endswith(f"BatchComplete_{batch.name}.xml")  # last of all
    if kind == "sftp":
        assert not visible_temp_names(sftp_server.root / folder / batch.name)
    else:
        assert s3_server.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
