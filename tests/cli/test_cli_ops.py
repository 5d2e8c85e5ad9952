"""What a nightly scheduler keeps, through real `etl` processes against a real PostgreSQL (issue 24 items 2, 5, 6):
a line on stderr per recipient that did not succeed, `etl errors` of the newest run (targeted ones too) and of
re-delivered store rejections, `--json` on every command, one notion of a stalled run, log lines that name the
recipient by name."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from etl_cli import etl, one_json

from ddex_etl.demo.seed import seed_catalog

FIXTURES = Path(__file__).resolve().parents[1] / "delivery" / "fixtures"
REPO = Path(__file__).resolve().parents[2]
RECIPIENTS = """
[transform]
sender_dpid = "PADPIDA2014040101Z"
sender_name = "Aurora Records"
[load]
directory = "out"
layout = "ddex-batch"
media_root = "media"
[run]
workers = 1
retry_for = 1.0
retry_delay = 0.05
[[recipients]]
name = "store-a"
dpid = "PADPIDA0000000010M"
target = "store-a"
[[recipients]]
name = "store-b"
dpid = "PADPIDA0000000020I"
party_name = "Store B"
target = "{b_target}"
"""


@pytest.fixture()
def seeded(db_url: str, tmp_path: Path) -> dict[str, str]:
    engine = sa.create_engine(db_url)
    try:
        seed_catalog(engine, 6, seed=3, media_dir=tmp_path / "media")
    finally:
        engine.dispose()
    return {"ETL_DATABASE_URL": db_url}


def _sql(db_url: str, text: str, **params: Any) -> Any:
    engine = sa.create_engine(db_url)
    try:
        with engine.begin() as conn:
            result = conn.execute(sa.text(text), params)
            return result.fetchall() if result.returns_rows else None
    finally:
        engine.dispose()


def _recipients_toml(tmp_path: Path, b_target: str) -> None:
    (tmp_path / "etl.toml").write_text(RECIPIENTS.format(b_target=b_target), encoding="utf-8")
    (tmp_path / "store-a").mkdir(exist_ok=True)
    (tmp_path / "store-b").mkdir(exist_ok=True)


# --------------------------------------------------------------------------- item 2: failures on stderr


@pytest.mark.slow  # several real `etl` runs
def test_each_recipient_that_did_not_succeed_gets_one_line_on_stderr_whatever_stdout_holds(
    seeded: dict[str, str], db_url: str, tmp_path: Path
) -> None:
    _recipients_toml(tmp_path, "/dev/null/in")  # store-b's folder cannot exist: its delivery fails
    rejected = _sql(db_url, "DELETE FROM release_images WHERE release_id = 2 RETURNING release_id")  # no cover: rejected
    assert rejected

    proc = etl(tmp_path, "run", "--no-progress", "--json", env=seeded)
    assert proc.returncode == 1, proc.stderr
    summary = one_json(proc)
    outcomes = {r["recipient"]: r for r in summary["recipients"]}
    assert (outcomes["store-a"]["exit_code"], outcomes["store-b"]["exit_code"]) == (3, 1)
    lines = [line for line in proc.stderr.splitlines() if line.startswith("etl: recipient ")]
    run_a = outcomes["store-a"]["run_id"]
    assert len(lines) == 2, proc.stderr
    assert lines[0].startswith(f"etl: recipient store-a: run {run_a} finished with 1 release(s) rejected")
    assert f"`etl errors {run_a}`" in lines[0]
    # store-b's target is tried before anything is built: no run, and the line says why and the fix
    assert "run_id" not in outcomes["store-b"] or outcomes["store-b"]["run_id"] is None
    assert lines[1].startswith("etl: recipient store-b: not started: ") and "target folder /dev/null/in" in lines[1]
    assert "fix:" in lines[1]

    # -q (errors only) and text output: the same lines
    quiet = etl(tmp_path, "-q", "run", "--no-progress", env=seeded)
    assert quiet.returncode == 1
    assert sum(line.startswith("etl: recipient store-b: ") for line in quiet.stderr.splitlines()) == 1, quiet.stderr

    # --log-format json: one record per recipient, `recipient` its name and the DPID beside it
    logged = etl(tmp_path, "--log-format", "json", "-v", "run", "--no-progress", "--json", env=seeded)
    records = [json.loads(line) for line in logged.stderr.splitlines() if line.startswith("{")]
    mine = [r for r in records if r["message"].startswith("etl: recipient ")]
    assert [(r["recipient"], r["recipient_dpid"], r["level"]) for r in mine] == [
        ("store-a", "PADPIDA0000000010M", "warning"), ("store-b", "PADPIDA0000000020I", "error")]
    named = [r for r in records if r["recipient"] is not None]
    assert named and {r["recipient"] for r in named} == {"store-a", "store-b"}
    dpids = {"store-a": "PADPIDA0000000010M", "store-b": "PADPIDA0000000020I"}
    assert all(r["recipient_dpid"] == dpids[r["recipient"]] for r in named), [
        (r["recipient"], r["recipient_dpid"], r["message"][:80]) for r in named if r["recipient_dpid"] != dpids[r["recipient"]]]
    assert all(r["job"] == f"default/{r['recipient']}" for r in named), [
        (r["job"], r["recipient"], r["message"][:80]) for r in named if r["job"] != f"default/{r['recipient']}"]


def test_a_recipient_that_succeeds_writes_nothing_to_stderr(seeded: dict[str, str], tmp_path: Path) -> None:
    _recipients_toml(tmp_path, "store-b")
    proc = etl(tmp_path, "run", "--no-progress", "--json", env=seeded)
    assert proc.returncode == 0, proc.stderr
    assert "etl: recipient" not in proc.stderr


# --------------------------------------------------------------------------- item 5: etl errors


@pytest.mark.slow  # several real `etl` runs
def test_etl_errors_lists_the_newest_run_when_it_is_a_targeted_one(
    seeded: dict[str, str], db_url: str, tmp_path: Path
) -> None:
    (tmp_path / "etl.toml").write_text('[run]\nworkers = 1\n[load]\ndirectory = "out"\n', encoding="utf-8")
    first = etl(tmp_path, "run", "--no-progress", "--json", env=seeded)
    assert first.returncode == 0, first.stderr
    _sql(db_url, "DELETE FROM release_images WHERE release_id = 4")
    targeted = etl(tmp_path, "run", "--release-id", "4", "--force", "--no-progress", "--json", env=seeded)
    assert targeted.returncode == 3, targeted.stderr
    run_id = one_json(targeted)["run_id"]

    listed = json.loads(etl(tmp_path, "errors", "--json", env=seeded).stdout)
    assert [(r["release_id"], r["run_id"]) for r in listed] == [(4, run_id)]
    text = etl(tmp_path, "errors", env=seeded).stdout
    assert f"release 4 (run {run_id}" in text and "front cover" in text

    # A retry keeps what still fails under the run it retries: `etl errors` still shows the targeted run's.
    retry = etl(tmp_path, "retry-failed", "--no-progress", "--json", env=seeded)
    assert retry.returncode == 3, retry.stderr
    again = json.loads(etl(tmp_path, "errors", "--json", env=seeded).stdout)
    assert [(r["release_id"], r["run_id"]) for r in again] == [(4, run_id)]


def _ack(template: str, folder: str) -> str:
    text = (FIXTURES / template).read_text(encoding="utf-8")
    for placeholder in ("0602445700001", "0602445700000"):
        text = text.replace(placeholder, folder)
    return text


@pytest.mark.slow  # several real `etl` runs
def test_a_store_rejection_shows_as_awaiting_once_re_delivered_and_clears_when_the_store_accepts(
    seeded: dict[str, str], tmp_path: Path
) -> None:
    _recipients_toml(tmp_path, "store-b")
    first = one_json(etl(tmp_path, "run", "--recipient", "store-a", "--no-progress", "--json", env=seeded))
    batch = first["recipients"][0]["batch_id"]
    store = tmp_path / "store-a" / batch
    folder = min(p.name for p in store.iterdir() if p.is_dir())
    (store / folder / f"ACK_{folder}.xml").write_text(_ack("ACK_rejected.xml", folder), encoding="utf-8")
    acks = etl(tmp_path, "acks", "--recipient", "store-a", "--json", env=seeded)
    assert acks.returncode == 3, acks.stderr
    release_id = one_json(acks)["recipients"][0]["rejected"][0]["release_id"]

    def store_rejected() -> list[dict[str, Any]]:
        listed = json.loads(etl(tmp_path, "errors", "--json", env=seeded).stdout)
        return next(r for r in listed if r["recipient"] == "store-a")["store_rejected"]

    [before] = store_rejected()
    assert (before["release_id"], before["state"], before["redelivered_by_run"]) == (release_id, "rejected", None)

    again = etl(tmp_path, "run", "--recipient", "store-a", "--release-id", str(release_id), "--force",
                "--no-progress", "--json", env=seeded)
    assert again.returncode == 0, again.stderr
    redelivery = one_json(again)["recipients"][0]
    [waiting] = store_rejected()
    assert waiting["state"] == "re-delivered, awaiting acknowledgement"
    assert waiting["redelivered_by_run"] == redelivery["run_id"]
    text = etl(tmp_path, "errors", env=seeded).stdout
    assert f"re-delivered by run {redelivery['run_id']}, awaiting acknowledgement" in text
    assert "1 re-delivered and awaiting the store's acknowledgement" in text

    new_batch = tmp_path / "store-a" / redelivery["batch_id"] / folder
    (new_batch / f"ACK_{folder}.xml").write_text(_ack("ACK_accepted.xml", folder), encoding="utf-8")
    assert etl(tmp_path, "acks", "--recipient", "store-a", env=seeded).returncode == 0
    assert store_rejected() == []


# --------------------------------------------------------------------------- item 6: one notion of stalled


def test_runs_and_status_both_call_a_run_whose_runner_is_gone_stalled(
    seeded: dict[str, str], db_url: str, tmp_path: Path
) -> None:
    (tmp_path / "etl.toml").write_text('[run]\nworkers = 1\n[load]\ndirectory = "out"\n', encoding="utf-8")
    assert etl(tmp_path, "run", "--no-progress", env=seeded).returncode == 0
    # A runner killed by the OOM killer: its row still says running, its pid is gone.
    dead = 2**22 + 17
    _sql(db_url, "UPDATE ddex_etl.runs SET status = 'running', finished_at = NULL, pid = :pid, "
                 "heartbeat_at = now() - interval '1 hour' WHERE id = 1", pid=dead)
    runs = json.loads(etl(tmp_path, "runs", "--json", env=seeded).stdout)
    status = json.loads(etl(tmp_path, "status", "--json", env=seeded).stdout)
    assert runs[0]["status"] == status[0]["status"] == status[0]["last_run"]["status"] == "stalled"
    assert "is gone" in runs[0]["note"] and "is gone" in status[0]["note"]
    table = etl(tmp_path, "runs", env=seeded).stdout
    assert "stalled" in table and "running" not in table.split("\n", 3)[3].split("│")[3]
    assert "run 1: run 1 is recorded as running, but its runner" in table


# --------------------------------------------------------------------------- item 6: --json everywhere


@pytest.mark.slow  # several real `etl` runs
def test_config_check_validate_seed_and_db_answer_json(db_url: str, tmp_path: Path, schema_dir: Path) -> None:
    env = {"ETL_DATABASE_URL": db_url}
    _recipients_toml(tmp_path, "store-b")
    (tmp_path / "metrics").mkdir()

    seed = etl(tmp_path, "seed", "--releases", "3", "--json", env=env)
    assert seed.returncode == 0, seed.stderr
    data = one_json(seed)
    assert (data["releases"], data["first_release_id"], data["last_release_id"]) == (3, 1, 3)
    assert data["media_dir"] == str(tmp_path / "media") and data["media_files"] > 0
    assert set(data) == {"releases", "first_release_id", "last_release_id", "tracks", "artists", "deals", "seconds",
                         "releases_per_second", "database", "media_dir", "media_files", "media_written"}

    none = one_json(etl(tmp_path, "db", "current", "--json", env=env))
    assert none["revision"] is None and none["at_head"] is False and none["schema"] == "ddex_etl"
    up = one_json(etl(tmp_path, "db", "upgrade", "--json", env=env))
    assert up["revision"] == up["head"] and up["at_head"] is True
    assert one_json(etl(tmp_path, "db", "current", "--json", env=env)) == up
    down = one_json(etl(tmp_path, "db", "downgrade", "--revision", "base", "--json", env=env))
    assert down["revision"] is None
    stop = one_json(etl(tmp_path, "db", "stop", "--json", env=env))
    assert stop["stopped"] is False and stop["embedded_dir"].endswith("pgdata")

    checked = etl(tmp_path, "config", "check", "--json", env=env)
    assert checked.returncode == 0, checked.stderr
    cfg = one_json(checked)
    assert cfg["ok"] is True and cfg["exit_code"] == 0 and cfg["source"] == str(tmp_path / "etl.toml")
    assert cfg["environment_overrides"] == ["ETL_DATABASE_URL"]
    assert cfg["load"]["layout"] == "ddex-batch" and cfg["run"]["workers"] == 1
    assert [(r["name"], r["party_name"]) for r in cfg["recipients"]] == [("store-a", "store-a"), ("store-b", "Store B")]
    assert cfg["recipients"][0]["target"] == str(tmp_path / "store-a")  # a local folder is no URL: shown, not masked

    text = etl(tmp_path, "config", "check", env=env).stdout
    assert 'party_name = ""' not in text
    assert "# party_name: not set (MessageRecipient's name is the recipient's name, \"store-a\")" in text
    assert 'party_name = "Store B"' in text

    connect = etl(tmp_path, "config", "check", "--connect", "--json", env=env)
    result = one_json(connect)
    assert set(result) == {"ok", "exit_code", "checks"} and result["exit_code"] == connect.returncode
    assert all(set(c) == {"name", "ok", "detail"} for c in result["checks"]) and result["checks"]

    (tmp_path / "etl.toml").write_text("[run]\nworkers = -1\n", encoding="utf-8")
    bad = etl(tmp_path, "config", "check", "--json", env=env)
    assert bad.returncode == 2
    problem = one_json(bad)
    assert (problem["ok"], problem["exit_code"], problem["command"]) == (False, 2, "config check")
    assert "run.workers" in problem["error"]

    (tmp_path / "etl.toml").write_text('[run]\nworkers = 1\n[load]\ndirectory = "out"\n', encoding="utf-8")
    assert etl(tmp_path, "run", "--no-progress", env=env).returncode == 0
    broken = tmp_path / "out" / "broken.xml"
    broken.write_text((tmp_path / "out" / "1.xml").read_text(encoding="utf-8").replace("<ReleaseList>", "<Nope/><ReleaseList>"),
                      encoding="utf-8")
    validated = etl(tmp_path, "validate", "out", "--schema-dir", str(schema_dir), "--json", env=env)
    assert validated.returncode == 1, validated.stderr
    report = one_json(validated)
    assert (report["files"], report["valid"], report["invalid"], report["exit_code"]) == (4, 3, 1, 1)
    by_path = {Path(r["path"]).name: r for r in report["results"]}
    assert by_path["broken.xml"]["valid"] is False and by_path["broken.xml"]["xsd"]["issues"][0]["line"] > 0
    assert by_path["1.xml"]["valid"] is True and by_path["1.xml"]["ern_version"] == "4.3"
    assert not os.path.exists(tmp_path / "metrics" / "ddex.prom")
