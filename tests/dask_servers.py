"""A real Dask cluster for the executor's tests: `dask scheduler` and `dask worker` subprocesses on 127.0.0.1.

Also the toy chunk function the tests run on it. Workers import this module by
name (tests/ is on their PYTHONPATH), so what they return is the same class
the test compares with.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
DASK = Path(sys.executable).with_name("dask")


# --------------------------------------------------------------------------- the toy chunk


@dataclass(frozen=True)
class ToySpec:
    """What the toy chunk needs; ``folder`` is where it leaves marks the test reads."""

    folder: str
    delay: float = 0.01
    die_once: tuple[int, ...] = ()  # these chunks SIGKILL their worker on the first attempt
    die_always: tuple[int, ...] = ()  # these kill every worker that runs them
    key: str = "toy"


@dataclass(frozen=True)
class ToyTask:
    number: int


@dataclass(frozen=True)
class ToyResult:
    number: int
    pid: int


@dataclass(frozen=True)
class ToyFailure:
    """ChunkFailure's shape (ddex_etl.run.chunks)."""

    number: int
    kind: str
    message: str
    retryable: bool
    output_error: bool
    pid: int
    detail: str = ""


def toy_chunk(spec: ToySpec, task: ToyTask) -> ToyResult:
    """Sleep a little and say which process ran it; die as ``spec`` asks."""
    folder = Path(spec.folder)
    (folder / f"started-{task.number}-{os.getpid()}").touch()
    if task.number in spec.die_always:
        os.kill(os.getpid(), signal.SIGKILL)
    if task.number in spec.die_once:
        try:
            (folder / f"died-{task.number}").open("x").close()  # only the first attempt creates it
        except FileExistsError:
            pass
        else:
            os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(spec.delay)
    return ToyResult(task.number, os.getpid())


def toy_setup(spec: ToySpec) -> None:
    (Path(spec.folder) / f"setup-{os.getpid()}").touch()


def toy_setup_fails(spec: ToySpec) -> None:
    raise ModuleNotFoundError("No module named 'ddex_etl.run.worker'", name="ddex_etl.run.worker")


def toy_teardown(folder: str) -> None:
    """Bind ``folder`` with functools.partial: the plugin calls teardown with no arguments."""
    (Path(folder) / f"teardown-{os.getpid()}").touch()


# --------------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass
class DaskCluster:
    """A scheduler and its workers, each a subprocess in its own process group."""

    address: str
    scheduler: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def kill_scheduler(self) -> None:
        os.killpg(self.scheduler.pid, signal.SIGKILL)
        self.scheduler.wait(timeout=10)


def _env(allowed_failures: int) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES"] = str(allowed_failures)
    return env


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(DASK), *args], env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own group: killpg ends the nanny and its worker together
        )


@contextmanager
def dask_cluster(folder: Path, *, workers: int = 2, allowed_failures: int = 3) -> Iterator[DaskCluster]:
    """`dask scheduler` + ``workers`` x `dask worker --nworkers 1 --nthreads 1`, registered; all killed after."""
    from distributed import Client

    env = _env(allowed_failures)
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    log = folder / "dask.log"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        scheduler = _start(
            ["scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard",
             "--dashboard-address", "127.0.0.1:0"],  # its health/metrics HTTP: a free port, never 8787
            env, log,
        )
        procs.append(scheduler)
        deadline = time.monotonic() + 30
        while not _answers(port):
            if scheduler.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dask scheduler did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.05)
        cluster = DaskCluster(address, scheduler)
        for _ in range(workers):
            worker = _start(
                ["worker", address, "--nworkers", "1", "--nthreads", "1", "--host", "127.0.0.1",
                 "--no-dashboard", "--death-timeout", "20"],
                env, log,
            )
            procs.append(worker)
            cluster.workers.append(worker)
        with Client(address, timeout=10, set_as_default=False) as client:
            client.wait_for_workers(workers, timeout=30)
        yield cluster
    finally:
        for proc in procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            proc.wait(timeout=10)
