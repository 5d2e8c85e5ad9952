"""Where the batch API's chunks run: local worker processes, or the same Dask executor as ``etl run``.

``DDEXBuilder`` sends each chunk as ``pool.submit(fn, *args)`` and waits on
the ``concurrent.futures.Future`` it gets back (in order, from threads or
through ``asyncio.wrap_future``). ``executor="local"`` (the default) is a
``ddex_etl.executors.pool.ProcessPool``; ``executor="dask"`` is ``DaskPool``
below: the run's ``ChunkExecutor`` seam (``submit``/``finished``/``check``/
``shutdown``) on ``ddex_etl.executors.dask.DaskExecutor``, with a collector
thread that hands each finished chunk to its future.
"""
from __future__ import annotations

import itertools
import logging
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from ..errors import ClusterError, ConfigError

log = logging.getLogger(__name__)

EXECUTORS = ("local", "dask")


@dataclass(frozen=True)
class _Call:
    """One chunk as the executor sees it: ``number`` names it."""

    number: int
    fn: Any
    args: tuple[Any, ...]


@dataclass(frozen=True)
class _Answer:
    number: int
    ok: bool
    value: Any


@dataclass(frozen=True)
class _GaveUp:
    """What the executor hands back for a chunk Dask gave up on (its fields are the executor's)."""

    number: int
    kind: str
    message: str
    retryable: bool = False
    output_error: bool = False
    pid: int = 0
    detail: str = ""


def _run_call(spec: Any, call: _Call) -> _Answer:
    """On a Dask worker: run the chunk; an exception comes back as the answer, never as a task error."""
    try:
        return _Answer(call.number, True, call.fn(*call.args))
    except Exception as exc:  # the caller's future raises it
        return _Answer(call.number, False, exc)


def check_executor(executor: str, scheduler: str | None) -> str:
    name = str(executor or "local").strip().lower()
    if name not in EXECUTORS:
        raise ConfigError(f"executor: {executor!r} is not one of {', '.join(EXECUTORS)}; fix: 'local' or 'dask'")
    if scheduler is not None and name != "dask":
        raise ConfigError(f"scheduler: {scheduler!r} is given but executor is {name!r}; fix: executor='dask'")
    return name


class DaskPool:
    """``submit(fn, *args) -> Future`` on the Dask executor (a LocalCluster when no scheduler is given)."""

    heals = True  # Dask runs a dead worker's task elsewhere: the pool itself is never thrown away

    def __init__(self, scheduler: str | None, workers: int) -> None:
        try:
            from ..executors.dask import DaskExecutor
        except ModuleNotFoundError as exc:
            raise ConfigError(
                f"executor='dask' needs Dask ({exc.name} is missing); fix: pip install 'ddex-etl[dask]', "
                "or executor='local'"
            ) from exc
        self._executor = DaskExecutor(None, scheduler=scheduler, workers=workers, chunk_fn=_run_call, failure=_GaveUp)
        self.slots = self._executor.slots
        self._numbers = itertools.count()
        self._waiting: dict[int, Future[Any]] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._collector = threading.Thread(target=self._collect, name="ddex-etl-dask-results", daemon=True)
        self._collector.start()

    def submit(self, fn: Any, /, *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_running_or_notify_cancel()  # on the cluster once sent: it cannot be taken back
        with self._lock:
            if self._closed.is_set():
                raise RuntimeError("cannot submit to a Dask pool that was shut down")
            number = next(self._numbers)
            self._waiting[number] = future
            try:
                self._executor.submit(_Call(number, fn, args))
            except BaseException:
                del self._waiting[number]
                raise
        return future

    def _collect(self) -> None:
        while not self._closed.is_set():
            try:
                done = self._executor.finished(0.2)
                if not done:
                    self._executor.check()
            except ClusterError as exc:  # the scheduler is gone: every chunk in flight fails with why
                self._fail_all(exc)
                continue
            except Exception as exc:  # closed under us
                if self._closed.is_set():
                    return
                log.warning("dask results: %s", exc)
                continue
            for item in done:
                with self._lock:
                    future = self._waiting.pop(item.number, None)
                if future is None:
                    continue
                if isinstance(item, _Answer):
                    if item.ok:
                        future.set_result(item.value)
                    else:
                        future.set_exception(item.value)
                else:
                    future.set_exception(ClusterError(item.message))

    def _fail_all(self, exc: BaseException) -> None:
        with self._lock:
            waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(exc)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Close the client (and a LocalCluster this pool started). Idempotent."""
        with self._lock:
            if self._closed.is_set():
                return
            self._closed.set()
        self._collector.join(timeout=5.0)
        self._executor.shutdown(graceful=not cancel_futures)
        self._fail_all(RuntimeError("the Dask pool was shut down"))
