"""Worker processes that start as fresh interpreters and never import the caller's main script.

``multiprocessing`` starts a worker either by ``fork`` (a copy of the caller,
unsafe once the caller runs other threads: a lock held by one of them stays
locked forever in the copy) or by ``spawn``/``forkserver``, which re-run the
caller's main script in every worker so that functions defined there can be
unpickled. A script written top to bottom, without an
``if __name__ == "__main__":`` guard, then runs its top level again in each
worker (printing, writing files, starting pools of its own: the "bootstrapping
phase" RuntimeError and a hang).

The functions this pool runs live in the package (``ddex_etl.api.batch`` and
the like), so the workers need nothing from the main script. ``ProcessPool``
therefore starts each worker with ``subprocess`` as
``python -c "...ddex_etl.executors.pool.serve()"``: a clean interpreter, safe
from any thread, that imports only what the calls it receives name. The
caller's ``sys.path`` goes along, so a package found through it is found in
the workers too.

Each worker has a feeder thread in the calling process that takes the next
call from a shared queue, sends it over a pipe and waits for the answer.
A worker that dies fails only the call it was running (``BrokenProcessPool``)
and is started again for the next one. A worker ends when its pipe closes:
when the pool shuts down, and when the calling process dies (SIGKILL
included), since the kernel closes the pipe's other end then.
"""
from __future__ import annotations

import atexit
import contextlib
import json
import os
import pickle
import queue
import subprocess
import sys
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.connection import Connection
from typing import Any

# What a worker runs: the parent's sys.path first, then the serving loop on the two inherited pipe ends.
_BOOT = (
    "import json, os, sys; sys.path[:0] = json.loads(os.environ.pop('DDEX_ETL_POOL_PATH', '[]')); "
    "from ddex_etl.executors.pool import serve; serve(int(sys.argv[1]), int(sys.argv[2]))"
)
_STOP = b"stop"
_LIVE: weakref.WeakSet[ProcessPool] = weakref.WeakSet()


def serve(read_fd: int, write_fd: int) -> None:
    """The worker's loop: read a pickled ``(function, args)``, answer ``(ok, value)``, until the pipe closes."""
    import signal

    # The caller coordinates Ctrl-C; a worker finishes its call or ends with the pipe.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    inbox, outbox = Connection(read_fd, writable=False), Connection(write_fd, readable=False)
    while True:
        try:
            message = inbox.recv_bytes()
        except (EOFError, OSError):
            return  # the pool shut down, or the calling process is gone
        if message == _STOP:
            return
        try:
            func, args = pickle.loads(message)
            answer = (True, func(*args))
        except BaseException as exc:  # every failure goes back to the caller, the worker lives on
            answer = (False, exc)
        try:
            data = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # an answer that cannot be pickled
            data = pickle.dumps((False, RuntimeError(f"the worker's answer could not be sent back: {exc!r}")))
        try:
            outbox.send_bytes(data)
        except (EOFError, OSError):
            return


class _Worker:
    """One worker process and the feeder thread (in the calling process) that talks to it."""

    def __init__(self, pool: ProcessPool, number: int) -> None:
        self.pool = pool
        self.number = number
        self.proc: subprocess.Popen[bytes] | None = None
        self.to_worker: Connection | None = None
        self.from_worker: Connection | None = None
        self.thread = threading.Thread(target=self._feed, name=f"ddex-etl-pool-{number}", daemon=True)

    def start_process(self) -> None:
        down_r, down_w = os.pipe()  # calls: we write, the worker reads
        up_r, up_w = os.pipe()  # answers: the worker writes, we read
        env = {**os.environ, "DDEX_ETL_POOL_PATH": json.dumps([p for p in sys.path if isinstance(p, str)])}
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _BOOT, str(down_r), str(up_w)],
                pass_fds=(down_r, up_w), env=env, stdin=subprocess.DEVNULL, close_fds=True,
            )
        finally:
            os.close(down_r)
            os.close(up_w)
        self.to_worker = Connection(down_w, readable=False)
        self.from_worker = Connection(up_r, writable=False)

    def stop_process(self, kill: bool) -> None:
        proc, self.proc = self.proc, None
        for conn in (self.to_worker, self.from_worker):
            if conn is not None:
                with contextlib.suppress(OSError):
                    conn.close()
        self.to_worker = self.from_worker = None
        if proc is None:
            return
        if kill:
            with contextlib.suppress(OSError):
                proc.kill()
        try:
            proc.wait(timeout=10.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def _start(self) -> None:
        """A new process, with the pool's initializer run in it before any call."""
        self.stop_process(kill=True)
        self.start_process()
        init = self.pool.initializer
        if init is not None:
            assert self.to_worker is not None and self.from_worker is not None
            self.to_worker.send_bytes(pickle.dumps((init[0], init[1]), protocol=pickle.HIGHEST_PROTOCOL))
            ok, value = pickle.loads(self.from_worker.recv_bytes())
            if not ok:
                raise value

    def _feed(self) -> None:
        tasks = self.pool._tasks
        with contextlib.suppress(Exception):  # a failure shows at the first call, which starts it again
            self._start()
        while True:
            item = tasks.get()
            if item is None:  # shutdown: the others get their own sentinel
                break
            future, payload = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                if self.proc is None or self.proc.poll() is not None:
                    self._start()
                assert self.to_worker is not None and self.from_worker is not None
                self.to_worker.send_bytes(payload)
                ok, value = pickle.loads(self.from_worker.recv_bytes())
            except (EOFError, OSError):
                code = self.proc.poll() if self.proc is not None else None
                if code is None and self.proc is not None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        code = self.proc.wait(timeout=1.0)
                pid = self.proc.pid if self.proc is not None else None
                self.stop_process(kill=True)  # started again for the next call
                future.set_exception(BrokenProcessPool(
                    f"worker process {pid} died (exit code {code}) while running a call; it is started again"
                ))
                continue
            except BaseException as exc:
                future.set_exception(exc)
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
        self.stop_process(kill=False)


class ProcessPool:
    """``workers`` clean worker processes behind a ``submit(fn, *args) -> Future`` interface.

    ``fn`` must be a module-level function of an importable module (pickled
    by reference); ``args`` must pickle. Safe to use from any number of
    threads, and from inside an event loop through ``asyncio.wrap_future``.
    Workers start at once in the background (``start()`` waits until they run).
    """

    heals = True  # a dead worker fails one call and is replaced: no need to throw the pool away

    def __init__(self, workers: int, initializer: Callable[..., Any] | None = None, initargs: tuple[Any, ...] = ()) -> None:
        if workers < 1:
            raise ValueError(f"workers: {workers} is not a positive number of processes")
        self.workers = workers
        # Run first in every worker process (imports, caches), as it starts: workers start at once, in the background.
        self.initializer = (initializer, initargs) if initializer is not None else None
        self._tasks: queue.SimpleQueue[tuple[Future[Any], bytes] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self._pool = [_Worker(self, n) for n in range(workers)]
        for w in self._pool:
            w.thread.start()
        _LIVE.add(self)

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot submit to a pool that was shut down")
            try:
                payload = pickle.dumps((fn, args), protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as exc:  # an item that cannot be pickled: this call fails, not the pool
                future.set_running_or_notify_cancel()
                future.set_exception(exc)
                return future
            self._tasks.put((future, payload))
        return future

    def start(self) -> list[int]:
        """Start every worker now (instead of at its first call); their process ids."""
        futures = [self.submit(os.getpid) for _ in range(self.workers * 2)]
        return sorted({f.result() for f in futures})

    @property
    def _processes(self) -> dict[int, subprocess.Popen[bytes]]:
        """Running worker processes by pid (tests kill one)."""
        return {w.proc.pid: w.proc for w in self._pool if w.proc is not None and w.proc.poll() is None}

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking calls; the workers finish the call they run and end. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if cancel_futures:
                while True:
                    try:
                        item = self._tasks.get_nowait()
                    except queue.Empty:
                        break
                    if item is not None:
                        item[0].cancel()
            for _ in self._pool:
                self._tasks.put(None)
        if wait:
            for w in self._pool:
                if w.thread is not threading.current_thread():
                    w.thread.join()


@atexit.register
def _stop_all() -> None:
    """At interpreter exit, pools nobody closed end their workers (the feeder threads are daemons)."""
    for pool in list(_LIVE):
        pool.shutdown(wait=False, cancel_futures=True)
        for w in pool._pool:
            if w.thread.is_alive():
                w.thread.join(timeout=10.0)
