"""The run's totals and its error thresholds, chunk by chunk."""
from __future__ import annotations

import re

import pytest

from ddex_etl.config import Config
from ddex_etl.run.chunks import ChunkResult
from ddex_etl.run.tally import RunFailed, RunTally
from ddex_etl.state import RejectRecord


def chunk(built: int, rejected: int, *, pid: int = 1, rss: float = 10.0, warnings: int = 0) -> ChunkResult:
    rejects = [
        RejectRecord(release_id=i, stage="transform", error_kind="ReleaseDataError", message=f"release {i}: bad",
                     retryable=False)
        for i in range(rejected)
    ]
    return ChunkResult(number=0, outputs=None, written=[], rejects=rejects, built=built, skipped=1, pid=pid,
                       peak_rss_mb=rss, seconds=1.0, fetch_seconds=0.25, warnings=[f"w{i}" for i in range(warnings)])


def test_chunks_add_up_on_top_of_earlier_attempts() -> None:
    tally = RunTally(built=100, rejected=2)
    for c in (chunk(10, 1, warnings=2), chunk(5, 0, pid=2, rss=30.0)):
        tally.worker_peak(c)
        tally.add(c)
    assert (tally.built, tally.rejected, tally.skipped, tally.seen()) == (115, 3, 2, 120)
    assert (tally.attempt_releases, tally.data_warnings) == (18, 2)
    assert tally.stage_seconds["fetch"] == 0.5 and tally.stage_seconds["worker"] == 2.0
    assert tally.worker_rss == {1: 10.0, 2: 30.0}


# (run settings, chunks added, part of the RunFailed message or None)
CASES = [
    ({}, [chunk(10, 3)], None),
    ({"fail_fast": True}, [chunk(10, 0)], None),
    ({"fail_fast": True}, [chunk(10, 1)], "stopped at the first rejected release (fail_fast): release 0: bad"),
    ({"continue_on_error": False}, [chunk(10, 1)], "(continue_on_error = false)"),
    ({"max_errors": 3}, [chunk(10, 2), chunk(10, 1)], None),
    ({"max_errors": 3}, [chunk(10, 2), chunk(10, 2)], "4 releases rejected, more than run.max_errors = 3"),
    ({"max_error_rate": 0.25}, [chunk(6, 2)], None),
    ({"max_error_rate": 0.25}, [chunk(5, 2)], "2 of 7 releases rejected (28.6%), more than run.max_error_rate = 0.25"),
]


@pytest.mark.parametrize(("settings", "chunks", "stop"), CASES)
def test_thresholds_stop_the_run_when_crossed(settings: dict, chunks: list[ChunkResult], stop: str | None) -> None:
    rc = Config().with_overrides(run=settings).run
    tally = RunTally()

    def add_all() -> None:
        for c in chunks:
            tally.add(c)
            tally.check_thresholds(rc, 12, c)

    if stop is None:
        add_all()
    else:
        with pytest.raises(RunFailed, match=re.escape(stop)):
            add_all()
