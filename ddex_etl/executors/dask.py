"""Chunks on a Dask distributed cluster: the engine under ``run.executor = "dask"`` and ``DDEXBuilder(executor="dask")``.

Only "run this chunk somewhere" moves to the cluster: the caller (the run
loop of ``etl run``, or the batch API) keeps everything else. The caller
gives the function that runs a chunk (``chunk_fn(spec, task)``, importable on
the workers), what stands for a chunk Dask gave up on (``failure``), and,
if its workers need set-up, ``worker_setup``/``worker_teardown``; the run's
choices live in ``ddex_etl.run.executors.dask``.

Without a scheduler address a ``LocalCluster`` of ``workers`` processes x 1
thread starts on 127.0.0.1, so anyone can try the executor on a laptop; with
one, the chunks go to that cluster. Workers must have ddex-etl installed.

Dask behaviour this module relies on (distributed 2026.x):

* ``as_completed(loop=client.loop, with_results=True, raise_errors=False)``
  fetches each result on the client's event loop as soon as its task ends
  and queues ``(future, result)``; an erred task queues the
  ``(type, exception, traceback)`` triple instead, a cancelled one its
  ``FutureCancelledError`` (whose ``reason`` says why). Its own ``timeout``
  counts from its creation, not per call, so ``finished`` waits on the
  object's condition with its own deadline. (``distributed.wait`` is no
  alternative: it uses the *default* client and raises
  ``FuturesCancelledError`` when any done future was cancelled.)
* A worker that dies while running a task makes the scheduler run the task
  elsewhere; after ``distributed.scheduler.allowed-failures`` (default 3)
  such deaths the task errs with ``KilledWorker``. ``retries=0`` keeps Dask
  from rerunning a task that *raised*: the run loop decides about retries.
* When the client's connection to the scheduler closes, the client cancels
  every future (reason ``scheduler-connection-lost``), sets its status to
  ``connecting`` and tries to reconnect for its ``timeout``, then closes.
  Either way the chunks in flight are gone, so ``check`` treats any status
  but ``running`` as a lost scheduler.
* ``client.register_plugin(WorkerPlugin)`` runs ``setup`` on every current
  worker (and on each one that joins later) and ``teardown`` when a worker
  closes.
"""
from __future__ import annotations

import logging
from concurrent.futures import CancelledError  # what distributed hands over for a cancelled future
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from distributed import Client, KilledWorker, LocalCluster, as_completed
from distributed.diagnostics.plugin import WorkerPlugin

from ..errors import ClusterError
from ..masking import mask_text

log = logging.getLogger(__name__)

ChunkFn = Callable[[Any, Any], Any]
FailureFactory = Callable[..., Any]

# "Two chunks in flight per worker thread": with one, a worker idles for a
# round trip between chunks (~16% of the throughput on 150 ms chunks); with
# two, the next chunk is already queued on the worker (~3%).
IN_FLIGHT_PER_THREAD = 2
CONNECT_TIMEOUT = 10.0
# A chunk Dask reports done whose result has not reached us after this many
# seconds is fetched directly (see DaskExecutor._rescue).
STUCK_AFTER = 10.0
# A cluster with no worker for this long fails the run (resumably) instead of
# leaving it waiting, heartbeat and all, for workers nobody is starting.
NO_WORKERS_AFTER = 120.0
_WORKERS_EVERY = 5.0  # seconds between looks at the scheduler's worker count while nothing comes back  # seconds to reach the scheduler (and to find a worker) at start
GRACE = 5.0  # shutdown(graceful=True): how long running chunks may take to finish
_POLL = 0.1  # the longest a wait sleeps before it looks at the client's status again


class WorkerContextPlugin(WorkerPlugin):  # type: ignore[misc]  # distributed is untyped here
    """Builds a worker process's context for the run once, when the worker starts (or joins), and closes it.

    ``setup(spec)`` and ``teardown()`` are picklable callables (the real ones
    import ``ddex_etl.run.worker`` on the worker).
    """

    idempotent = False

    def __init__(self, spec: Any, setup: Callable[[Any], Any], teardown: Callable[[], Any]) -> None:
        self.spec = spec
        self._setup = setup
        self._teardown = teardown

    def setup(self, worker: Any) -> None:
        self._setup(self.spec)

    def teardown(self, worker: Any) -> None:
        self._teardown()


class DaskExecutor:
    """``ChunkExecutor`` on Dask distributed: one task per chunk attempt, results collected as they finish."""

    name = "dask"

    def __init__(
        self,
        spec: Any,
        *,
        scheduler: str | None,
        workers: int,
        chunk_fn: ChunkFn,
        failure: FailureFactory,
        worker_setup: Callable[[Any], Any] | None = None,
        worker_teardown: Callable[[], Any] | None = None,
        connect_timeout: float = CONNECT_TIMEOUT,
        stuck_after: float = STUCK_AFTER,
        no_workers_after: float = NO_WORKERS_AFTER,
    ) -> None:
        """Connect (or start a LocalCluster) now, so an unreachable scheduler fails before any work is sent.

        ``chunk_fn(spec, task)`` runs one chunk on a worker (``task.number``
        names it; its result must carry the same ``number``);
        ``failure(**fields)`` makes what ``finished`` hands back for a chunk
        Dask gave up on (fields: number, kind, message, retryable,
        output_error, pid, detail). ``worker_setup(spec)`` runs once on every
        worker (a plugin), ``worker_teardown()`` when it closes.
        """
        self._spec = spec
        self._address = scheduler
        self._chunk_fn: ChunkFn = chunk_fn
        self._failure: FailureFactory = failure
        self._prefix = f"etl-{uuid.uuid4().hex[:6]}"
        self._inflight: dict[str, tuple[int, Any, Any]] = {}  # task key -> (chunk number, its future, the task)
        self._done_since: dict[str, float] = {}  # task key -> when it was first seen done but not handed over
        self._stuck_after = stuck_after
        self._no_workers_after = no_workers_after
        self._workers_seen_at = time.monotonic()  # the last time the scheduler had a worker
        self._workers_checked_at = 0.0
        self._lost: str | None = None  # why a chunk of ours was cancelled (the scheduler gone, say), once one was
        self._lost_chunk = -1
        self._known: dict[str, str] = {}  # worker address -> host, as last seen
        self._closed = False
        self._close_lock = threading.RLock()  # shutdown() may run again from a signal handler, same thread
        self._cluster: LocalCluster | None = None
        self._client = self._connect(scheduler, workers, connect_timeout)
        try:
            info = self._client.scheduler_info(n_workers=-1)
            threads = sum(int(w.get("nthreads", 1)) for w in info["workers"].values())
            self._workers = len(info["workers"])
            self._known = _worker_hosts(info)  # address -> host: a worker missing later is logged as lost
            self.slots = max(1, IN_FLIGHT_PER_THREAD * threads)
            # Worker pids, so kill() can end a LocalCluster's processes without the event loop.
            self._pids: set[int] = set(self._client.run(os.getpid).values()) if self._cluster else set()
            if worker_setup is not None:
                self._register(WorkerContextPlugin(spec, worker_setup, worker_teardown or _no_teardown))
            self._done = as_completed(loop=self._client.loop, with_results=True, raise_errors=False)
        except BaseException:
            self.shutdown(graceful=False)
            raise
        where = self._address or f"a LocalCluster on 127.0.0.1 ({self._workers} processes)"
        log.info("dask executor: %s, %d workers, %d threads, %d chunks in flight",
                 mask_text(where), self._workers, threads, self.slots)

    # ------------------------------------------------------------------ start

    def _connect(self, address: str | None, workers: int, timeout: float) -> Client:
        if address is None:
            self._cluster = LocalCluster(
                n_workers=workers or os.cpu_count() or 1,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                # The scheduler always serves HTTP (health, metrics): on a free
                # loopback port, so two clusters on one machine never collide
                # (with None it takes 8787, or warns that it moved elsewhere).
                dashboard_address="127.0.0.1:0",
                scheduler_kwargs={"dashboard": False},  # no bokeh pages
                silence_logs=logging.ERROR,
            )
            return Client(self._cluster, set_as_default=False)
        shown = mask_text(address)
        try:
            client = Client(address, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise ClusterError(
                f"the Dask scheduler at {shown} did not answer within {timeout:g} s "
                f"({mask_text(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)}); "
                f"fix: start it (`dask scheduler`) and its workers (`dask worker {shown} --nthreads 1`), "
                "or check the address (run.scheduler / --scheduler) and that no firewall blocks its port"
            ) from None
        try:
            client.wait_for_workers(1, timeout=timeout)
        except (OSError, TimeoutError):
            client.close(timeout=timeout)
            raise ClusterError(
                f"the Dask scheduler at {shown} has no workers (none joined within {timeout:g} s); "
                f"fix: start some with `dask worker {shown} --nthreads 1` on machines that reach the database"
            ) from None
        return client

    def _register(self, plugin: WorkerContextPlugin) -> None:
        try:
            self._client.register_plugin(plugin, name=f"{self._prefix}-context")
        except Exception as exc:  # raised on a worker: an import, a connection, anything
            where = mask_text(self._address or "the LocalCluster")
            raise ClusterError(
                f"the Dask workers of {where} could not set up for the run "
                f"({type(exc).__name__}: {mask_text(str(exc))}); fix: install the same ddex-etl "
                "(pip install 'ddex-etl[dask]') on every worker, and check each one reaches the database"
            ) from None

    # ------------------------------------------------------------------ ChunkExecutor

    def submit(self, task: Any) -> None:
        """Send chunk ``task`` to the cluster as a new task (a unique key per attempt)."""
        key = f"{self._prefix}-c{task.number}-{uuid.uuid4().hex[:8]}"
        # The spec travels pickled inside each task (a few KB): a scattered
        # copy would be lost with the workers that hold it, failing every
        # later chunk, where a pickled one survives any worker's death.
        future = self._client.submit(self._chunk_fn, self._spec, task, key=key, pure=False, retries=0)
        self._inflight[key] = (task.number, future, task)
        self._done.add(future)

    def finished(self, timeout: float) -> list[Any]:
        """Chunks done since the last call (results, or failures for chunks Dask gave up on); [] after ``timeout``."""
        deadline = time.monotonic() + max(0.0, timeout)
        cond = self._done.thread_condition
        while not self._done.has_ready():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._closed or self._client.status != "running":
                return self._rescue() if remaining <= 0 and not self._closed else []
            with cond:  # as_completed notifies it after queueing a result
                if not self._done.has_ready():
                    cond.wait(min(remaining, _POLL))
        out: list[Any] = []
        for future, result in self._done.next_batch(block=False):
            tracked = self._inflight.pop(future.key, None)
            self._done_since.pop(future.key, None)
            if tracked is None:
                continue  # cancelled by shutdown, handed over by _rescue, or not ours any more
            number = tracked[0]
            # Judged by what as_completed handed over, not by the future's
            # status now: a result fetched just before its worker died is
            # whole, though Dask has meanwhile marked the task lost and
            # computing again (that task is released with the future).
            if _is_error_triple(result):
                out.append(self._failed(number, result[1]))
            elif not isinstance(result, BaseException):
                out.append(result)
            elif future.cancelled() or isinstance(result, CancelledError):
                # Not by us (shutdown forgets its futures first): its result will never come.
                self._lost = getattr(result, "reason", None) or "cancelled"
                self._lost_chunk = number
            else:  # no result and no task error: never drop a chunk, build it again
                log.warning("chunk %d: no result came back (%s); sending it again", number,
                            mask_text(str(result)) or type(result).__name__)
                self.submit(tracked[2])
        return out

    def _rescue(self) -> list[Any]:
        """Chunks Dask reports done that ``as_completed`` has not handed over for ``stuck_after`` seconds.

        ``as_completed`` fetches each result in a background coroutine; if
        that fetch fails (its worker died as the result was on its way), the
        coroutine ends without queueing anything and the run would wait for
        that chunk forever. Such a chunk's result is fetched here directly,
        and if that fails too the chunk is sent again as a new attempt (its
        writes are idempotent; a late first attempt is ignored by the run loop).
        """
        now = time.monotonic()
        out: list[Any] = []
        for key, (number, future, task) in list(self._inflight.items()):
            if not future.done():
                self._done_since.pop(key, None)
                continue
            if now - self._done_since.setdefault(key, now) < self._stuck_after:
                continue
            del self._inflight[key]
            del self._done_since[key]
            if future.cancelled():
                self._lost, self._lost_chunk = "cancelled", number
                continue
            try:
                if future.status == "error":
                    out.append(self._failed(number, future.exception(timeout=CONNECT_TIMEOUT)))
                else:
                    out.append(future.result(timeout=CONNECT_TIMEOUT))
                log.warning("chunk %d: Dask reported it done %.0f s ago without handing its result over; "
                            "fetched it directly", number, self._stuck_after)
            except Exception as exc:  # the result is gone with its worker: build the chunk again
                log.warning("chunk %d: its result could not be fetched (%s); sending it again",
                            number, mask_text(str(exc)) or type(exc).__name__)
                self.submit(task)
        return out

    def check(self) -> None:
        """Raise ``ClusterError`` once the scheduler is gone; workers Dask replaces are not an error."""
        if self._closed:
            return
        status = self._client.status
        where = mask_text(self._address or "the LocalCluster")
        if status != "running" or self._lost == "scheduler-connection-lost":
            raise ClusterError(
                f"lost the connection to the Dask scheduler at {where} (client {status}); the chunks it was "
                "running are lost, the run's checkpoint is not; fix: make sure the scheduler runs and "
                "`etl resume <run>` to continue from the checkpoint"
            )
        if self._lost is not None:
            # Another client cancelled it, or the scheduler forgot it: the run
            # loop would wait for that chunk for ever.
            raise ClusterError(
                f"chunk {self._lost_chunk} was cancelled on the Dask cluster at {where} "
                f"({mask_text(self._lost)}), not by this run; its result will never come, the run's checkpoint "
                "is intact; fix: check who cancels tasks on that cluster (another client, a scheduler "
                "restart), then `etl resume <run>` to continue from the checkpoint"
            )
        self._check_workers(where)

    def _check_workers(self, where: str) -> None:
        now = time.monotonic()
        if now - self._workers_checked_at < min(_WORKERS_EVERY, self._no_workers_after / 2):
            return
        self._workers_checked_at = now
        try:
            info = self._client.scheduler_info(n_workers=-1)
        except Exception:  # the scheduler is going away: the status check above says so next time
            return
        now_known = _worker_hosts(info)
        self._log_worker_changes(now_known, where)
        workers = len(now_known)
        if workers:
            self._workers_seen_at = now
        elif now - self._workers_seen_at > self._no_workers_after:
            raise ClusterError(
                f"the Dask cluster at {where} has had no workers for {now - self._workers_seen_at:.0f} s; "
                "no chunk can run, the run's checkpoint is intact; fix: start workers "
                f"(`dask worker {where} --nthreads 1`) and `etl resume <run>` to continue from the checkpoint"
            )

    def _log_worker_changes(self, now_known: dict[str, str], where: str) -> None:
        """Log, once each, a worker that left the cluster and one that joined (by address and host)."""
        lost = [a for a in self._known if a not in now_known]
        for address in lost:
            host = self._known[address]
            log.warning(
                "dask worker %s (host %s) was lost from the cluster at %s; the chunks it was running are run "
                "again on another worker (Dask gives up on a chunk after %d such losses)",
                mask_text(address), host, where, _allowed_failures() + 1,
                extra={"fields": {"event": "worker-lost", "worker": mask_text(address), "worker_host": host}},
            )
        for address in now_known:
            if address not in self._known:
                log.info("dask worker %s (host %s) joined the cluster at %s", mask_text(address), now_known[address],
                         where, extra={"fields": {"event": "worker-joined", "worker": mask_text(address),
                                                  "worker_host": now_known[address]}})
        self._known = now_known

    def kill(self) -> None:
        """From a signal handler: SIGKILL a LocalCluster's worker processes. No waiting, no event loop.

        Their nannies (in this process) start new workers about a second
        later; the ``shutdown`` that follows closes those.
        """
        cluster = self._cluster
        if cluster is None:
            return  # a remote cluster's workers are not ours; shutdown() cancels our tasks
        pids = set(self._pids)
        for nanny in list(getattr(cluster, "workers", {}).values()):
            pid = getattr(nanny, "pid", None)  # a worker a nanny restarted since start
            if isinstance(pid, int):
                pids.add(pid)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def shutdown(self, *, graceful: bool) -> None:
        """Cancel what is left, close the client and the LocalCluster. Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        client = getattr(self, "_client", None)
        try:
            if client is not None and client.status == "running":
                if graceful:
                    deadline = time.monotonic() + GRACE
                    while any(not f.done() for _, f, _ in self._inflight.values()) and time.monotonic() < deadline:
                        time.sleep(0.02)
                pending = [f for _, f, _ in self._inflight.values() if not f.done()]
                if pending:
                    client.cancel(pending, force=True)
            self._inflight.clear()
        finally:
            try:
                if client is not None:
                    client.close(timeout=CONNECT_TIMEOUT)
            finally:
                if self._cluster is not None:
                    self._cluster.close(timeout=CONNECT_TIMEOUT)

    def worker_count(self) -> int:
        """Dask workers the cluster had at start (each one process)."""
        return self._workers

    # ------------------------------------------------------------------ helpers

    def _failed(self, number: int, exc: BaseException) -> Any:
        if isinstance(exc, KilledWorker):
            message = (
                f"chunk {number}: Dask gave up on it: {exc.allowed_failures + 1} workers died while running it "
                f"(the last {mask_text(str(exc.last_worker.address))}); a release in it may crash the builder or "
                "exhaust a worker's memory (see the workers' logs); `etl resume` continues the run from its "
                "checkpoint and tries the chunk again"
            )
            return self._failure(number=number, kind="KilledWorker", message=message, retryable=False,
                                 output_error=False, pid=0, detail="")
        return self._failure(
            number=number, kind=type(exc).__name__,
            message=f"chunk {number}: the Dask task failed: {mask_text(str(exc)) or type(exc).__name__}",
            retryable=False, output_error=False, pid=0, detail="",
        )


def _worker_hosts(info: dict[str, Any]) -> dict[str, str]:
    """Each worker's address and host, from ``Client.scheduler_info``."""
    out: dict[str, str] = {}
    for address, worker in (info.get("workers") or {}).items():
        host = worker.get("host") if isinstance(worker, dict) else None
        out[str(address)] = str(host or str(address).rsplit("://", 1)[-1].rsplit(":", 1)[0])
    return out


def _allowed_failures() -> int:
    import dask

    return int(dask.config.get("distributed.scheduler.allowed-failures", 3))


def _is_error_triple(result: Any) -> bool:
    """What ``as_completed(with_results=True, raise_errors=False)`` hands over for a task that raised."""
    return isinstance(result, tuple) and len(result) == 3 and isinstance(result[1], BaseException)


def _no_teardown() -> None:
    return None
