"""The Dask executor on real clusters: a LocalCluster, and `dask scheduler` / `dask worker` subprocesses.

A toy chunk function stands in for run_chunk (same shape: ``fn(spec, task)``
returns a result with ``.number``), so these tests need no database.
"""
from __future__ import annotations

import functools
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

pytest.importorskip("distributed")

from dask_servers import (  # noqa: E402  (tests/ is on sys.path: see tests/conftest.py)
    DaskCluster,
    ToyFailure,
    ToyResult,
    ToySpec,
    ToyTask,
    dask_cluster,
    free_port,
    toy_chunk,
    toy_setup,
    toy_setup_fails,
    toy_teardown,
)

from ddex_etl.errors import ClusterError, ExitCode, TerminalError  # noqa: E402
from ddex_etl.run.executors.dask import DaskExecutor  # noqa: E402


def collect(ex: DaskExecutor, want: int, *, within: float = 30.0) -> list[object]:
    """Everything ``finished`` hands back until ``want`` items came (or ``within`` s passed)."""
    got: list[object] = []
    deadline = time.monotonic() + within
    while len(got) < want and time.monotonic() < deadline:
        got += ex.finished(0.5)
    return got


def run_all(ex: DaskExecutor, n: int) -> list[object]:
    """Submit chunks 0..n-1 keeping ``ex.slots`` in flight, as the run loop does."""
    sent, got = 0, []
    deadline = time.monotonic() + 30
    while len(got) < n and time.monotonic() < deadline:
        while sent < n and sent - len(got) < ex.slots:
            ex.submit(ToyTask(sent))
            sent += 1
        got += ex.finished(0.5)
    return got


def children() -> set[int]:
    """This process's descendants, but multiprocessing's resource tracker (one per process, by design)."""
    return {
        p.pid for p in psutil.Process().children(recursive=True)
        if "resource_tracker" not in " ".join(_cmdline(p))
    }


def _cmdline(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except psutil.Error:
        return []


def gone(pids: set[int], within: float = 10.0) -> set[int]:
    """Which of ``pids`` still run after ``within`` s (zombies count as gone)."""
    deadline = time.monotonic() + within
    while True:
        alive = {pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE}
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


# --------------------------------------------------------------------------- LocalCluster


@pytest.fixture()
def local(tmp_path: Path) -> Iterator[DaskExecutor]:
    ex = DaskExecutor(
        ToySpec(str(tmp_path)), scheduler=None, workers=2, chunk_fn=toy_chunk,
        worker_setup=toy_setup, worker_teardown=functools.partial(toy_teardown, str(tmp_path)),
        failure=ToyFailure,
    )
    try:
        yield ex
    finally:
        ex.shutdown(graceful=False)


def test_local_cluster_runs_every_chunk_exactly_once(local: DaskExecutor) -> None:
    assert local.name == "dask"
    assert local.slots == 4  # 2 workers x 1 thread x 2 in flight
    assert local.worker_count() == 2
    got = run_all(local, 40)
    assert all(isinstance(r, ToyResult) for r in got)
    assert sorted(r.number for r in got) == list(range(40))  # type: ignore[attr-defined]
    assert len({r.pid for r in got}) == 2  # type: ignore[attr-defined]  # both workers did some
    assert local.finished(0.05) == []  # nothing more comes back
    local.check()


def test_finished_waits_at_most_its_timeout(local: DaskExecutor) -> None:
    started = time.monotonic()
    assert local.finished(0.3) == []
    assert 0.25 < time.monotonic() - started < 5


def test_the_worker_plugin_sets_each_worker_up_once_and_tears_it_down(tmp_path: Path) -> None:
    ex = DaskExecutor(
        ToySpec(str(tmp_path)), scheduler=None, workers=2, chunk_fn=toy_chunk,
        worker_setup=toy_setup, worker_teardown=functools.partial(toy_teardown, str(tmp_path)),
        failure=ToyFailure,
    )
    try:
        got = run_all(ex, 8)
        pids = {r.pid for r in got}  # type: ignore[attr-defined]
        setups = {int(p.name.split("-")[1]) for p in tmp_path.glob("setup-*")}
        assert len(setups) == 2 and pids <= setups  # each worker set up once, before its first chunk
    finally:
        ex.shutdown(graceful=True)
    teardowns = {int(p.name.split("-")[1]) for p in tmp_path.glob("teardown-*")}
    assert teardowns == setups


def test_workers_that_cannot_set_up_fail_the_start_with_the_fix(tmp_path: Path) -> None:
    before = children()
    with pytest.raises(ClusterError) as caught:
        DaskExecutor(ToySpec(str(tmp_path)), scheduler=None, workers=1, chunk_fn=toy_chunk,
                     worker_setup=toy_setup_fails, failure=ToyFailure)
    message = str(caught.value)
    assert "ModuleNotFoundError: No module named 'ddex_etl.run.worker'" in message
    assert "fix: install the same ddex-etl" in message
    assert gone(children() - before) == set()  # the LocalCluster it started is closed again


def test_shutdown_leaves_no_process_and_no_thread_and_is_idempotent(tmp_path: Path) -> None:
    before_children = children()
    before_threads = {t.ident for t in threading.enumerate()}
    ex = DaskExecutor(ToySpec(str(tmp_path)), scheduler=None, workers=2, chunk_fn=toy_chunk, failure=ToyFailure)
    started = children() - before_children
    assert len(started) >= 2  # the two worker processes
    for n in range(6):
        ex.submit(ToyTask(n))  # some still running at shutdown: cancelled
    ex.shutdown(graceful=False)
    ex.shutdown(graceful=True)
    assert gone(started) == set()
    # distributed's one offload thread per process (created at import) is not ours to stop; the
    # threads that reap each worker process end just after it (give them a moment on a busy machine)
    deadline = time.monotonic() + 10
    while True:
        left = [t.name for t in threading.enumerate()
                if t.ident not in before_threads and not t.name.startswith("Dask-Offload")]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert left == []
    ex.check()  # a closed executor has nothing to report


def test_kill_ends_the_local_workers_at_once(tmp_path: Path) -> None:
    before = children()
    ex = DaskExecutor(ToySpec(str(tmp_path), delay=5), scheduler=None, workers=2, chunk_fn=toy_chunk,
                      failure=ToyFailure)
    try:
        workers = set(ex._pids)
        assert len(workers) == 2
        ex.submit(ToyTask(0))
        started = time.monotonic()
        ex.kill()
        assert time.monotonic() - started < 1.0  # a signal handler may not wait
        assert gone(workers, within=5) == set()
    finally:
        ex.shutdown(graceful=False)
    assert gone(children() - before) == set()


# --------------------------------------------------------------------------- dask scheduler + dask worker subprocesses


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    """Two workers; a task is given up after 2 worker deaths (allowed-failures = 1)."""
    with dask_cluster(tmp_path_factory.mktemp("dask"), workers=2, allowed_failures=1) as c:
        yield c


def remote(cluster: DaskCluster, spec: ToySpec) -> DaskExecutor:
    return DaskExecutor(spec, scheduler=cluster.address, workers=0, chunk_fn=toy_chunk, failure=ToyFailure,
                        connect_timeout=5)


def test_a_remote_cluster_runs_every_chunk_exactly_once(cluster: DaskCluster, tmp_path: Path) -> None:
    ex = remote(cluster, ToySpec(str(tmp_path)))
    try:
        assert ex.slots == 4 and ex.worker_count() == 2
        got = run_all(ex, 30)
        assert sorted(r.number for r in got) == list(range(30))  # type: ignore[attr-defined]
        ex.check()
    finally:
        ex.shutdown(graceful=True)


def test_a_chunk_whose_worker_is_killed_runs_again_elsewhere_and_comes_back_once(
    cluster: DaskCluster, tmp_path: Path
) -> None:
    ex = remote(cluster, ToySpec(str(tmp_path), die_once=(3,)))
    try:
        got = run_all(ex, 8)
        assert sorted(r.number for r in got) == list(range(8))  # type: ignore[attr-defined]
        assert all(isinstance(r, ToyResult) for r in got)
        assert (tmp_path / "died-3").exists()  # the first attempt did die
        attempts = {int(p.name.split("-")[2]) for p in tmp_path.glob("started-3-*")}
        chunk3 = next(r for r in got if r.number == 3)  # type: ignore[attr-defined]
        assert len(attempts) == 2 and chunk3.pid in attempts  # type: ignore[attr-defined]  # ran again, elsewhere
        ex.check()  # a worker Dask replaced is not an error
        assert ex.finished(0.2) == []
    finally:
        ex.shutdown(graceful=True)


def test_a_chunk_that_kills_every_worker_comes_back_as_a_killed_worker_failure(
    cluster: DaskCluster, tmp_path: Path
) -> None:
    ex = remote(cluster, ToySpec(str(tmp_path), die_always=(5,)))
    try:
        ex.submit(ToyTask(5))
        got = collect(ex, 1)
        assert len(got) == 1 and isinstance(got[0], ToyFailure)
        failure = got[0]
        assert failure.number == 5 and failure.kind == "KilledWorker" and not failure.retryable
        assert "2 workers died while running it" in failure.message
        assert "etl resume" in failure.message
        # the cluster is fine afterwards (the nannies restarted the workers): other chunks still run
        ex.check()
        ex.submit(ToyTask(6))
        assert [r.number for r in collect(ex, 1)] == [6]  # type: ignore[attr-defined]
    finally:
        ex.shutdown(graceful=True)


def test_losing_the_scheduler_mid_run_is_a_resumable_error(tmp_path: Path) -> None:
    with dask_cluster(tmp_path, workers=1) as own:
        ex = DaskExecutor(ToySpec(str(tmp_path), delay=30), scheduler=own.address, workers=0,
                          chunk_fn=toy_chunk, failure=ToyFailure, connect_timeout=2)
        try:
            ex.submit(ToyTask(0))
            ex.submit(ToyTask(1))
            assert ex.finished(0.2) == []
            ex.check()
            own.kill_scheduler()
            started = time.monotonic()
            with pytest.raises(ClusterError) as caught:
                while time.monotonic() - started < 15:
                    assert ex.finished(0.2) == []
                    ex.check()
            assert time.monotonic() - started < 10
        finally:
            ex.shutdown(graceful=True)
    err = caught.value
    assert isinstance(err, TerminalError) and err.exit_code == ExitCode.FAILED
    assert own.address in str(err) and "etl resume <run>" in str(err)


def test_a_cluster_left_without_workers_fails_the_run_resumably(tmp_path: Path) -> None:
    """Nobody restarts the workers: the run stops with the fix instead of waiting, heartbeat and all, for ever."""
    with dask_cluster(tmp_path, workers=1) as own:
        ex = DaskExecutor(ToySpec(str(tmp_path), delay=30), scheduler=own.address, workers=0,
                          chunk_fn=toy_chunk, failure=ToyFailure, connect_timeout=2, no_workers_after=1.0)
        try:
            ex.submit(ToyTask(0))
            assert ex.finished(0.2) == []
            ex.check()  # a worker is there: fine
            os.killpg(own.workers[0].pid, signal.SIGKILL)  # nanny and worker: no restart
            started = time.monotonic()
            with pytest.raises(ClusterError) as caught:
                while time.monotonic() - started < 30:
                    assert ex.finished(0.2) == []
                    ex.check()
        finally:
            ex.shutdown(graceful=False)
    message = str(caught.value)
    assert "has had no workers" in message and "dask worker" in message and "etl resume <run>" in message


def test_an_unreachable_scheduler_fails_at_start_with_the_address_and_the_fix(tmp_path: Path) -> None:
    address = f"tcp://127.0.0.1:{free_port()}"
    before = children()
    started = time.monotonic()
    with pytest.raises(ClusterError) as caught:
        DaskExecutor(ToySpec(str(tmp_path)), scheduler=address, workers=0, chunk_fn=toy_chunk,
                     failure=ToyFailure, connect_timeout=1)
    assert time.monotonic() - started < 10
    message = str(caught.value)
    assert address in message and "`dask scheduler`" in message and "firewall" in message
    assert caught.value.exit_code == ExitCode.FAILED
    assert gone(children() - before) == set()


def test_a_chunk_cancelled_on_the_cluster_by_someone_else_fails_the_run_resumably(
    cluster: DaskCluster, tmp_path: Path
) -> None:
    """Its result will never come: waiting for it would hang the run, so check() says the chunk was lost."""
    from distributed import Client, Future

    ex = remote(cluster, ToySpec(str(tmp_path), delay=30))
    try:
        ex.submit(ToyTask(7))
        [key] = list(ex._inflight)
        with Client(cluster.address, timeout=10, set_as_default=False) as other:
            other.cancel([Future(key, client=other)], force=True)
        deadline = time.monotonic() + 10
        with pytest.raises(ClusterError) as caught:
            while time.monotonic() < deadline:
                assert ex.finished(0.2) == []
                ex.check()
    finally:
        ex.shutdown(graceful=False)
    message = str(caught.value)
    assert "chunk 7" in message and "cancelled" in message and "etl resume" in message


def test_a_result_as_completed_never_hands_over_is_fetched_directly(tmp_path: Path) -> None:
    """If the background fetch of a finished chunk's result dies (its worker went with it), the chunk still comes back.

    ``as_completed`` queues a result only for futures it still tracks; taking
    one out of its books stands in for the fetching coroutine ending without
    queueing anything.
    """
    ex = DaskExecutor(ToySpec(str(tmp_path), delay=0.3), scheduler=None, workers=2, chunk_fn=toy_chunk,
                      failure=ToyFailure, stuck_after=0.5)
    try:
        ex.submit(ToyTask(0))
        ex.submit(ToyTask(1))
        (lost,) = [f for _, f, t in ex._inflight.values() if t.number == 1]
        with ex._done.lock:
            del ex._done.futures[lost]
        got = collect(ex, 2, within=20)
    finally:
        ex.shutdown(graceful=False)
    assert sorted(r.number for r in got if isinstance(r, ToyResult)) == [0, 1], got


def test_a_result_in_hand_counts_though_its_worker_died_after_sending_it(local: DaskExecutor) -> None:
    """Dask marks a task lost when the worker holding its result dies, even after the result reached us.

    Seen in CI: the chunk's result was fetched, its worker was killed before
    the run loop asked, and the executor judged the future by its new status
    ("lost"), dropped the chunk, and the run waited for it forever.
    """
    local.submit(ToyTask(7))
    deadline = time.monotonic() + 20
    while not local._done.has_ready() and time.monotonic() < deadline:
        time.sleep(0.02)
    (future,) = [f for _, f, _ in local._inflight.values()]
    (holder,) = local._client.who_has([future])[future.key]
    pid = local._client.run(os.getpid, workers=[holder])[holder]
    psutil.Process(pid).kill()
    # The scheduler hears of the death through the nanny and heartbeats: seconds, more on a loaded machine.
    deadline = time.monotonic() + 60
    while future.status == "finished" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert future.status != "finished"  # Dask now counts the result as lost
    got = local.finished(1.0)
    assert [r.number for r in got if isinstance(r, ToyResult)] == [7], got
