"""The local executor: worker processes behind ChunkExecutor, against a real PostgreSQL."""
from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest
from sqlalchemy.engine import make_url

from ddex_etl.config import Config, DatabaseConfig
from ddex_etl.errors import TerminalError
from ddex_etl.retry import RetryPolicy
from ddex_etl.run.chunks import ChunkFailure, Task, WorkerSpec
from ddex_etl.run.executors import executor_for
from ddex_etl.run.executors.local import LocalExecutor


def spec_for(url: str, workers: int = 2) -> WorkerSpec:
    cfg = Config(database=DatabaseConfig(url=url)).with_overrides(run={"workers": workers, "retry_for": 0.0})
    return WorkerSpec(url=url, cfg=cfg, main_pid=os.getpid(), retry=RetryPolicy.of(cfg.run))


@pytest.fixture()
def executor(db_url: str) -> Iterator[LocalExecutor]:
    ex = executor_for(spec_for(db_url).cfg, spec_for(db_url))
    assert isinstance(ex, LocalExecutor)
    yield ex
    ex.shutdown(graceful=False)


def test_every_worker_is_started_before_the_first_chunk(executor: LocalExecutor) -> None:
    assert executor.name == "local"
    assert executor.slots == executor.worker_count() == 2
    assert len(set(executor.pids())) == 2 and os.getpid() not in executor.pids()


def test_a_dead_worker_stops_the_run_naming_it(executor: LocalExecutor) -> None:
    victim = executor.pids()[0]
    os.kill(victim, signal.SIGKILL)
    with pytest.raises(TerminalError, match=rf"worker process {victim} died \(exit code -9\).*lower extract.chunk_size"):
        for _ in range(1000):  # bounded: the pool notices within a poll or two
            assert executor.finished(0.05) == []
            executor.check()


def test_a_chunk_that_fails_comes_back_as_a_failure_with_the_password_masked(db_url: str) -> None:
    url = make_url(db_url).set(database="no_such_database_16r", password="s3cret-16r").render_as_string(hide_password=False)
    spec = spec_for(url, workers=1)
    ex = executor_for(spec.cfg, spec)
    try:
        ex.submit(Task(number=7, release_ids=(1, 2), last_key=2, next_offset=0, state_schema="ddex_etl"))
        done: list = []
        for _ in range(1000):
            done = ex.finished(0.05)
            if done:
                break
        [failure] = done
        assert isinstance(failure, ChunkFailure)
        assert failure.number == 7 and not failure.retryable and failure.pid in ex.pids()  # type: ignore[attr-defined]
        assert "no_such_database_16r" in failure.message and "s3cret-16r" not in failure.message + failure.detail
    finally:
        ex.shutdown(graceful=True)
    assert ex.shutdown(graceful=True) is None  # idempotent
