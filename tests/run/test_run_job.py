"""The run pipeline against a real PostgreSQL: targets, modes, resume, locks, rejects."""
from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from messages import without_header

from ddex_etl import run as run_api
from ddex_etl import state
from ddex_etl.config import Config, DatabaseConfig
from ddex_etl.db import make_engine
from ddex_etl.demo.seed import seed_catalog
from ddex_etl.errors import ConfigError, ExitCode, LockHeldError
from ddex_etl.masking import mask_text
from ddex_etl.state.joblock import JobLock, job_lock_key

RELEASES = 240


@pytest.fixture()
def engine(db_url: str) -> Iterator[sa.Engine]:
    eng = make_engine(db_url, pool_size=2)
    seed_catalog(eng, RELEASES, seed=7)
    yield eng
    eng.dispose()


def make_cfg(db_url: str, tmp_path: Path, **sections: dict) -> Config:
    """A small-chunk, two-worker configuration writing under tmp_path."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    base = Config(database=DatabaseConfig(url=db_url, pool_size=2))
    defaults: dict[str, dict] = {
        "extract": {"chunk_size": 25},
        "load": {"directory": tmp_path / "out"},
        "run": {"workers": 2, "retry_delay": 0.01},
    }
    for name, values in sections.items():
        defaults[name] = {**defaults.get(name, {}), **values}
    return base.with_overrides(**defaults)


def table_docs(engine: sa.Engine, schema: str = "ddex_etl", table: str = "documents") -> dict[int, bytes]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f'SELECT release_id, document FROM "{schema}"."{table}"')).all()
    return {int(r[0]): without_header(bytes(r[1])) for r in rows}


def tree(root: Path) -> dict[str, bytes]:
    """Files by path; messages without their MessageHeader.

    Two runs deliver the same content under different MessageIds and creation
    times (by design: a message id is never reused), so comparisons across
    runs compare everything but the header.
    """
    return {str(p.relative_to(root)): without_header(p.read_bytes()) for p in sorted(root.rglob("*")) if p.is_file()}


def catalog_ids(engine: sa.Engine) -> set[int]:
    with engine.connect() as conn:
        return {int(r[0]) for r in conn.execute(sa.text("SELECT release_id FROM releases WHERE deleted_at IS NULL"))}


# ---------------------------------------------------------------- targets and layouts


def test_table_target_builds_one_document_per_release(engine: sa.Engine, db_url: str, tmp_path: Path) -> None:
    cfg = make_cfg(db_url, tmp_path, load={"target": "table"})
    report = run_api.run(cfg, progress=False)
    ids = catalog_ids(engine)
    assert (report.status, report.built, report.rejected, report.exit_code) == ("succeeded", len(ids), 0, ExitCode.OK)
    docs = table_docs(engine)
    assert set(docs) == ids
    assert all(d.startswith(b"<?xml") for d in docs.values())
    assert report.peak_memory_mb > 0 and report.releases_per_second > 0
    assert f"run {report.run_id}" in report.summary()


def test_flat_files_match_the_table_byte_for_byte(engine: sa.Engine, db_url: str, tmp_path: Path) -> None:
    run_api.run(make_cfg(db_url, tmp_path, load={"target": "table"}), progress=False)
    report = run_api.run(make_cfg(db_url, tmp_path, load={"target": "files", "layout": "flat"}), progress=False)
    files = tree(tmp_path / "out")
    assert report.built == len(files) == len(catalog_ids(engine))
    assert files == {f"{rid}.xml": doc for rid, doc in table_docs(engine).items()}


def test_ddex_batch_layout(engine: sa.Engine, db_url: str, tmp_path: Path) -> None:
    report = run_api.run(make_cfg(db_url, tmp_path, load={"layout": "ddex-batch"}), progress=False)
    assert report.batch_id is not None and len(report.batch_id) == 17 and report.batch_id.isdigit()
    batch = tmp_path / "out" / report.batch_id
    assert report.output == str(batch)
    files = tree(batch)
    assert files.pop(f"BatchComplete_{report.batch_id}.xml") == b""
    with engine.connect() as conn:
        icpn = {int(r[0]): r[1] for r in conn.execute(sa.text("SELECT release_id, icpn FROM releases"))}
    expected = {f"{icpn[r] or r}/{icpn[r] or r}.xml" for r in catalog_ids(engine)}
    assert set(files) == expected


def test_keyset_and_offset_modes_give_the_same_documents(engine: sa.Engine, db_url: str, tmp_path: Path) -> None:
    keyset = run_api.run(make_cfg(db_url, tmp_path / "k", extract={"mode": "keyset"}), progress=False)
    offset = run_api.run(make_cfg(db_url, tmp_path / "o", extract={"mode": "offset"}), progress=False)
    assert keyset.built == offset.built == RELEASES
    assert tree(tmp_path / "k" / "out") == tree(tmp_path / "o" / "out")


@pytest.mark.parametrize(("executor", "workers"), [
    ("local", 1), ("local", 3),
    pytest.param("dask", 2, marks=pytest.mark.skipif(
        importlib.util.find_spec("distributed") is None, reason="needs ddex-etl[dask]")),
])
def test_worker_count_does_not_change_the_output(
    engine: sa.Engine, db_url: str, tmp_path: Path, executor: str, workers: int
) -> None:
    run_api.run(make_cfg(db_url, tmp_path / "ref", run={"workers": 2}), progress=False)
    run_api.run(make_cfg(db_url, tmp_path / "w", run={"workers": workers, "executor": executor}), progress=False)
    assert tree(tmp_path / "w" / "out") == tree(tmp_path / "ref" / "out")


def test_custom_output_table(engine: sa.Engine, db_url: str, tmp_path: Path) -> None:
    report = run_api.run(make_cfg(db_url, tmp_path, load={"target": "table", "table": "ern_out"}), progress=False)
    assert report.output == "ddex_etl.ern_out"
    assert len(table_docs(engine, table="ern_out")) == RELEASES


# ---------------------------------------------------------------- runs, resume, lock


def test_a_finished_job_starts_a_new_run_and_status_reports_it(engine: sa.Engine, db_url: str, tmp_path: Path) -> None:
    cfg = make_cfg(db_url, tmp_path, load={"target": "table"}, run={"job": "nightly"})
    first = run_api.run(cfg, progress=False)
    second = run_api.run(cfg, progress=False)
    assert second.run_id != first.run_id and not second.resumed
    assert len(table_docs(engine)) == RELEASES  # upserted, never duplicated
    [job] = run_api.status(cfg)
    assert (job.job, job.status, job.last_run.run_id, job.last_success.run_id) == (  # type: ignore[union-attr]
        "nightly", "succeeded", second.run_id, second.run_id
    )
    runs = run_api.recent_runs(cfg, limit=5)
    assert [r.run_id for r in runs] == [second.run_id, first.run_id]
    assert all(r.built == RELEASES and r.status == "succeeded" for r in runs)


def test_status_before_any_run_is_empty(db_url: str, tmp_path: Path) -> None:
    cfg = make_cfg(db_url, tmp_path)
    assert run_api.status(cfg) == []
    assert run_api.recent_runs(cfg) == []
    assert run_api.rejected(cfg) == []


def test_a_second_run_of_a_running_job_is_refused(engine: sa.Engine, db_url: str, tmp_path: Path) -> None:
    cfg = make_cfg(db_url, tmp_path, run={"job": "busy"})
    state.upgrade(engine, "ddex_etl")
    holder = JobLock(engine, "ddex_etl", "busy")
    holder.acquire()
    try:
        with pytest.raises(LockHeldError, match="job 'busy' is already running.*PostgreSQL backend pid") as info:
            run_api.run(cfg, progress=False)
        assert info.value.exit_code == ExitCode.LOCKED
        # another job is not blocked
        assert run_api.run(cfg.with_overrides(run={"job": "other"}), progress=False).built == RELEASES
    finally:
        holder.release()
    assert run_api.run(cfg, progress=False).built == RELEASES  # released: runs again


def _break_releases(engine: sa.Engine, ids: list[int]) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE tracks SET isrc = 'NOT-AN-ISRC' WHERE release_id = ANY(:ids)"), {"ids": ids})


def test_bad_releases_are_rejected_recorded_and_retried(engine: sa.Engine, db_url: str, tmp_path: Path) -> None:
    ids = sorted(catalog_ids(engine))
    bad = [ids[3], ids[50], ids[51], ids[200]]
    _break_releases(engine, bad)
    cfg = make_cfg(db_url, tmp_path, load={"target": "table"})
    report = run_api.run(cfg, progress=False)
    assert (report.status, report.built, report.rejected) == ("succeeded", RELEASES - 4, 4)
    assert report.exit_code == ExitCode.REJECTED
    assert set(table_docs(engine)) == set(ids) - set(bad)  # every good release arrived
    rejects = run_api.rejected(cfg)
    assert [r.release_id for r in rejects] == bad
    for r in rejects:
        assert (r.stage, r.error_kind, r.retryable) == ("transform", "ReleaseDataError", False)
        assert f"release {r.release_id}" in r.message and "isrc" in r.message and "NOT-AN-ISRC" in r.message
        assert r.input["release"]["release_id"] == r.release_id  # enough to reproduce

    # Fix two of them; retry-failed rebuilds only the rejects and resolves the fixed ones.
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE tracks SET isrc = 'USS1Z' || lpad(track_id::text, 7, '0') WHERE release_id = ANY(:ids)"),
            {"ids": bad[:2]},
        )
    retry = run_api.retry_failed(cfg, report.run_id, progress=False)
    assert (retry.mode, retry.built, retry.rejected) == ("retry", 2, 2)
    assert set(table_docs(engine)) == set(ids) - set(bad[2:])
    still = run_api.rejected(cfg, report.run_id)
    assert [(r.release_id, r.attempts) for r in still] == [(bad[2], 2), (bad[3], 2)]
    resolved = [r for r in run_api.rejected(cfg, report.run_id, include_resolved=True) if r.resolved_at]
    assert sorted(r.release_id for r in resolved) == bad[:2]
    assert all(r.resolved_by_run == retry.run_id for r in resolved)


@pytest.mark.parametrize(
    ("run_cfg", "stops_after_rejects"),
    [
        ({"fail_fast": True}, 3),  # the whole first chunk is recorded
        ({"continue_on_error": False}, 3),
        ({"max_errors": 3}, 6),
        ({"max_error_rate": 0.1}, 3),
    ],
)
def test_error_limits_stop_the_run(
    engine: sa.Engine, db_url: str, tmp_path: Path, run_cfg: dict, stops_after_rejects: int
) -> None:
    ids = sorted(catalog_ids(engine))
    _break_releases(engine, ids[10:13] + ids[100:103])
    cfg = make_cfg(db_url, tmp_path, load={"target": "table"}, run={"workers": 1, **run_cfg})
    with pytest.raises(run_api.RunFailed, match=r"run \d+ stopped") as info:
        run_api.run(cfg, progress=False)
    failed = info.value.report  # type: ignore[attr-defined]
    assert failed.status == "failed" and failed.exit_code == ExitCode.FAILED
    assert failed.rejected == stops_after_rejects and failed.built < RELEASES - 6
    [row] = run_api.recent_runs(cfg)
    assert row.status == "failed" and "stopped" in (row.error or "")


def test_a_failed_run_is_continued_by_the_next_run(engine: sa.Engine, db_url: str, tmp_path: Path) -> None:
    ids = sorted(catalog_ids(engine))
    bad = ids[10:13] + ids[100:103]
    _break_releases(engine, bad)
    strict = make_cfg(db_url, tmp_path, load={"target": "table"}, run={"workers": 1, "max_errors": 3})
    with pytest.raises(run_api.RunFailed) as info:
        run_api.run(strict, progress=False)
    failed = info.value.report  # type: ignore[attr-defined]
    # With the policy relaxed (run settings are not part of the fingerprint), the same run continues.
    relaxed = make_cfg(db_url, tmp_path, load={"target": "table"}, run={"workers": 2})
    # Resuming it with output settings changed would mix outputs: refused (a plain `etl run`
    # would supersede it instead: tests/cli/test_cli_operator.py).
    with pytest.raises(ConfigError, match="another configuration"):
        run_api.resume(relaxed.with_overrides(transform={"sender_name": "Other"}), failed.run_id, progress=False)
    done = run_api.run(relaxed, progress=False)
    assert done.run_id == failed.run_id and done.resumed and done.attempts == 2
    assert (done.built, done.rejected) == (RELEASES - len(bad), len(bad))
    assert set(table_docs(engine)) == set(ids) - set(bad)
    assert [r.release_id for r in run_api.rejected(relaxed)] == bad  # recorded once each, not per attempt


def test_resume_without_an_unfinished_run_is_a_config_error(engine: sa.Engine, db_url: str, tmp_path: Path) -> None:
    cfg = make_cfg(db_url, tmp_path)
    report = run_api.run(cfg, progress=False)
    with pytest.raises(ConfigError, match="no unfinished run"):
        run_api.resume(cfg)
    with pytest.raises(ConfigError, match="already succeeded"):
        run_api.resume(cfg, report.run_id)
    with pytest.raises(ConfigError, match="not found"):
        run_api.resume(cfg, 999)


def test_missing_output_directory_fails_before_any_run_row(engine: sa.Engine, db_url: str, tmp_path: Path) -> None:
    cfg = make_cfg(db_url, tmp_path, load={"directory": tmp_path / "missing" / "out"})
    from ddex_etl.errors import OutputError

    with pytest.raises(OutputError, match="does not exist"):
        run_api.run(cfg, progress=False)
    assert run_api.recent_runs(cfg) == []


def test_keyset_resume_neither_skips_nor_repeats_after_catalog_changes(
    engine: sa.Engine, db_url: str, tmp_path: Path
) -> None:
    """Stop a keyset run half way, change the catalog on both sides of the checkpoint, resume."""
    ids = sorted(catalog_ids(engine))
    _break_releases(engine, [ids[120]])
    cfg = make_cfg(db_url, tmp_path, load={"target": "table"}, run={"workers": 1, "fail_fast": True})
    with pytest.raises(run_api.RunFailed) as info:
        run_api.run(cfg, progress=False)
    run_id = info.value.report.run_id  # type: ignore[attr-defined]
    with engine.connect() as conn:
        cp = state.get_checkpoint(conn, "ddex_etl", run_id)
    assert cp.last_key is not None and ids[0] <= cp.last_key < ids[-1]
    before = set(table_docs(engine))
    # Delete one release already loaded and one not yet reached.
    gone_done, gone_ahead = ids[5], ids[200]
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM releases WHERE release_id = ANY(:ids)"), {"ids": [gone_done, gone_ahead]})
    relaxed = make_cfg(db_url, tmp_path, load={"target": "table"}, run={"workers": 1})
    done = run_api.run(relaxed, progress=False)
    assert done.run_id == run_id
    after = table_docs(engine)
    assert gone_ahead not in after
    assert set(after) == (set(ids) - {ids[120], gone_ahead}) | before
    # every release after the checkpoint was built exactly once, none before it twice
    with engine.connect() as conn:
        per_run = conn.execute(
            sa.text("SELECT count(*) FROM ddex_etl.documents WHERE release_id > :k"), {"k": cp.last_key}
        ).scalar()
    assert per_run == len([i for i in ids if i > cp.last_key and i not in (ids[120], gone_ahead)])


def test_a_resume_leaves_chunks_loaded_ahead_of_the_checkpoint_alone(
    engine: sa.Engine, db_url: str, tmp_path: Path
) -> None:
    """A kill can land while chunk 1 is still in a worker but chunk 2, finished first, is loaded.

    The resume pages again from the contiguous checkpoint (after chunk 0) and
    redoes chunk 1 and the chunk that was in the other worker, but not chunk 2.
    """
    cfg = make_cfg(db_url, tmp_path, load={"target": "table"})
    first = run_api.run(cfg, progress=False)
    reference = table_docs(engine)
    from ddex_etl import extract

    chunks = [list(c.release_ids) for c in extract.iter_key_chunks(engine, cfg.extract)]
    c0, c2 = chunks[0], chunks[2]
    ahead = [{"n": 2, "lo": c2[0], "hi": c2[-1]}]
    with engine.begin() as conn:
        # The state such a kill leaves: chunks 0 and 2 loaded, chunks 1 and 3 handed out.
        conn.execute(
            sa.text("UPDATE ddex_etl.runs SET status = 'interrupted', built = :b WHERE id = :r"),
            {"b": len(c0) + len(c2), "r": first.run_id},
        )
        conn.execute(
            sa.text(
                """UPDATE ddex_etl.checkpoints SET last_key = :k, next_offset = :o, chunks_done = 1,
                chunks_dispatched = 4, ahead = CAST(:a AS jsonb) WHERE run_id = :r"""
            ),
            {"k": c0[-1], "o": len(c0), "a": json.dumps(ahead), "r": first.run_id},
        )
        loaded = c0 + c2
        conn.execute(sa.text("DELETE FROM ddex_etl.documents WHERE NOT release_id = ANY(:ids)"), {"ids": loaded})
        # Chunk 2's documents get a marker: building them again would overwrite it.
        conn.execute(
            sa.text("UPDATE ddex_etl.documents SET document = 'loaded ahead' WHERE release_id = ANY(:ids)"), {"ids": c2}
        )

    done = run_api.resume(cfg, first.run_id, progress=False)

    docs = table_docs(engine)
    assert set(docs) == set(reference)
    assert {docs[i] for i in c2} == {b"loaded ahead"}
    assert all(docs[i] == reference[i] for i in docs if i not in c2)
    assert (done.status, done.built, done.chunks_redone) == ("succeeded", len(reference), 2)
    with engine.connect() as conn:
        cp = state.get_checkpoint(conn, "ddex_etl", first.run_id)
    # the checkpoint caught up: nothing left ahead, no range left to skip
    assert (cp.chunks_done, cp.ahead, cp.skip) == (len(chunks), [], [])


def test_a_run_whose_chunks_finish_out_of_order_ends_with_a_whole_checkpoint(
    engine: sa.Engine, db_url: str, tmp_path: Path
) -> None:
    cfg = make_cfg(db_url, tmp_path, extract={"chunk_size": 5}, run={"workers": 3})
    report = run_api.run(cfg, progress=False)
    assert report.built == len(catalog_ids(engine)) == len(tree(tmp_path / "out"))
    with engine.connect() as conn:
        cp = state.get_checkpoint(conn, "ddex_etl", report.run_id)
    assert (cp.chunks_done, cp.chunks_dispatched, cp.ahead, cp.skip) == (-(-report.built // 5),) * 2 + ([], [])


# ---------------------------------------------------------------- small parts


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cannot connect to postgresql://etl:s3cret@db:5432/catalog now",
         "cannot connect to postgresql://etl:***@db:5432/catalog now"),
        ("postgresql+psycopg://u:p%40ss@h/d", "postgresql+psycopg://u:***@h/d"),
        ("no url here", "no url here"),
        (None, None),
    ],
)
def test_mask_hides_passwords_in_messages(text: str | None, expected: str | None) -> None:
    assert mask_text(text) == expected


def test_job_lock_key_is_stable_and_per_job() -> None:
    assert job_lock_key("nightly") == job_lock_key("nightly")
    assert job_lock_key("nightly") != job_lock_key("weekly")
    assert -(2**63) <= job_lock_key("nightly") < 2**63


@pytest.mark.parametrize(
    ("status", "rejected", "code"),
    [("succeeded", 0, ExitCode.OK), ("succeeded", 2, ExitCode.REJECTED), ("failed", 0, ExitCode.FAILED),
     ("interrupted", 0, ExitCode.INTERRUPTED)],
)
def test_report_exit_codes(status: str, rejected: int, code: int) -> None:
    report = run_api.RunReport(
        run_id=1, job="j", status=status, mode="full", built=10, rejected=rejected, skipped=0, seconds=2.0,
        releases_per_second=5.0, peak_memory_mb=100.0, target="files",
    )
    assert report.exit_code == code
    assert report.as_dict()["exit_code"] == code
    assert ("etl resume 1" in report.summary()) == (status in ("failed", "interrupted"))


def test_plain_progress_lines(capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    from ddex_etl.progress import LogReporter, reporter_for

    assert isinstance(reporter_for("j", None, 10.0), LogReporter)  # pytest's stderr is not a terminal
    rep = LogReporter("nightly", interval=0.1, stream=sys.stderr)
    rep.start(total=1000, done=0)
    import time

    time.sleep(0.15)
    rep.update(500, 3)
    rep.stop()
    err = capsys.readouterr().err
    assert "job nightly: starting at 0 of 1000 releases" in err
    assert "job nightly: 500/1000 (50.0%), 3 rejected" in err and "releases/s" in err and "ETA" in err


def test_offset_mode_resume_skips_chunks_loaded_ahead_in_any_stable_order(
    engine: sa.Engine, db_url: str, tmp_path: Path
) -> None:
    """Offset paging in the keys query's own order (here by md5, not by id): a chunk's ids span
    no id range, so chunks loaded ahead before a kill are skipped by number, and nothing is lost."""
    keys = tmp_path / "keys.sql"
    keys.write_text(
        "SELECT release_id FROM releases WHERE deleted_at IS NULL "
        "ORDER BY md5(release_id::text), release_id OFFSET :offset LIMIT :limit"
    )
    cfg = make_cfg(db_url, tmp_path, load={"target": "table"},
                   extract={"mode": "offset", "keys_query": keys, "chunk_size": 20})
    first = run_api.run(cfg, progress=False)
    reference = table_docs(engine)
    assert first.built == len(reference) == len(catalog_ids(engine))
    from ddex_etl import extract

    chunks = [list(c.release_ids) for c in extract.iter_key_chunks(engine, cfg.extract)]
    c0, c3, c4 = chunks[0], chunks[3], chunks[4]
    assert sorted(c3) != c3  # the order really is not by id
    ahead = [{"n": n, "lo": chunks[n][0], "hi": chunks[n][-1]} for n in (3, 4)]
    with engine.begin() as conn:
        # The state a kill leaves: chunk 0 loaded, 3 and 4 loaded ahead, 1, 2 and 5 handed out.
        conn.execute(
            sa.text("UPDATE ddex_etl.runs SET status = 'interrupted', built = :b WHERE id = :r"),
            {"b": len(c0) + len(c3) + len(c4), "r": first.run_id},
        )
        conn.execute(
            sa.text(
                """UPDATE ddex_etl.checkpoints SET last_key = :k, next_offset = :o, chunks_done = 1,
                chunks_dispatched = 6, ahead = CAST(:a AS jsonb) WHERE run_id = :r"""
            ),
            {"k": c0[-1], "o": len(c0), "a": json.dumps(ahead), "r": first.run_id},
        )
        loaded = c0 + c3 + c4
        conn.execute(sa.text("DELETE FROM ddex_etl.documents WHERE NOT release_id = ANY(:ids)"), {"ids": loaded})
        conn.execute(
            sa.text("UPDATE ddex_etl.documents SET document = 'loaded ahead' WHERE release_id = ANY(:ids)"),
            {"ids": c3 + c4},
        )

    done = run_api.resume(cfg, first.run_id, progress=False)

    docs = table_docs(engine)
    assert set(docs) == set(reference)  # nothing lost
    assert {docs[i] for i in c3 + c4} == {b"loaded ahead"}  # nothing built twice
    assert all(docs[i] == reference[i] for i in docs if i not in c3 + c4)
    assert (done.status, done.built, done.chunks_redone) == ("succeeded", len(reference), 3)
    with engine.connect() as conn:
        cp = state.get_checkpoint(conn, "ddex_etl", first.run_id)
    assert (cp.chunks_done, cp.ahead, cp.skip) == (len(chunks), [], [])


def test_workers_connect_with_database_worker_url(engine: sa.Engine, db_url: str, tmp_path: Path) -> None:
    """database.worker_url (a pooler, say) is what the workers use; the coordinator keeps database.url."""
    from sqlalchemy.engine import make_url

    missing = make_url(db_url).set(database="etl_no_such_worker_db").render_as_string(hide_password=False)
    cfg = make_cfg(db_url, tmp_path, database={"worker_url": missing}, run={"retry_for": 0.0})
    with pytest.raises(Exception, match="etl_no_such_worker_db") as info:
        run_api.run(cfg, progress=False)
    assert getattr(info.value, "exit_code", None) == ExitCode.FAILED
    with engine.connect() as conn:  # the coordinator reached its own database: the run row says why it failed
        error = conn.execute(sa.text("SELECT error FROM ddex_etl.runs ORDER BY id DESC LIMIT 1")).scalar()
    assert error is not None and "etl_no_such_worker_db" in error
    fine = make_cfg(db_url, tmp_path / "again", database={"worker_url": db_url})
    assert run_api.run(fine, progress=False).status == "succeeded"
