"""A run's chunks on a Dask distributed cluster (``run.executor = "dask"``).

The engine (``ddex_etl.executors.dask``, shared with the batch API) runs
"this function on this chunk, somewhere"; this module gives it the run's
choices: ``ddex_etl.run.worker.run_chunk`` as the chunk function, a worker
plugin that builds (and closes) the worker's context for the run, and
``ChunkFailure`` for a chunk Dask gave up on. The coordinating ``etl run``
keeps the job lock, key paging, checkpoints, rejects, thresholds, signals and
progress (see ``ddex_etl.run.executors.base.ChunkExecutor``). Workers must have
ddex-etl installed (they import ``ddex_etl.run.worker``) and reach the
catalog's database.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from ...executors import dask as engine


def _run_chunk(spec: Any, task: Any) -> Any:
    from ..worker import run_chunk

    return run_chunk(spec, task, idle=_seceded)


@contextlib.contextmanager
def _seceded() -> Iterator[None]:
    """Leave the worker's thread pool while a chunk waits for its turn to claim, and come back after.

    The chunk it waits for can be queued behind it on this very worker (Dask
    ran it again here after its first worker died): with the thread given up
    the worker starts it, where it would otherwise wait for ever (well, for
    claims.TURN_TIMEOUT). ``rejoin`` then waits for a free thread.
    """
    from distributed import rejoin, secede

    secede()
    try:
        yield
    finally:
        rejoin()


def _open_context(spec: Any) -> None:
    from ..worker import worker_context

    worker_context(spec)


def _close_context() -> None:
    from ..worker import close_worker_context

    close_worker_context()


def _chunk_failure(**fields: Any) -> Any:
    from ..chunks import ChunkFailure

    return ChunkFailure(**fields)


class DaskExecutor(engine.DaskExecutor):
    """The engine with the run's defaults: ``run_chunk``, the worker-context plugin, ``ChunkFailure``.

    A caller's own ``chunk_fn`` gets a plugin only when it passes ``worker_setup``.
    """

    def __init__(
        self,
        spec: Any,
        *,
        scheduler: str | None,
        workers: int,
        chunk_fn: Callable[[Any, Any], Any] | None = None,
        worker_setup: Callable[[Any], Any] | None = None,
        worker_teardown: Callable[[], Any] | None = None,
        failure: Callable[..., Any] | None = None,
        **options: Any,
    ) -> None:
        if chunk_fn is None and worker_setup is None:
            worker_setup, worker_teardown = _open_context, _close_context
        super().__init__(
            spec, scheduler=scheduler, workers=workers, chunk_fn=chunk_fn or _run_chunk,
            failure=failure or _chunk_failure, worker_setup=worker_setup, worker_teardown=worker_teardown, **options,
        )

    @classmethod
    def from_config(cls, cfg: Any, spec: Any) -> DaskExecutor:
        """The executor ``run.executor = "dask"`` asks for: ``run.scheduler``, ``run.workers``."""
        return cls(spec, scheduler=cfg.run.scheduler, workers=cfg.run.workers)
