"""run.metrics_file: `etl run` against the seeded catalog writes a Prometheus textfile that prometheus_client's
own parser reads, with the values of the run's JSON (issue 24 item 11)."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from etl_cli import etl, one_json
from prometheus_client.parser import text_string_to_metric_families

from ddex_etl.demo.seed import seed_catalog

FIXTURES = Path(__file__).resolve().parents[1] / "delivery" / "fixtures"
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
metrics_file = "textfile/ddex_etl.prom"
[[recipients]]
name = "store-a"
dpid = "PADPIDA0000000010M"
target = "store-a"
[[recipients]]
name = "store-b"
dpid = "PADPIDA0000000020I"
target = "store-b"
"""


@pytest.fixture()
def label(db_url: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    engine = sa.create_engine(db_url)
    try:
        seed_catalog(engine, 5, seed=4, media_dir=tmp_path / "media")
        with engine.begin() as conn:  # one release without a cover: rejected, so "rejected" is not just 0
            conn.execute(sa.text("DELETE FROM release_images WHERE release_id = 3"))
    finally:
        engine.dispose()
    (tmp_path / "etl.toml").write_text(TOML, encoding="utf-8")
    for folder in ("store-a", "store-b", "textfile"):
        (tmp_path / folder).mkdir()
    yield {"ETL_DATABASE_URL": db_url}


def samples(path: Path) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """(metric name, labels) -> value, read by prometheus_client's parser."""
    out = {}
    for family in text_string_to_metric_families(path.read_text(encoding="utf-8")):
        assert family.type == "gauge", family.name
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return found[(f"ddex_etl_{name}", frozenset({"job": "default", **labels}.items()))]


@pytest.mark.slow  # three real `etl` runs with media
def test_the_metrics_textfile_holds_the_runs_json_per_recipient(label: dict[str, str], tmp_path: Path) -> None:
    metrics = tmp_path / "textfile" / "ddex_etl.prom"
    first = etl(tmp_path, "run", "--no-progress", "--json", env=label)
    assert first.returncode == 3, first.stderr
    found = samples(metrics)
    for r in one_json(first)["recipients"]:
        name = r["recipient"]
        assert value(found, "last_run_info", recipient=name, run_id=str(r["run_id"]), mode="full",
                     status="succeeded") == 1
        assert value(found, "last_run_exit_code", recipient=name) == r["exit_code"] == 3
        assert value(found, "last_run_success", recipient=name) == 1
        assert value(found, "last_run_duration_seconds", recipient=name) == pytest.approx(r["seconds"])
        for outcome in ("built", "rejected", "skipped", "takedowns", "unchanged"):
            assert value(found, "last_run_releases", recipient=name, outcome=outcome) == r[outcome]
        assert (r["built"], r["rejected"]) == (4, 1)
        assert value(found, "last_run_delivered_files", recipient=name) == r["delivery"]["uploaded"] > 4
        assert value(found, "last_run_delivered_bytes", recipient=name) == r["delivery"]["bytes"] > 0
        assert value(found, "last_run_delivered_skipped_files", recipient=name) == r["delivery"]["skipped"]
    assert [p.name for p in metrics.parent.iterdir()] == ["ddex_etl.prom"]  # written atomically: no temp left

    # store-a answers: two releases accepted, one rejected; the next run (reading them first) counts them by status
    batch = tmp_path / "store-a" / one_json(first)["recipients"][0]["batch_id"]
    folders = sorted(p for p in batch.iterdir() if p.is_dir())
    for folder, template in zip(folders, ("ACK_accepted.xml", "ACK_accepted.xml", "ACK_rejected.xml"), strict=False):
        text = (FIXTURES / template).read_text(encoding="utf-8")
        text = text.replace("0602445700000", folder.name).replace("0602445700001", folder.name)
        (folder / f"ACK_{folder.name}.xml").write_text(text, encoding="utf-8")
    second = etl(tmp_path, "run", "--recipient", "store-a", "--incremental", "--no-progress", "--json", env=label)
    run_a = one_json(second)["recipients"][0]
    found = samples(metrics)
    assert value(found, "store_acknowledgements", recipient="store-a", status="FileOK") == 2
    assert value(found, "store_acknowledgements", recipient="store-a", status="ResourceCorrupt") == 1
    assert [a["status"] for a in run_a["acks"]["rejected"]] == ["ResourceCorrupt"]
    assert value(found, "last_run_info", recipient="store-a", run_id=str(run_a["run_id"]), mode="incremental",
                 status=run_a["status"]) == 1
    assert value(found, "last_run_releases", recipient="store-a", outcome="unchanged") == run_a["unchanged"]
    # store-b did not run: its series stay as the first run left them
    run_b = one_json(first)["recipients"][1]
    assert value(found, "last_run_info", recipient="store-b", run_id=str(run_b["run_id"]), mode="full",
                 status="succeeded") == 1
    assert value(found, "last_run_delivered_bytes", recipient="store-b") == run_b["delivery"]["bytes"]
    assert not any(labels and dict(labels).get("recipient") == "store-b" and name.endswith("acknowledgements")
                   for name, labels in found)


def test_a_metrics_folder_that_does_not_exist_is_a_configuration_error(tmp_path: Path) -> None:
    (tmp_path / "etl.toml").write_text('[run]\nmetrics_file = "nowhere/x.prom"\n', encoding="utf-8")
    proc = etl(tmp_path, "config", "check", "--json")
    assert proc.returncode == 2
    assert "run.metrics_file: folder" in json.loads(proc.stdout)["error"]


def test_a_run_without_recipients_labels_its_metrics_with_the_recipient_name(
    db_url: str, tmp_path: Path
) -> None:
    engine = sa.create_engine(db_url)
    try:
        seed_catalog(engine, 2, seed=1)
    finally:
        engine.dispose()
    (tmp_path / "etl.toml").write_text('[run]\nworkers = 1\nmetrics_file = "m.prom"\n[transform]\n'
                                       'recipient_name = "Only Store"\n', encoding="utf-8")
    proc = etl(tmp_path, "run", "--no-progress", "--json", env={"ETL_DATABASE_URL": db_url})
    assert proc.returncode == 0, proc.stderr
    found = samples(tmp_path / "m.prom")
    summary: dict[str, Any] = one_json(proc)
    assert value(found, "last_run_releases", recipient="Only Store", outcome="built") == summary["built"] == 2
    assert value(found, "last_run_exit_code", recipient="Only Store") == 0
