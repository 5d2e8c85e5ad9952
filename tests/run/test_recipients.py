"""Recipients through real `etl` processes against a real PostgreSQL: what each store was sent and may no
longer have, and unfinished runs of recipients that etl.toml no longer lists.

Table target (no media, no upload): what matters here is which documents each recipient's job writes
and what `delivered` says it sent.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from etl_cli import etl, one_json

from ddex_etl.db import make_engine
from ddex_etl.demo.seed import seed_catalog
from ddex_etl.errors import ExitCode

RELEASES = 12


@pytest.fixture()
def catalog(db_url: str) -> Iterator[sa.Engine]:
    eng = make_engine(db_url, pool_size=2)
    seed_catalog(eng, RELEASES, seed=5)
    yield eng
    eng.dispose()


def sql(engine: sa.Engine, text: str, **params: Any) -> list[Any]:
    with engine.begin() as conn:
        result = conn.execute(sa.text(text), params)
        return list(result) if result.returns_rows else []


def write_config(folder: Path, db_url: str, stores: list[dict[str, Any]], run: str = "") -> None:
    lines = [
        "[database]", f"url = {json.dumps(db_url)}",
        "[extract]", "chunk_size = 4",
        "[load]", 'target = "table"',
        "[run]", "workers = 1", "retry_for = 2.0", "retry_delay = 0.1", "watermark_lag_seconds = 0", run,
    ]
    for store in stores:
        lines.append("[[recipients]]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in store.items()]
    (folder / "etl.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")


def store(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "dpid": "PADPIDA0000000010A", **extra}


def label_names(engine: sa.Engine) -> dict[int, str]:
    """release_id -> its label's name."""
    rows = sql(engine, "SELECT r.release_id, l.name FROM releases r JOIN labels l USING (label_id)")
    return {int(r[0]): str(r[1]) for r in rows}


# --------------------------------------------------------------------------- resume after a recipient was removed


def test_resume_names_the_unfinished_run_of_a_recipient_etl_toml_no_longer_lists(
    catalog: sa.Engine, db_url: str, tmp_path: Path
) -> None:
    """Issue 21 item 18: after store-b's run failed and store-b was taken out of etl.toml, `etl resume`
    said "nothing to resume" and exited 0 (this test failed there); it now names store-b's run and the fix,
    exit 2. Resuming the others by name, or putting store-b back, are the two ways out."""
    labels = label_names(catalog)
    bad = min(labels)
    other = next(name for name in sorted(set(labels.values())) if name != labels[bad])
    sql(catalog, "UPDATE tracks SET isrc = 'not an isrc' WHERE release_id = :x", x=bad)
    a, b = store("store-a", labels=[other]), store("store-b")
    # store-a skips the bad release (not its label) and succeeds; store-b stops at it (max_errors = 0).
    write_config(tmp_path, db_url, [a, b], run="max_errors = 0")
    first = etl(tmp_path, "run", "--no-progress", "--json")
    outcomes = {o["recipient"]: o for o in one_json(first)["recipients"]}
    assert (outcomes["store-a"]["status"], outcomes["store-b"]["status"]) == ("succeeded", "failed"), first.stdout
    failed_run = outcomes["store-b"]["run_id"]

    write_config(tmp_path, db_url, [a])  # store-b taken out (and the error limit with it)
    proc = etl(tmp_path, "resume", "--no-progress")
    assert proc.returncode == ExitCode.USAGE, proc.stdout + proc.stderr
    assert f"run {failed_run} (full, failed) of recipient 'store-b' is unfinished" in proc.stdout
    assert "fix: put its [[recipients]] entry back" in proc.stdout and f"`etl resume {failed_run}`" in proc.stdout
    as_json = one_json(etl(tmp_path, "resume", "--no-progress", "--json"))
    assert [(o["recipient"], o["status"], o["exit_code"]) for o in as_json["recipients"]] == [
        ("store-a", "nothing to resume", 0), ("store-b", "not in etl.toml", 2),
    ]
    # Leaving store-b out on purpose: resume the others by name.
    assert etl(tmp_path, "resume", "--no-progress", "--recipient", "store-a").returncode == 0

    # Without [[recipients]] at all, the plain job has nothing to resume: the message names store-b's run.
    write_config(tmp_path, db_url, [])
    single = etl(tmp_path, "resume", "--no-progress")
    assert single.returncode == ExitCode.USAGE
    assert f"run {failed_run} (full, failed) of 'default/store-b'" in single.stderr

    # The other way out: store-b back as it was; its run resumes (the bad release rejected: exit 3).
    write_config(tmp_path, db_url, [a, b])
    back = etl(tmp_path, "resume", "--no-progress", "--json")
    assert back.returncode == ExitCode.REJECTED, back.stdout + back.stderr
    resumed = {o["recipient"]: o for o in one_json(back)["recipients"]}["store-b"]
    assert (resumed["run_id"], resumed["status"]) == (failed_run, "succeeded")


# --------------------------------------------------------------------------- a scheduler without the Dask executor


def test_a_scheduler_without_the_dask_executor_is_warned_about_once(
    catalog: sa.Engine, db_url: str, tmp_path: Path
) -> None:
    """Issue 21 item 18: ETL_SCHEDULER alone (no ETL_EXECUTOR=dask) silently ran on this machine (this test
    failed: no warning). It still runs locally (that may be meant), but says so once per `etl run`, naming
    both settings and the fix, however many recipients run; `etl config check` says it too."""
    write_config(tmp_path, db_url, [store("store-a"), store("store-b")])
    env = {"ETL_SCHEDULER": "tcp://127.0.0.1:1"}  # nothing listens there: a Dask run would fail at start
    proc = etl(tmp_path, "run", "--no-progress", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    warning = "run.scheduler (or ETL_SCHEDULER) is 'tcp://127.0.0.1:1' but run.executor (or ETL_EXECUTOR) is 'local'"
    assert proc.stderr.count(warning) == 1, proc.stderr
    assert 'fix: set run.executor = "dask" (ETL_EXECUTOR=dask, or --executor dask)' in proc.stderr
    check = etl(tmp_path, "config", "check", env=env)
    assert check.returncode == 0 and warning in check.stderr
    # Asked for Dask, nothing to warn about (the run fails on the unreachable scheduler instead).
    dask = etl(tmp_path, "config", "check", env={**env, "ETL_EXECUTOR": "dask"})
    assert dask.returncode == 0 and "scheduler is not used" not in dask.stderr
