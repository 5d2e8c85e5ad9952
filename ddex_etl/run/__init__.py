"""The job: run a job's releases through extract, transform and load, with checkpoints and resume.

Files follow the flow of a run::

    job.py        open, lock, pick or create the run row, build the loader
    keys.py       the chunks of release keys to do (full, incremental, targeted, retry)
    loop.py       the Runner: hand chunks out, commit results, move the checkpoint, signals
    executors/    where chunks run (local worker processes; Dask) behind ChunkExecutor
    worker.py     what a worker does with one chunk (fetch, build, write)
    chunks.py     the records that travel between them
    reporting.py  what runs did: RunReport, etl status / runs / errors (store rejections re-delivered since)
    metrics.py    run.metrics_file: each recipient's last run as a Prometheus textfile
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .job import resume, retry_failed, run
    from .loop import set_hard_exit_reporter
    from .reporting import (
        JobStatus,
        RejectedRelease,
        RunInfo,
        RunReport,
        recent_runs,
        rejected,
        status,
    )
    from .tally import RunFailed

# Reached lazily: a worker process (or a Dask worker) that imports
# ``ddex_etl.run.worker`` loads the worker's modules, not the run loop's.
_LAZY = {
    "resume": "job", "retry_failed": "job", "run": "job",
    "RunFailed": "tally", "set_hard_exit_reporter": "loop",
    "JobStatus": "reporting", "RejectedRelease": "reporting", "RunInfo": "reporting", "RunReport": "reporting",
    "recent_runs": "reporting", "rejected": "reporting", "status": "reporting",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
    "JobStatus",
    "RejectedRelease",
    "RunFailed",
    "RunInfo",
    "RunReport",
    "recent_runs",
    "rejected",
    "resume",
    "retry_failed",
    "run",
    "set_hard_exit_reporter",
    "status",
]
