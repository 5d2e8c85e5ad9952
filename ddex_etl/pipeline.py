"""Old import path of the run API: everything lives in ``ddex_etl.run`` now (kept so imports keep working)."""
from __future__ import annotations

from .joblock import JobLock, job_lock_key
from .masking import mask_text as mask
from .run import (
    JobStatus,
    RejectedRelease,
    RunFailed,
    RunInfo,
    RunReport,
    recent_runs,
    rejected,
    resume,
    retry_failed,
    run,
    set_hard_exit_reporter,
    status,
)
from .run.loop import mark_interrupted_now as _mark_interrupted_now
from .run.loop import track_backends as _track_backends
from .run.worker import is_takedown

__all__ = [
    "JobLock",
    "JobStatus",
    "RejectedRelease",
    "RunFailed",
    "RunInfo",
    "RunReport",
    "is_takedown",
    "job_lock_key",
    "mask",
    "recent_runs",
    "rejected",
    "resume",
    "retry_failed",
    "run",
    "set_hard_exit_reporter",
    "status",
]
