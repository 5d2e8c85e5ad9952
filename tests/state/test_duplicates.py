"""Duplicate identifiers: the later release (in paging order) is rejected naming both; nothing is overwritten."""
from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from ddex_etl import extract, state
from ddex_etl import run as run_api
from ddex_etl.config import Config, DatabaseConfig
from ddex_etl.db import make_engine
from ddex_etl.demo import seed
from ddex_etl.demo.seed import seed_catalog
from ddex_etl.state import claims

RELEASES = 50
CHUNK = 10


@pytest.fixture()
def engine(db_url: str) -> Iterator[sa.Engine]:
    eng = make_engine(db_url, pool_size=2)
    seed_catalog(eng, RELEASES, seed=3)
    with eng.begin() as conn:
        # in one chunk: 7 takes 3's ICPN; across chunks: 25 takes 4's ICPN, 33 takes 12's GRid
        conn.execute(sa.text("UPDATE releases SET icpn = (SELECT icpn FROM releases WHERE release_id = 3) "
                             "WHERE release_id = 7"))
        conn.execute(sa.text("UPDATE releases SET icpn = (SELECT icpn FROM releases WHERE release_id = 4) "
                             "WHERE release_id = 25"))
        conn.execute(sa.text("UPDATE releases SET grid = :g WHERE release_id IN (12, 33)"),
                     {"g": seed.grid("A1ABCDE0000000012")})
        # a recording on two releases: allowed, but reported
        conn.execute(sa.text(
            "UPDATE tracks SET isrc = (SELECT isrc FROM tracks WHERE release_id = 2 ORDER BY track_id LIMIT 1) "
            "WHERE track_id = (SELECT min(track_id) FROM tracks WHERE release_id = 40)"))
    yield eng
    eng.dispose()


def slow_first_chunk_rows(tmp_path: Path) -> Path:
    """The packaged rows query, 1.5 s slower for the chunk holding release 4: without claims in chunk
    order, release 25 (chunk 2) would claim the ICPN first and release 4 would lose it."""
    packaged = extract.ROWS_SQL.read_text(encoding="utf-8").strip().rstrip(";")
    query = tmp_path / "rows.sql"
    query.write_text(
        "SELECT q.* FROM (\n" + packaged + "\n) q,\n"
        "(SELECT pg_sleep(CASE WHEN 4 = ANY (CAST(:release_ids AS bigint[])) THEN 1.5 ELSE 0 END)) AS pause\n"
        "ORDER BY q.release_id, q.disc_number, q.track_number, q.track_id\n"
    )
    return query


def make_cfg(db_url: str, tmp_path: Path, **load: object) -> Config:
    return Config(database=DatabaseConfig(url=db_url, pool_size=2)).with_overrides(
        extract={"chunk_size": CHUNK, "rows_query": slow_first_chunk_rows(tmp_path)},
        load={"directory": tmp_path / "out", "layout": "ddex-batch", **load},
        run={"workers": 2, "retry_delay": 0.01},
    )


def rejects(engine: sa.Engine, run_id: int) -> dict[int, state.RejectRow]:
    with engine.connect() as conn:
        return {r.release_id: r for r in state.list_rejects(conn, "ddex_etl", run_id)}


def test_the_later_release_is_rejected_naming_both_and_nothing_is_overwritten(
    engine: sa.Engine, db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    report = run_api.run(make_cfg(db_url, tmp_path), progress=False)
    assert (report.status, report.built, report.rejected) == ("succeeded", RELEASES - 3, 3)
    got = rejects(engine, report.run_id)
    assert set(got) == {7, 25, 33}
    with engine.connect() as conn:
        icpn = dict(conn.execute(sa.text("SELECT release_id, icpn FROM releases")).all())
        grid = dict(conn.execute(sa.text("SELECT release_id, grid FROM releases WHERE grid IS NOT NULL")).all())
    assert got[7].message.startswith(f"release 7: icpn={icpn[3]!r}: is also the ICPN of release 3")
    assert got[25].message.startswith(f"release 25: icpn={icpn[4]!r}: is also the ICPN of release 4")
    assert got[33].message.startswith(f"release 33: grid={grid[12]!r}: is also the GRid of release 12")
    assert all(r.error_kind == "DuplicateIdentifier" and "fix: give each release its own" in r.message
               for r in got.values())
    assert got[25].input["duplicates"] == [{"kind": "icpn", "value": icpn[4], "owner": 4}]

    batch = tmp_path / "out" / str(report.batch_id)
    folders = sorted(p.name for p in batch.iterdir() if p.is_dir())
    assert len(folders) == report.built  # one folder per built release, none shared
    for rid in (3, 4):  # the first owners kept their folders, with their own message
        xml = (batch / icpn[rid] / f"{icpn[rid]}.xml").read_bytes()
        assert f"<ICPN>{icpn[rid]}</ICPN>".encode() in xml
        assert f"-{rid}</MessageThreadId>".encode() in xml
    assert (batch / f"BatchComplete_{report.batch_id}.xml").exists()

    # The shared ISRC is reported, not rejected.
    assert report.shared_isrcs == 1
    with engine.connect() as conn:
        isrc = conn.execute(sa.text("SELECT isrc FROM tracks WHERE release_id = 2 ORDER BY track_id LIMIT 1")).scalar()
    assert any(f"shared ISRC: {isrc} is on releases 2, 40 " in r.getMessage() for r in caplog.records)

    # Claims are dropped when the run succeeds, except what the duplicate rejects point at.
    with engine.connect() as conn:
        kept = conn.execute(sa.text("SELECT kind, value, release_id FROM ddex_etl.claimed_identifiers")).all()
        assert conn.execute(sa.text("SELECT count(*) FROM ddex_etl.release_isrcs")).scalar() == 0
    assert sorted(kept) == sorted([("icpn", icpn[3], 3), ("icpn", icpn[4], 4), ("grid", grid[12], 12)])


def test_duplicates_stay_rejected_on_retry_until_the_identifier_is_fixed(
    engine: sa.Engine, db_url: str, tmp_path: Path
) -> None:
    cfg = make_cfg(db_url, tmp_path)
    first = run_api.run(cfg, progress=False)
    again = run_api.retry_failed(cfg, first.run_id, progress=False)
    assert (again.built, again.rejected) == (0, 3)  # still duplicates
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE releases SET icpn = '0000000000994' WHERE release_id = 25"))
    fixed = run_api.retry_failed(cfg, first.run_id, progress=False)
    assert (fixed.built, fixed.rejected) == (1, 2)
    assert set(rejects(engine, first.run_id)) == {7, 25, 33}
    with engine.connect() as conn:
        open_ = {r.release_id for r in state.list_rejects(conn, "ddex_etl", first.run_id, unresolved_only=True)}
    assert open_ == {7, 33}


def test_the_table_target_rejects_the_same_duplicates(engine: sa.Engine, db_url: str, tmp_path: Path) -> None:
    report = run_api.run(make_cfg(db_url, tmp_path, target="table"), progress=False)
    assert set(rejects(engine, report.run_id)) == {7, 25, 33}
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT count(*) FROM ddex_etl.documents")).scalar_one()
    assert rows == report.built == RELEASES - 3
    json.dumps(report.as_dict(), default=str)  # the report stays JSON-able


def test_a_long_wait_for_the_claim_turn_is_spent_idle(engine: sa.Engine, db_url: str, tmp_path: Path) -> None:
    """wait_for_turn enters ``idle`` only once the wait is long, and leaves it when the turn comes
    (a Dask worker gives its thread up there, so the chunk it waits for can start on it)."""
    report = run_api.run(make_cfg(db_url, tmp_path), progress=False)
    table = "ddex_etl.checkpoints"
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {table} SET claims_through = 0 WHERE run_id = :r"), {"r": report.run_id})
    events: list[str] = []

    @contextlib.contextmanager
    def idle() -> Iterator[None]:
        events.append("idle")
        yield
        events.append("back")

    claims.wait_for_turn(engine, "ddex_etl", report.run_id, 1, idle=idle, idle_after=0.05)
    assert events == []  # chunk 0 has claimed: chunk 1's turn at once, never idle

    waiter = threading.Thread(
        target=claims.wait_for_turn, args=(engine, "ddex_etl", report.run_id, 2),
        kwargs={"idle": idle, "idle_after": 0.05},
    )
    waiter.start()
    deadline = time.monotonic() + 10
    while not events and time.monotonic() < deadline:
        time.sleep(0.01)
    assert events == ["idle"] and waiter.is_alive()  # chunk 1 has not claimed: still waiting, idle
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {table} SET claims_through = 1 WHERE run_id = :r"), {"r": report.run_id})
    waiter.join(timeout=10)
    assert not waiter.is_alive() and events == ["idle", "back"]
