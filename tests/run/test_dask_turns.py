"""Chunks claim identifiers in chunk order; on Dask a chunk waiting for its turn must not hold the worker's thread.

Dask reschedules a dead worker's tasks onto live workers, behind what they
are running: chunk N+1 can be running on a one-thread worker while chunk N
sits in that worker's queue. Chunk N+1 waits for chunk N's claims, so if it
kept the thread the two would wait on each other (for claims.TURN_TIMEOUT).
Here a one-thread LocalCluster gets chunk 1 first, then chunk 0.
"""
from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from ddex_etl import state
from ddex_etl.config import Config, DatabaseConfig
from ddex_etl.db import make_engine
from ddex_etl.demo.seed import seed_catalog
from ddex_etl.retry import RetryPolicy
from ddex_etl.run.chunks import ChunkResult, Task, WorkerSpec
from ddex_etl.run.executors.dask import DaskExecutor

SCHEMA = "ddex_etl"


@pytest.fixture()
def engine(db_url: str) -> Iterator[sa.Engine]:
    eng = make_engine(db_url, pool_size=1)
    seed_catalog(eng, 20, seed=3)
    state.ensure_current(eng, SCHEMA)
    yield eng
    eng.dispose()


def test_a_chunk_waiting_for_its_turn_lets_the_earlier_chunk_run_on_the_same_worker(
    engine: sa.Engine, db_url: str
) -> None:
    cfg = Config(database=DatabaseConfig(url=db_url)).with_overrides(run={"workers": 1, "retry_for": 0.0})
    spec = WorkerSpec(url=db_url, cfg=cfg, main_pid=os.getpid(), retry=RetryPolicy.of(cfg.run))
    with engine.begin() as conn:
        run = state.create_run(
            conn, SCHEMA, job="turns", mode="full", extract_mode="keyset", fingerprint="f", target="table",
            layout=None, output=None,
        )
    tasks = [
        Task(number=n, release_ids=tuple(range(1 + 10 * n, 11 + 10 * n)), last_key=10 * (n + 1), next_offset=0,
             job="turns", state_schema=SCHEMA, run_id=run.id, claim_scope=run.id)
        for n in (0, 1)
    ]
    ex = DaskExecutor(spec, scheduler=None, workers=1)
    try:
        assert ex.worker_count() == 1
        ex.submit(tasks[1])
        time.sleep(1.0)  # chunk 1 is on the only thread, waiting for chunk 0's claims
        ex.submit(tasks[0])
        done: list[object] = []
        deadline = time.monotonic() + 60
        while len(done) < 2 and time.monotonic() < deadline:
            done += ex.finished(timeout=1.0)
    finally:
        ex.shutdown(graceful=False)
    assert sorted(getattr(r, "number", -1) for r in done) == [0, 1], done
    assert all(isinstance(r, ChunkResult) and r.built == 10 and not r.rejects for r in done), done
