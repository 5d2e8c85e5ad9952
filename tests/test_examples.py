"""examples/: the scheduler callables (`etl_jobs`) against a real `etl` process and a real PostgreSQL, exit code by
exit code; the Airflow and Dagster wrappers (neither scheduler is installed here) parse and only call `etl_jobs`."""
from __future__ import annotations

import ast
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from ddex_etl.demo.seed import seed_catalog
from ddex_etl.state.joblock import job_lock_key

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
FIXTURES = Path(__file__).resolve().parent / "delivery" / "fixtures"
ETL = [sys.executable, "-m", "ddex_etl"]
TOML = """
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
target = "{b_target}"
"""


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("etl_jobs", EXAMPLES / "etl_jobs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


jobs = _load()


@pytest.fixture()
def label(db_url: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    engine = sa.create_engine(db_url)
    try:
        seed_catalog(engine, 4, seed=9, media_dir=tmp_path / "media")
    finally:
        engine.dispose()
    (tmp_path / "etl.toml").write_text(TOML.format(b_target="store-b"), encoding="utf-8")
    (tmp_path / "store-a").mkdir()
    (tmp_path / "store-b").mkdir()
    yield {"command": ETL, "cwd": tmp_path, "env": {"ETL_DATABASE_URL": db_url}}


def _answer_every_message(root: Path, batch_id: str, template: str) -> None:
    text = (FIXTURES / template).read_text(encoding="utf-8")
    for folder in (p for p in (root / batch_id).iterdir() if p.is_dir()):
        ack = text.replace("0602445700000", folder.name).replace("0602445700001", folder.name)
        (folder / f"ACK_{folder.name}.xml").write_text(ack, encoding="utf-8")


@pytest.mark.slow  # several real `etl` runs
def test_run_etl_returns_the_summary_and_raises_one_exception_per_exit_code(
    label: dict[str, Any], db_url: str, tmp_path: Path
) -> None:
    summary = jobs.run_etl(**label)
    assert summary["exit_code"] == 0 and [r["status"] for r in summary["recipients"]] == ["succeeded"] * 2

    with pytest.raises(jobs.ConfigurationError) as config:
        jobs.run_etl("--recipient", "nobody", **label)
    assert config.value.exit_code == 2 and not config.value.retryable and "nobody" in str(config.value)

    url = make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as holder:  # the previous night's run, still going
        holder.execute("SELECT pg_advisory_lock(%s)", (job_lock_key("default/store-a"),))
        with pytest.raises(jobs.JobLocked) as locked:
            jobs.run_etl("--recipient", "store-a", **label)
    assert locked.value.exit_code == 4 and locked.value.summary["exit_code"] == 4

    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM release_images WHERE release_id = 2"))
    engine.dispose()
    with pytest.raises(jobs.RejectedReleases) as rejected:
        jobs.run_etl("--release-id", "2", "--force", "--recipient", "store-a", **label)
    assert rejected.value.exit_code == 3 and rejected.value.summary["recipients"][0]["rejected"] == 1
    assert "etl: recipient store-a" in str(rejected.value) and "etl errors" in str(rejected.value)

    (tmp_path / "etl.toml").write_text(TOML.format(b_target="/dev/null/in"), encoding="utf-8")
    with pytest.raises(jobs.RunFailed) as failed:
        jobs.run_etl("--recipient", "store-b", "--release-id", "1", "--force", **label)
    assert failed.value.retryable and failed.value.exit_code == 1
    assert "etl: recipient store-b: not started" in str(failed.value) and "/dev/null/in" in str(failed.value)


@pytest.mark.slow  # several real `etl` runs
def test_the_ack_sensor_waits_for_every_message_then_passes_or_fails_on_a_rejection(
    label: dict[str, Any], tmp_path: Path
) -> None:
    summary = jobs.run_etl(**label)
    awaited = jobs.awaited_acknowledgements(summary)
    assert set(awaited) == {"store-a", "store-b"} and all(n == 4 for _, n in awaited.values())
    assert jobs.acks_settled(summary, **label) is False  # nothing answered yet

    _answer_every_message(tmp_path / "store-a", awaited["store-a"][0], "ACK_accepted.xml")
    assert jobs.acks_settled(summary, **label) is False  # store-b has not answered
    only_a = {**summary, "recipients": [r for r in summary["recipients"] if r["recipient"] == "store-a"]}
    assert jobs.acks_settled(only_a, **label) is True  # every message store-a was sent is accepted

    # store-b accepts all but its first release, which it rejects (a batch answered in full is settled:
    # its answers are read once, so they are all in place before the sensor looks)
    _answer_every_message(tmp_path / "store-b", awaited["store-b"][0], "ACK_accepted.xml")
    first = min(p for p in (tmp_path / "store-b" / awaited["store-b"][0]).iterdir() if p.is_dir())
    rejected = (FIXTURES / "ACK_rejected.xml").read_text(encoding="utf-8").replace("0602445700001", first.name)
    (first / f"ACK_{first.name}.xml").write_text(rejected, encoding="utf-8")
    with pytest.raises(jobs.StoreRejected) as exc:
        jobs.acks_settled(summary, **label)
    assert exc.value.exit_code == 3 and exc.value.summary["recipients"][1]["rejected"]


def test_a_summary_without_delivered_batches_awaits_nothing() -> None:
    assert jobs.acks_settled({"recipients": [{"recipient": "a", "batch_id": None, "built": 0}]}) is True
    assert jobs.awaited_acknowledgements({"job": "default", "run_id": 1}) == {}


@pytest.mark.parametrize("name", ["airflow_dag.py", "dagster_assets.py"])
def test_the_scheduler_wrappers_parse_and_leave_the_logic_to_etl_jobs(name: str) -> None:
    tree = ast.parse((EXAMPLES / name).read_text(encoding="utf-8"))
    called = {f"{n.value.id}.{n.attr}" for n in ast.walk(tree)
              if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "etl_jobs"}
    assert {"etl_jobs.run_etl", "etl_jobs.acks_settled", "etl_jobs.JobLocked", "etl_jobs.StoreRejected"} <= called
    assert called <= {f"etl_jobs.{n}" for n in dir(jobs)}, "a wrapper names something etl_jobs does not have"
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "run"
                and getattr(getattr(n.func, "value", None), "id", "") == "subprocess"]
