"""Chunks in worker processes on this machine: a ``concurrent.futures.ProcessPoolExecutor``.

The pool starts in the constructor, before migrations, the job lock and the
count query: the workers' start-up (imports, builder context) overlaps the
main process's set-up, and under ``fork`` no connection of the main process
exists yet to be copied. One chunk per worker is in flight (``slots``), so a
resume after a crash redoes at most one chunk per worker.

A worker ignores Ctrl-C and SIGTERM (the main process coordinates the stop)
and dies with the main process, even when that one is SIGKILLed: the kernel's
parent-death signal under ``fork``, and under every start method a watchdog
thread on a pipe whose only write end lives in the main process.
"""
from __future__ import annotations

import contextlib
import multiprocessing as mp
import multiprocessing.util as mp_util
import os
import signal
import sys
import threading
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from ...errors import TerminalError
from ...masking import mask_text
from ...procs import can_fork, pid_alive
from ..chunks import ChunkFailure, ChunkResult, Task, WorkerSpec
from ..worker import close_worker_context, run_chunk, worker_context

# Seconds a graceful shutdown waits for the workers to finish their chunk and exit.
STOP_SECONDS = 10.0

# What the fork server imports once for every worker it forks.
WORKER_MODULES = ("ddex_etl.run.worker", "ddex_etl.ern", "ddex_etl.extract")


def mp_context() -> Any:
    """How worker processes start.

    ``fork`` while this process runs a single Python thread (Linux): a worker
    is running within milliseconds, with every module the main process
    already imported, and none of the main process's database connections
    are open yet (the pool starts before any). Otherwise the fork server: it
    imports the worker's modules once and forks each worker from a clean,
    single-threaded process (a fork of a threaded process could inherit a lock
    held by another thread, forever). ``spawn`` where neither exists. Scripts
    that call ``run`` need the usual ``if __name__ == "__main__":`` guard for
    the last two.
    """
    if can_fork():
        return mp.get_context("fork")
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(list(WORKER_MODULES))
        return ctx
    return mp.get_context("spawn")


def set_parent_death_signal() -> None:
    """Linux: the kernel kills this worker when its parent dies (even by SIGKILL)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - best effort; the watchdog covers the rest
        pass


def watch_main(main_alive: Any) -> None:
    """Worker thread: exit at once when the main process dies (SIGKILL included).

    ``main_alive`` is the read end of a pipe whose only write end lives in the
    main process: it reads EOF the moment the main process is gone, even while
    it is an unreaped zombie. (Under the fork server the kernel's parent-death
    signal watches the fork server, not the main process, and a worker
    mid-chunk would otherwise go on writing files a resumed run is rewriting.)
    """
    from multiprocessing.connection import wait as wait_ready

    while True:
        if wait_ready([main_alive], timeout=None):
            try:
                main_alive.recv_bytes()
            except (EOFError, OSError):
                os._exit(1)


def start_worker(spec: WorkerSpec, main_alive: Any, inherited: Any = None) -> None:
    """The pool's initializer: runs once in each worker process before its first chunk.

    ``inherited``: under ``fork``, the main process's write end of the
    ``main_alive`` pipe, which the fork copied; closed first thing, or the
    pipe would never read EOF.
    """
    if inherited is not None:
        inherited.close()
    # The parent coordinates Ctrl-C / SIGTERM; a worker finishes or is killed.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    set_parent_death_signal()
    if not pid_alive(spec.main_pid):
        os._exit(0)
    threading.Thread(target=watch_main, args=(main_alive,), name="etl-watchdog", daemon=True).start()
    worker_context(spec)  # engine, builder context: ready before the first chunk arrives
    # A worker told to stop (graceful shutdown) closes its connection on the way out.
    mp_util.Finalize(None, close_worker_context, exitpriority=10)


def _started() -> int:
    """A no-op chunk: submitting one per worker makes the pool start every worker now."""
    return os.getpid()


class LocalExecutor:
    """``workers`` processes on this machine, one chunk in flight each."""

    name = "local"

    def __init__(self, spec: WorkerSpec, workers: int) -> None:
        ctx = mp_context()
        self.spec = spec
        self.slots = workers
        # Workers watch the read end; the write end never leaves this process.
        self._alive_r, self._alive_w = ctx.Pipe(duplex=False)
        forked = ctx.get_start_method() == "fork"
        self._pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=ctx,
            initializer=start_worker,
            initargs=(spec, self._alive_r, self._alive_w if forked else None),
        )
        self._running: dict[Future[Any], int] = {}  # future -> chunk number
        self._closed = False
        # The pool starts workers lazily, on submit: under fork all of them at
        # the first submit (before its manager thread starts, so the fork
        # happens while this process is still single-threaded), otherwise one
        # per submit that finds no idle worker. One warm-up per worker starts
        # them all now.
        for _ in range(workers):
            self._pool.submit(_started)
        # The pool has no public list of its processes: read it once, now that
        # every worker exists (it never starts another; a dead one breaks the pool).
        self._procs: list[Any] = list(self._pool._processes.values())

    def submit(self, task: Task) -> None:
        try:
            future = self._pool.submit(run_chunk, self.spec, task)
        except BrokenProcessPool:
            self.check()
            raise TerminalError(self._died_message(None, None)) from None
        self._running[future] = task.number

    def finished(self, timeout: float) -> list[ChunkResult | ChunkFailure]:
        if not self._running:
            time.sleep(timeout)
            return []
        done, _ = wait(self._running, timeout=timeout, return_when=FIRST_COMPLETED)
        out: list[ChunkResult | ChunkFailure] = []
        for future in done:
            number = self._running.pop(future)
            try:
                out.append(future.result())
            except BrokenProcessPool:
                pass  # a worker died: check() names it
            except BaseException as exc:  # the pool could not send the chunk or its result
                out.append(ChunkFailure(
                    number=number,
                    kind=type(exc).__name__,
                    message=mask_text(str(exc)) or type(exc).__name__,
                    retryable=False,
                    output_error=False,
                    pid=0,
                    detail=mask_text("".join(traceback.format_exception(exc))) or "",
                ))
        return out

    def check(self) -> None:
        dead = [p for p in self._procs if not p.is_alive()]
        if dead:
            # After one worker dies the pool tells the others to stop (exit 0): name the first one.
            p = min(dead, key=lambda d: d.exitcode == 0)
            raise TerminalError(self._died_message(p.pid, p.exitcode))

    def _died_message(self, pid: int | None, exitcode: int | None) -> str:
        # The run's id is not known here (the pool starts before the run row
        # exists); the run's summary names it with its `etl resume` line.
        who = f"worker process {pid} died (exit code {exitcode})" if pid is not None else "a worker process died"
        return (
            f"{who}; the run stops and resumes from its checkpoint with `etl resume`; "
            "if it was killed for memory, lower extract.chunk_size or run.workers"
        )

    def kill(self) -> None:
        for p in self._procs:
            with contextlib.suppress(Exception):
                p.kill()

    def shutdown(self, *, graceful: bool) -> None:
        if self._closed:
            return
        self._closed = True
        # Never wait on the pool's own shutdown: with a worker killed its
        # manager thread joins queues; our deadline and SIGKILL bound the wait.
        manager = getattr(self._pool, "_executor_manager_thread", None)
        self._pool.shutdown(wait=False, cancel_futures=True)
        if graceful:
            deadline = time.monotonic() + STOP_SECONDS
            for p in self._procs:
                p.join(timeout=max(0.1, deadline - time.monotonic()))
        for p in self._procs:
            if p.is_alive():
                p.kill()
                p.join(timeout=5.0)
        self._running.clear()
        if manager is not None:
            # Python 3.11's exit hook wakes every pool's manager thread through a
            # pipe that thread closes on its way out, without a lock: a process
            # exiting right after a failed run could print "Bad file descriptor"
            # from the hook. Once the thread has ended the hook skips it.
            manager.join(timeout=STOP_SECONDS)
        for end in (self._alive_r, self._alive_w):
            with contextlib.suppress(Exception):
                end.close()

    def worker_count(self) -> int:
        return len(self._procs)

    def pids(self) -> list[int]:
        """The worker processes' ids (for logs, and for tests that kill one)."""
        return [int(p.pid) for p in self._procs]
