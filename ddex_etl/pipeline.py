"""Old import path of the run API: everything lives in ``ddex_etl.run`` now (kept so imports keep working)."""
from __future__ import annotations

from .joblock import JobLock, job_lock_key  # noqa: F401
from .masking import mask_text as mask  # noqa: F401
from .run import *  # noqa: F403  (run, resume, retry_failed, status, recent_runs, rejected, RunReport, ...)
from .run.loop import mark_interrupted_now as _mark_interrupted_now  # noqa: F401
from .run.loop import track_backends as _track_backends  # noqa: F401
from .run.worker import is_takedown  # noqa: F401
