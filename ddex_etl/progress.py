"""Progress reporting for a run: a rich bar on a terminal, plain log lines otherwise.

Both reporters take the same three calls (``start``, ``update``, ``stop``) so the
pipeline never asks where its output goes. Peak memory is measured here too,
because the summary reports it.
"""
from __future__ import annotations

import logging
import resource
import sys
import time
from typing import Protocol, TextIO

log = logging.getLogger("ddex_etl.progress")


def own_peak_rss_mb() -> float:
    """This process's peak resident memory in MB.

    Linux: ``VmHWM`` of this process's own address space. ``ru_maxrss`` would
    also count what the parent had resident when it forked us before exec
    (a launcher holding 100 MB makes every child "peak" at 100 MB).
    Elsewhere ``ru_maxrss`` (KB on Linux, bytes on macOS).
    """
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def children_peak_rss_mb() -> float:
    """The largest peak RSS among this process's waited-for children, in MB."""
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


class Reporter(Protocol):
    def start(self, total: int | None, done: int = 0) -> None: ...

    def update(self, done: int, rejected: int) -> None: ...

    def stop(self) -> None: ...


class NullReporter:
    """Reports nothing (library use, tests)."""

    def start(self, total: int | None, done: int = 0) -> None:
        return None

    def update(self, done: int, rejected: int) -> None:
        return None

    def stop(self) -> None:
        return None


class LogReporter:
    """One plain line every ``interval`` seconds: done/total, rate, ETA. For cron and CI logs."""

    def __init__(self, job: str, interval: float = 10.0, stream: TextIO | None = None) -> None:
        self.job = job
        self.interval = max(interval, 0.1)
        self.stream = stream
        self.total: int | None = None
        self._t0 = 0.0
        self._done0 = 0
        self._last = 0.0

    def _emit(self, text: str) -> None:
        if self.stream is not None:
            print(text, file=self.stream, flush=True)
        else:
            log.info(text)

    def start(self, total: int | None, done: int = 0) -> None:
        self.total = total
        self._t0 = self._last = time.monotonic()
        self._done0 = done
        of = f" of {total}" if total is not None else ""
        self._emit(f"job {self.job}: starting at {done}{of} releases")

    def update(self, done: int, rejected: int) -> None:
        now = time.monotonic()
        if now - self._last < self.interval:
            return
        self._last = now
        rate = (done - self._done0) / (now - self._t0) if now > self._t0 else 0.0
        parts = [f"job {self.job}: {done}"]
        if self.total:
            parts.append(f"/{self.total} ({100.0 * done / self.total:.1f}%)")
        parts.append(f", {rejected} rejected, {rate:,.0f} releases/s")
        if self.total and rate > 0:
            parts.append(f", ETA {_hms((self.total - done) / rate)}")
        self._emit("".join(parts))

    def stop(self) -> None:
        return None


class BarReporter:
    """A rich progress bar with releases/s and ETA (for a terminal)."""

    def __init__(self, job: str) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.job = job
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>8,.0f} rel/s"),
            TextColumn("{task.fields[rejected]} rejected"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            transient=False,
        )
        self._task: object = None
        self._t0 = 0.0
        self._done0 = 0

    def start(self, total: int | None, done: int = 0) -> None:
        self._t0 = time.monotonic()
        self._done0 = done
        self._progress.start()
        self._task = self._progress.add_task(self.job, total=total, completed=done, rate=0.0, rejected=0)

    def update(self, done: int, rejected: int) -> None:
        elapsed = time.monotonic() - self._t0
        rate = (done - self._done0) / elapsed if elapsed > 0 else 0.0
        self._progress.update(self._task, completed=done, rate=rate, rejected=rejected)  # type: ignore[arg-type]

    def stop(self) -> None:
        self._progress.stop()


def reporter_for(job: str, progress: bool | None, interval: float) -> Reporter:
    """``progress`` None: a bar on a terminal, plain lines otherwise; False: nothing; True: the bar."""
    if progress is False:
        return NullReporter()
    if progress is True or (progress is None and sys.stderr.isatty()):
        return BarReporter(job)
    # When the `etl` command set up logging, progress lines go through it (timestamps, JSON);
    # a library caller without a handler still sees them on stderr.
    configured = bool(logging.getLogger("ddex_etl").handlers)
    return LogReporter(job, interval, stream=None if configured else sys.stderr)


def _hms(seconds: float) -> str:
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
