"""State tables: migrations up/down/current in their own schema, run and checkpoint rows."""
from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from ddex_etl import state
from ddex_etl.db import make_engine
from ddex_etl.errors import ConfigError
from ddex_etl.run.loop import mark_interrupted_now, track_backends


@pytest.fixture()
def engine(db_url: str):
    eng = make_engine(db_url, pool_size=2)
    yield eng
    eng.dispose()


def _tables(engine: sa.Engine, schema: str) -> set[str]:
    with engine.connect() as conn:
        return {
            r[0]
            for r in conn.execute(
                sa.text("SELECT table_name FROM information_schema.tables WHERE table_schema = :s"), {"s": schema}
            )
        }


STATE_TABLES = {
    "alembic_version", "runs", "checkpoints", "rejected_releases", "documents", "delivered", "claimed_identifiers", "release_isrcs", "store_acks",
    "ack_batches",
}


def test_the_head_constant_is_alembics_head() -> None:
    # ensure_current compares with state.HEAD; a new migration must move it too.
    assert state.HEAD == state.head()


@pytest.mark.parametrize("schema", ["ddex_etl", "etl_state_2"])
def test_upgrade_creates_the_tables_in_their_own_schema(engine: sa.Engine, schema: str) -> None:
    assert state.current(engine, schema) is None
    state.upgrade(engine, schema)
    assert state.current(engine, schema) == state.head()
    assert _tables(engine, schema) == STATE_TABLES
    assert _tables(engine, "public") == set()  # nothing leaks into the catalog's schema


def test_upgrade_twice_is_a_no_op_and_downgrade_removes_the_tables(engine: sa.Engine) -> None:
    state.upgrade(engine, "ddex_etl")
    state.upgrade(engine, "ddex_etl")
    assert state.current(engine, "ddex_etl") == state.head()
    state.downgrade(engine, "ddex_etl", "base")
    assert state.current(engine, "ddex_etl") is None
    assert _tables(engine, "ddex_etl") <= {"alembic_version"}
    state.upgrade(engine, "ddex_etl")  # and back up again
    assert _tables(engine, "ddex_etl") == STATE_TABLES


def test_downgrade_one_step_from_the_first_revision_empties_the_schema(engine: sa.Engine) -> None:
    state.upgrade(engine, "ddex_etl", "0001")
    state.downgrade(engine, "ddex_etl")  # default "-1"
    assert state.current(engine, "ddex_etl") is None


def _columns(engine: sa.Engine, table: str) -> set[str]:
    with engine.connect() as conn:
        return {r[0] for r in conn.execute(sa.text(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'ddex_etl' AND table_name = :t"
        ), {"t": table})}


def test_downgrade_step_by_step_from_head(engine: sa.Engine) -> None:
    state.upgrade(engine, "ddex_etl")
    assert {"ahead", "skip", "claims_through"} <= _columns(engine, "checkpoints")
    assert {"recipient"} <= _columns(engine, "documents") and "identifier" in _columns(engine, "delivered")
    state.downgrade(engine, "ddex_etl")  # 0006 -> 0005: the acknowledged batches go
    assert state.current(engine, "ddex_etl") == "0005"
    assert _tables(engine, "ddex_etl") == STATE_TABLES - {"ack_batches"}
    state.downgrade(engine, "ddex_etl")  # 0005 -> 0004: recipients and store acknowledgements go
    assert state.current(engine, "ddex_etl") == "0004"
    assert "recipient" not in _columns(engine, "documents") and "identifier" not in _columns(engine, "delivered")
    assert _tables(engine, "ddex_etl") == STATE_TABLES - {"store_acks", "ack_batches"}
    state.downgrade(engine, "ddex_etl")  # 0004 -> 0003: the identifier claims go
    assert state.current(engine, "ddex_etl") == "0003"
    assert "claims_through" not in _columns(engine, "checkpoints")
    assert _tables(engine, "ddex_etl") == STATE_TABLES - {"claimed_identifiers", "release_isrcs", "store_acks", "ack_batches"}
    state.downgrade(engine, "ddex_etl")  # 0003 -> 0002: the out-of-order chunk lists go
    assert state.current(engine, "ddex_etl") == "0002"
    assert not {"ahead", "skip"} & _columns(engine, "checkpoints")
    state.downgrade(engine, "ddex_etl")  # 0002 -> 0001: the incremental-sync additions go
    assert state.current(engine, "ddex_etl") == "0001"
    assert _tables(engine, "ddex_etl") == STATE_TABLES - {"delivered", "claimed_identifiers", "release_isrcs", "store_acks", "ack_batches"}


@pytest.mark.parametrize(
    ("action", "revision"),
    [("upgrade", "no_such_revision"), ("downgrade", "-1")],
)
def test_bad_migration_requests_are_config_errors(engine: sa.Engine, action: str, revision: str) -> None:
    with pytest.raises(ConfigError):
        getattr(state, action)(engine, "ddex_etl", revision)


def test_run_checkpoint_and_reject_rows(engine: sa.Engine) -> None:
    s = "ddex_etl"
    state.upgrade(engine, s)
    with engine.begin() as conn:
        run = state.create_run(
            conn, s, job="nightly", mode="full", extract_mode="keyset", fingerprint="abc",
            target="files", layout="ddex-batch", output="/out/20260101000000000", batch_id="20260101000000000",
        )
        assert (run.status, run.attempts, run.built) == ("running", 1, 0)
        state.mark_dispatched(conn, s, run.id, 3)
        state.advance(conn, s, run.id, last_key=100, next_offset=100, chunks_done=1, built=98, rejected=2)
        state.record_rejects(
            conn, s, run.id,
            [state.RejectRecord(7, "transform", "ReleaseDataError", "release 7: title=None", False, {"a": 1})],
        )
    with engine.begin() as conn:
        cp = state.get_checkpoint(conn, s, run.id)
        assert (cp.last_key, cp.next_offset, cp.chunks_done, cp.chunks_dispatched) == (100, 100, 1, 3)
        assert state.unfinished_run(conn, s, "nightly") is not None
        reopened = state.reopen_run(conn, s, run.id, pid=1, host="h", redone=cp.chunks_dispatched - cp.chunks_done)
        assert (reopened.attempts, reopened.chunks_redone) == (2, 2)
        # the same release rejected again in the same run counts another attempt, not a new row
        state.record_rejects(conn, s, run.id, [state.RejectRecord(7, "transform", "ReleaseDataError", "again")])
        [rej] = state.list_rejects(conn, s, run.id)
        assert (rej.release_id, rej.attempts, rej.message) == (7, 2, "again")
        assert state.resolve_rejects(conn, s, run.id, [7], by_run=run.id) == 1
        assert state.list_rejects(conn, s, run.id, unresolved_only=True) == []
        done = state.finish_run(conn, s, run.id, status="succeeded", seconds=2.0, peak_memory_mb=100.0)
        assert (done.status, done.built, done.rejected, done.releases_per_second) == ("succeeded", 98, 2, 50.0)
        assert state.unfinished_run(conn, s, "nightly") is None
        assert state.last_success(conn, s, "nightly").id == run.id  # type: ignore[union-attr]


def test_run_status_is_checked_by_the_database(engine: sa.Engine) -> None:
    state.upgrade(engine, "ddex_etl")
    with engine.begin() as conn:
        run = state.create_run(
            conn, "ddex_etl", job="j", mode="full", extract_mode="keyset", fingerprint="f",
            target="table", layout=None, output="ddex_etl.documents",
        )
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(sa.text("UPDATE ddex_etl.runs SET status = 'done' WHERE id = :id"), {"id": run.id})


def test_delivered_checksums_are_upserted_per_job(engine: sa.Engine) -> None:
    s = "ddex_etl"
    state.upgrade(engine, s)
    with engine.begin() as conn:
        run = state.create_run(
            conn, s, job="nightly", mode="full", extract_mode="keyset", fingerprint="abc",
            target="files", layout="flat", output="/out", batch_id=None,
        )
        assert state.record_delivered(conn, s, "nightly", run.id, []) == 0
        n = state.record_delivered(
            conn, s, "nightly", run.id,
            [(3, "c3", "NewReleaseMessage"), (1, "c1", "NewReleaseMessage"), (3, "c3b", "TakedownMessage")],
        )
        assert n == 2  # release 3 given twice: the later entry wins
        state.record_delivered(conn, s, "other", run.id, [(1, "x1", "NewReleaseMessage")])
    with engine.begin() as conn:
        assert state.delivered_checksums(conn, s, "nightly", [1, 2, 3]) == {1: "c1", 3: "c3b"}
        state.record_delivered(conn, s, "nightly", run.id, [(1, "c1-new", "NewReleaseMessage")])
        assert state.delivered_checksums(conn, s, "nightly", [1, 3]) == {1: "c1-new", 3: "c3b"}
        assert state.delivered_checksums(conn, s, "other", [1, 3]) == {1: "x1"}
        kinds = dict(conn.execute(sa.text(
            "SELECT release_id, kind FROM ddex_etl.delivered WHERE job = 'nightly'"
        )).all())
        assert kinds == {1: "NewReleaseMessage", 3: "TakedownMessage"}
        # Values an array literal would misread (NULL, commas, quotes, braces) are sent quoted.
        odd = [(7, "NULL", "a,b"), (8, 'say "hi"', "{x}"), (9, "null", "back\\slash")]
        state.record_delivered(conn, s, "odd", run.id, odd)
        got = conn.execute(sa.text(
            "SELECT release_id, checksum, kind FROM ddex_etl.delivered WHERE job = 'odd' ORDER BY 1"
        )).all()
        assert [tuple(r) for r in got] == odd


def test_second_signal_marks_the_run_even_while_this_process_holds_its_row(engine: sa.Engine, db_url: str) -> None:
    """A second Ctrl-C can land mid-commit, while this process's own transaction locks the run row.

    The mark must not wait on its own process: it ends the process's sessions and marks the run.
    """
    state.upgrade(engine, "ddex_etl")
    with engine.begin() as conn:
        run = state.create_run(
            conn, "ddex_etl", job="j", mode="full", extract_mode="keyset", fingerprint="f",
            target="table", layout=None, output="ddex_etl.documents",
        )
    own: set[int] = set()
    mine = make_engine(db_url, pool_size=1)
    track_backends(mine, own)
    try:
        held = mine.connect()
        held.execute(sa.text("UPDATE ddex_etl.runs SET built = 1 WHERE id = :id"), {"id": run.id})  # row locked, not committed
        assert len(own) == 1
        mark_interrupted_now(db_url, "ddex_etl", run.id, own)
        with engine.connect() as conn:
            status, built = conn.execute(sa.text("SELECT status, built FROM ddex_etl.runs WHERE id = :id"), {"id": run.id}).one()
        assert (status, built) == ("interrupted", 0)  # the held transaction was rolled back, not committed
        with pytest.raises(sa.exc.OperationalError):
            held.execute(sa.text("SELECT 1"))  # its session was ended
    finally:
        mine.dispose()


def test_a_reject_row_prints_the_fields_etl_errors_json_always_had() -> None:
    now = dt.datetime(2026, 12, 2, tzinfo=dt.timezone.utc)
    row = state.RejectRow(
        id=9, run_id=1, release_id=4, stage="transform", error_kind="ReleaseDataError", message="release 4: bad",
        retryable=False, attempts=2, input={"problems": []}, created_at=now, updated_at=now, resolved_at=None,
        resolved_by_run=None,
    )
    assert list(row.as_dict()) == [
        "run_id", "release_id", "stage", "error_kind", "message", "retryable", "attempts", "input",
        "created_at", "resolved_at", "resolved_by_run",
    ]
    assert row.as_dict()["attempts"] == 2 and row.as_dict()["input"] == {"problems": []}


def test_orphans_found_again_by_a_resumed_attempt_count_once(engine: sa.Engine, db_url: str) -> None:
    """A run that rejected a release the catalog lost (ddex_etl.run.orphans) and is resumed finds it again:
    the reject stays one row and the run's count does not grow; the next run counts it afresh."""
    from ddex_etl.config import Config, DatabaseConfig
    from ddex_etl.demo.seed import seed_catalog
    from ddex_etl.run.orphans import KIND, record_orphans

    s = "ddex_etl"
    seed_catalog(engine, 3, seed=1)
    state.upgrade(engine, s)
    cfg = Config(database=DatabaseConfig(url=db_url))
    with engine.begin() as conn:
        runs = [state.create_run(conn, s, job="nightly", mode="full", extract_mode="keyset", fingerprint="f",
                                 target="table", layout=None, output="t") for _ in range(2)]
        state.record_delivered(conn, s, "nightly", runs[0].id, [(1, "c1", "NewReleaseMessage", "0001"),
                                                                 (2, "c2", "TakeDown", "0002"),
                                                                 (3, "c3", "NewReleaseMessage", "0003")])
        conn.execute(sa.text("DELETE FROM releases WHERE release_id IN (1, 2)"))
    assert record_orphans(engine, cfg, runs[0]) == 1  # release 2 was taken down already; 3 is still there
    assert record_orphans(engine, cfg, runs[0]) == 0  # the resumed attempt
    assert record_orphans(engine, cfg, runs[1]) == 1  # the next run
    with engine.connect() as conn:
        counts = [state.get_run(conn, s, r.id).rejected for r in runs]  # type: ignore[union-attr]
        kinds = conn.execute(sa.text("SELECT run_id, release_id, error_kind FROM ddex_etl.rejected_releases "
                                     "ORDER BY run_id")).all()
    assert counts == [1, 1]
    assert [tuple(k) for k in kinds] == [(runs[0].id, 1, KIND), (runs[1].id, 1, KIND)]
