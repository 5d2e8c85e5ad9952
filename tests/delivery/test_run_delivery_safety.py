"""`etl run` delivering under pressure (issue 21): a resume whose local batch is gone, a retry that builds
nothing, the heartbeat through the upload, a run taken over mid-upload, SIGTERM during the upload.

Real `etl` processes where a signal or a takeover is played, the in-process asyncssh server (whose hook
stops the client at exact protocol instants) and the real PostgreSQL.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import SFTPServer, batch_tree, tree_md5
from test_run_delivery import batch_of, catalog, sftp_store, write_config  # noqa: F401 - catalog is a fixture

from ddex_etl.config import load_config
from ddex_etl.db import make_engine
from ddex_etl.delivery.target_probe import PROBE_PREFIX
from ddex_etl.errors import ExitCode
from ddex_etl.run import recipients
from ddex_etl.state.joblock import job_lock_key


def _etl(path: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETL_")}
    return subprocess.Popen([sys.executable, "-m", "ddex_etl", "--config", str(path), *args, "--no-progress"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _remote(server: SFTPServer, folder: str) -> dict[str, str]:
    root = server.root / folder
    return tree_md5(root) if root.exists() else {}


# --------------------------------------------------------------------------- item 1


def test_a_resume_whose_local_batch_is_gone_never_empties_the_stores_batch(
    catalog: sa.Engine, db_url: str, tmp_path: Path, sftp_server: SFTPServer  # noqa: F811
) -> None:
    folder = sftp_server.folder()
    path = write_config(tmp_path, db_url, [sftp_store(sftp_server, "store", folder)])
    cfg = load_config(path, env={})

    def refuse_marker(event: str, p: str) -> str | None:
        return "drop" if event == "rename" and "BatchComplete_" in p else None

    sftp_server.hook[0] = refuse_marker  # the upload fails just before BatchComplete: the run is unfinished
    try:
        first = recipients.run(cfg, progress=False)
    finally:
        sftp_server.hook[0] = None
    assert first.exit_code == ExitCode.FAILED, first.summary()
    sent = _remote(sftp_server, folder)
    assert len(sent) > 10 and not any("BatchComplete_" in p for p in sent)

    shutil.rmtree(tmp_path / "out")  # a container restart, an operator's clean-up
    (tmp_path / "out").mkdir()
    again = recipients.run(cfg, progress=False)
    outcome = again.outcomes[0]
    assert again.exit_code == ExitCode.FAILED, again.summary()
    assert "lacks" in (outcome.error or "") and "etl run --new --force" in (outcome.error or "")
    assert _remote(sftp_server, folder) == sent  # nothing removed, no BatchComplete
    batch = next(p for p in (tmp_path / "out" / "store").iterdir() if p.is_dir() and not p.name.startswith("."))
    assert not (batch / f"BatchComplete_{batch.name}.xml").exists()


# --------------------------------------------------------------------------- item 8


def test_retry_failed_that_builds_nothing_sends_nothing(
    catalog: sa.Engine, db_url: str, tmp_path: Path, sftp_server: SFTPServer  # noqa: F811
) -> None:
    with catalog.begin() as conn:
        conn.execute(sa.text(
            "UPDATE tracks SET audio_md5 = md5('not this file') WHERE track_id = "
            "(SELECT min(track_id) FROM tracks WHERE release_id = 5)"
        ))
    folder = sftp_server.folder()
    path = write_config(tmp_path, db_url, [sftp_store(sftp_server, "store", folder)])
    cfg = load_config(path, env={})
    first = recipients.run(cfg, progress=False)
    assert first.exit_code == ExitCode.REJECTED, first.summary()
    batches_before = sorted(p.name for p in (sftp_server.root / folder).iterdir() if not p.name.startswith("."))
    assert len(batches_before) == 1

    retry = recipients.retry_failed(cfg, progress=False)  # the media is still wrong: nothing builds
    assert retry.exit_code == ExitCode.REJECTED, retry.summary()
    report = retry.outcomes[0].report
    assert report is not None and report.built == 0 and report.delivery is None
    assert sorted(p.name for p in (sftp_server.root / folder).iterdir() if not p.name.startswith(".")) == batches_before  # no empty batch sent


# --------------------------------------------------------------------------- items 2 and 9: a run in the upload


def _run_age(db_url: str, job: str) -> tuple[float, int]:
    eng = make_engine(db_url, pool_size=1)
    try:
        with eng.connect() as conn:
            row = conn.execute(sa.text(
                "SELECT EXTRACT(EPOCH FROM now() - heartbeat_at), id FROM ddex_etl.runs WHERE job = :job "
                "ORDER BY id DESC LIMIT 1"), {"job": job}).one()
        return float(row[0]), int(row[1])
    finally:
        eng.dispose()


@pytest.mark.slow
def test_the_heartbeat_goes_on_during_the_upload(
    catalog: sa.Engine, db_url: str, tmp_path: Path, sftp_server: SFTPServer  # noqa: F811
) -> None:
    folder = sftp_server.folder()
    path = write_config(tmp_path, db_url, [sftp_store(sftp_server, "store", folder, options={
        **sftp_server.options(), "timeout": 60})])
    seen: dict[str, Any] = {}

    def slow_store(event: str, p: str) -> None:
        if PROBE_PREFIX in p:
            return  # the target check before the build (no run row yet)
        if event == "renamed" and "n" not in seen:
            seen["n"] = 1
            time.sleep(9)  # the store takes its time over one file: the upload is 9 s old at least
            seen["age"] = _run_age(db_url, "default/store")[0]

    sftp_server.hook[0] = slow_store
    try:
        proc = _etl(path, "run")
        out, err = proc.communicate(timeout=180)
    finally:
        sftp_server.hook[0] = None
    assert proc.returncode == 0, (out + err).decode(errors="replace")[-3000:]
    assert seen["age"] < 7.5, f"heartbeat {seen['age']:.1f} s old in the middle of the upload"


@pytest.mark.slow
def test_a_run_taken_over_during_the_upload_stops_before_touching_the_target_again(
    catalog: sa.Engine, db_url: str, tmp_path: Path, sftp_server: SFTPServer  # noqa: F811
) -> None:
    folder = sftp_server.folder()
    path = write_config(tmp_path, db_url, [sftp_store(sftp_server, "store", folder, options={
        **sftp_server.options(), "timeout": 60})])
    events: list[tuple[str, str]] = []
    taken: dict[str, Any] = {}
    other = make_engine(db_url, pool_size=1)
    holder = other.connect().execution_options(isolation_level="AUTOCOMMIT")

    def takeover(event: str, p: str) -> None:
        if PROBE_PREFIX in p:
            return  # the target check before the build (no run row yet)
        events.append((event, p))
        if event == "renamed" and "at" not in taken and sum(e == "renamed" for e, _ in events) == 3:
            # Another host's runner: the lock's connection dies, it takes the job lock and the run row.
            key = job_lock_key("default/store")
            holder.execute(sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND ((classid::bigint << 32) | objid::bigint) = (:k & x'FFFFFFFFFFFFFFFF'::bigint)"), {"k": key})
            for _ in range(50):
                if holder.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar():
                    break
                time.sleep(0.1)
            holder.execute(sa.text(
                "UPDATE ddex_etl.runs SET pid = 999999, host = 'another-host', heartbeat_at = now() "
                "WHERE job = 'default/store' AND status = 'running'"))
            time.sleep(8)  # longer than a heartbeat: the runner finds out while this file is in flight
            taken["at"] = len(events)

    sftp_server.hook[0] = takeover
    try:
        proc = _etl(path, "run")
        out, err = proc.communicate(timeout=180)
    finally:
        sftp_server.hook[0] = None
        holder.close()
        other.dispose()
    text = (out + err).decode(errors="replace")
    assert proc.returncode == ExitCode.FAILED, text[-3000:]
    assert "taken over" in text
    after = events[taken["at"]:]
    # No file starts after the takeover; the transfers already in flight (8 at most) may finish theirs.
    started = {p for e, p in events[:taken["at"]] if e == "write"}
    assert len({p for e, p in after if e == "write"} - started) <= 8, after
    assert sum(e == "rename" for e, _ in after) <= 8, after
    assert not any("BatchComplete_" in p for p in _remote(sftp_server, folder))


@pytest.mark.slow
def test_sigterm_during_the_upload_stops_at_a_file_boundary_exit_130_and_resumes(
    catalog: sa.Engine, db_url: str, tmp_path: Path, sftp_server: SFTPServer  # noqa: F811
) -> None:
    folder = sftp_server.folder()
    path = write_config(tmp_path, db_url, [sftp_store(sftp_server, "store", folder)])
    proc_box: list[subprocess.Popen[bytes]] = []
    renamed = [0]

    def term_at_third(event: str, p: str) -> None:
        if event == "renamed" and proc_box:
            renamed[0] += 1
            if renamed[0] == 3:
                os.kill(proc_box[0].pid, signal.SIGTERM)
                time.sleep(0.5)  # the handler runs while the client waits for this answer

    sftp_server.hook[0] = term_at_third
    try:
        proc_box.append(_etl(path, "run"))
        out, err = proc_box[0].communicate(timeout=180)
    finally:
        sftp_server.hook[0] = None
    text = (out + err).decode(errors="replace")
    assert proc_box[0].returncode == ExitCode.INTERRUPTED, text[-3000:]
    # the files in flight at most (8 transfers), and nothing started after
    assert renamed[0] <= 3 + 8, f"{renamed[0]} files committed after SIGTERM at the third"
    assert not any("BatchComplete_" in p for p in _remote(sftp_server, folder))

    report = recipients.resume(load_config(path, env={}), progress=False)
    assert report.exit_code == 0, report.summary()
    batch = batch_of(tmp_path, "store")
    assert tree_md5(sftp_server.root / folder / batch.name) == batch_tree(batch)  # media from the media root
