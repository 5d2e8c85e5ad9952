"""The coordinator logs a lost Dask worker once, with its address and host (issue 24 item 8).

A LocalCluster of two real worker processes; one is SIGKILLed while chunks run (its nanny starts a new one,
at a new address). The run's chunks all come back, and the log has exactly one "was lost" line naming the
dead worker's address, and one "joined" line for its replacement.
"""
from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

import pytest

pytest.importorskip("distributed")

from dask_servers import ToyFailure, ToySpec, ToyTask, toy_chunk  # noqa: E402

from ddex_etl.run.executors.dask import DaskExecutor  # noqa: E402


@pytest.mark.slow
def test_a_killed_worker_is_logged_once_with_its_address(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ddex_etl.executors.dask")
    ex = DaskExecutor(ToySpec(str(tmp_path), delay=0.05), scheduler=None, workers=2, chunk_fn=toy_chunk,
                      failure=ToyFailure, no_workers_after=30)
    try:
        info = ex._client.scheduler_info(n_workers=-1)["workers"]
        victim_address, victim_pid = next(
            (addr, pid) for addr, pid in ex._client.run(os.getpid).items() if addr in info
        )
        for n in range(20):
            ex.submit(ToyTask(n))
        os.kill(victim_pid, signal.SIGKILL)
        got: list[object] = []
        deadline = time.monotonic() + 60
        lost: list[logging.LogRecord] = []
        while time.monotonic() < deadline:
            got += ex.finished(0.5)
            ex._workers_checked_at = 0.0  # look at the workers on every check (the run loop does every 5 s)
            ex.check()
            lost = [r for r in caplog.records if "was lost from the cluster" in r.getMessage()]
            joined = [r for r in caplog.records if "joined the cluster" in r.getMessage()]
            if len(got) >= 20 and lost and joined:  # the replacement is up: the cluster closes cleanly
                break
        assert sorted(getattr(r, "number", -1) for r in got) == list(range(20))
        assert len(lost) == 1, [r.getMessage() for r in lost]
        message = lost[0].getMessage()
        assert victim_address in message and "(host 127.0.0.1)" in message
        assert lost[0].levelno == logging.WARNING
        for _ in range(3):  # and only once, however often the loop looks again
            ex._workers_checked_at = 0.0
            ex.check()
        assert len([r for r in caplog.records if "was lost from the cluster" in r.getMessage()]) == 1
    finally:
        ex.shutdown(graceful=False)
