"""The seam between the run loop and the engine that runs its chunks (local processes, Dask).

The run loop (``ddex_etl.run.loop``) knows nothing else about the engine: it
hands chunks out with ``submit``, collects them with ``finished``, asks
``check`` whether the engine can still run chunks when nothing came back, and
ends with ``shutdown`` (or ``kill`` from a signal handler).
"""
from __future__ import annotations

from typing import Protocol

from ..chunks import ChunkFailure, ChunkResult, Task


class ChunkExecutor(Protocol):
    """Runs ``run_chunk(spec, task)`` somewhere and hands back what came of it."""

    name: str  # "local" | "dask" (shown in logs / RunReport)
    slots: int  # chunks the run loop keeps in flight

    def submit(self, task: Task) -> None:
        """Hand one chunk to the engine; each call is a new attempt."""
        ...

    def finished(self, timeout: float) -> list[ChunkResult | ChunkFailure]:
        """Chunks done since the last call; waits up to ``timeout`` s for the first one, [] if none."""
        ...

    def check(self) -> None:
        """Raise an EtlError when the engine can no longer run chunks (a worker died, the scheduler is lost)."""
        ...

    def kill(self) -> None:
        """From a signal handler: stop every worker now. No joins, no locks; best effort."""
        ...

    def shutdown(self, *, graceful: bool) -> None:
        """Release the engine; idempotent. ``graceful`` lets running chunks finish briefly."""
        ...

    def worker_count(self) -> int:
        """How many processes run chunks (peak-memory estimate, logs)."""
        ...
