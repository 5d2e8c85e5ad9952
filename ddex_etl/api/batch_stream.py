"""``StreamingBatchProcessor``: build an endless stream of releases in bounded memory.

The source is any iterable or async iterable of releases (dicts or
``Release`` records); the sink is a callable (sync or async), a writable file
(documents one after another) or a directory (one file per release, written
atomically). Releases are cut into batches; at most ``max_concurrency``
batches are in flight at once and results are delivered in source order, so
memory does not grow with the length of the stream. ``memory_limit`` (MB of
this process's resident memory) slows intake: above it, no new batch is read
until the batches in flight are delivered and memory falls back, then work
goes on one batch at a time. It never stops the stream.

Building happens in the ``DDEXBuilder``'s worker processes (the same engine as
``etl run``); the async variant awaits them through the event loop, so a
producer/consumer pipeline built on ``asyncio.Queue`` keeps running while
releases are built.
"""
from __future__ import annotations

import asyncio
import gc
import inspect
import io
import itertools
import logging
import os
import re
import resource
import sys
import tempfile
import time
from collections import deque
from collections.abc import AsyncIterable, Callable, Iterable, Iterator, Sized
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import IO, Any

from ..errors import ConfigError, OutputError
from .batch import _FRAME, BuiltItem, DDEXBuilder, ItemError, _build_chunk, _classify, _Spec
from .batch_frames import BadRows, aexpand_frames, expand_frames, is_frame
from .frame_rows import RowGroup, data_of

log = logging.getLogger(__name__)

Sink = Callable[[BuiltItem], Any] | IO[bytes] | IO[str] | str | os.PathLike[str]


# ---------------------------------------------------------------------------
# Statistics handed to the callbacks


class _Mappable:
    """Stats read as attributes (``stats.batch_number``) or keys (``stats["batch_number"]``)."""

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload, no-any-return]


@dataclass(frozen=True, slots=True)
class BatchStats(_Mappable):
    """Passed to ``on_batch_complete`` once per batch, in source order.

    ``processing_time_ms`` is the time the batch took to build (in its worker),
    ``items_per_second`` that batch's build rate, ``memory_usage_mb`` this
    process's resident memory when the batch was delivered.
    """

    batch_number: int  # 1-based
    items_processed: int  # releases in this batch (built + failed)
    processing_time_ms: float
    items_per_second: float
    memory_usage_mb: float
    succeeded: int
    failed: int


@dataclass(frozen=True, slots=True)
class StreamStats(_Mappable):
    """Passed to ``on_complete`` and returned by ``process_stream``."""

    total_items: int  # releases read from the source (built + failed)
    succeeded: int
    failed: int
    batches: int
    total_time_ms: float
    average_items_per_second: float
    peak_memory_mb: float  # highest resident memory of this process seen during the stream
    error_rate: float  # failed / total_items
    throttled: int  # times memory_limit paused intake


def current_rss_mb() -> float:
    """This process's resident memory in MB (Linux: /proc; elsewhere: the lifetime peak)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 1048576
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 1048576 if sys.platform == "darwin" else peak / 1024


# ---------------------------------------------------------------------------
# Sinks


class _CallableSink:
    blocking = False

    def __init__(self, func: Callable[[BuiltItem], Any]) -> None:
        self.func = func

    def write(self, item: BuiltItem) -> Any:
        return self.func(item)


class _FileSink:
    """Documents one after another in one open file (text or binary)."""

    blocking = True

    def __init__(self, file: IO[Any]) -> None:
        self.file = file
        self.text = isinstance(file, io.TextIOBase)

    def write(self, item: BuiltItem) -> None:
        data = item.xml_bytes if item.xml_bytes.endswith(b"\n") else item.xml_bytes + b"\n"
        try:
            self.file.write(data.decode("utf-8") if self.text else data)
        except OSError as exc:
            raise OutputError(
                f"release {item.id}: writing to {getattr(self.file, 'name', self.file)!r} failed: {exc}; "
                "fix: free disk space or check the file is writable"
            ) from exc


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class _DirSink:
    """One file per release, ``<release id>.xml``, each written atomically."""

    blocking = True

    def __init__(self, folder: Path) -> None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(
                f"output folder {folder}: cannot create it ({exc}); fix: choose a writable folder"
            ) from exc
        self.folder = folder

    def write(self, item: BuiltItem) -> None:
        name = _UNSAFE.sub("_", str(item.id)) or "release"
        target = self.folder / f"{name}.xml"
        tmp: str | None = None
        try:
            # Temp file in the same folder, fsync, rename: a reader (or a crash)
            # sees the whole old file or the whole new one, never a part.
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=self.folder)
            with os.fdopen(fd, "wb") as f:
                f.write(item.xml_bytes)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
            tmp = None
        except OSError as exc:
            raise OutputError(
                f"release {item.id}: writing {target} failed: {exc}; fix: free disk space or check permissions"
            ) from exc
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass


def _make_sink(sink: Any) -> _CallableSink | _FileSink | _DirSink:
    if isinstance(sink, (str, os.PathLike)):
        folder = Path(sink)
        if folder.suffix.lower() == ".xml" and not folder.is_dir():
            raise ConfigError(
                f"sink: {str(folder)!r} looks like a file name, but a path sink is a folder (one file per "
                "release); fix: pass open(path, 'wb') to write every document into one file, or a folder path"
            )
        return _DirSink(folder)
    if hasattr(sink, "write") and not callable(sink):
        return _FileSink(sink)
    if callable(sink):
        return _CallableSink(sink)
    raise TypeError(
        f"sink: a {type(sink).__name__} is not a sink; fix: pass a callable(item), "
        "a writable file or a directory path"
    )


# ---------------------------------------------------------------------------
# One run's bookkeeping, shared by the sync and async loops


@dataclass(slots=True)
class _Chunk:
    originals: list[Any]  # the source items as given
    work: list[tuple[str, Any, Any]]  # what the workers build
    positions: list[int]  # where each work item sits in originals
    preset: dict[int, ItemError]  # items that are no release at all
    number: int


class _Run:
    def __init__(self, proc: StreamingBatchProcessor, total: int | None) -> None:
        self.proc = proc
        self.total = total
        self.start = time.perf_counter()
        self.read = 0
        self.processed = 0
        self.succeeded = 0
        self.failed = 0
        self.batches = 0
        self.throttled = 0
        self.peak = current_rss_mb()
        self.warned_limit = False

    def chunk(self, originals: list[Any]) -> _Chunk:
        work: list[tuple[str, Any, Any]] = []
        positions: list[int] = []
        preset: dict[int, ItemError] = {}
        for i, item in enumerate(originals):
            if isinstance(item, BadRows):
                preset[i] = item.error
                continue
            if isinstance(item, RowGroup):  # a release's rows out of a DataFrame
                work.append((_FRAME, item.segments, item.key))
                positions.append(i)
                continue
            classified = _classify(item, self.read + i)
            if isinstance(classified, ItemError):
                preset[i] = classified
            else:
                work.append(classified)
                positions.append(i)
        self.read += len(originals)
        self.batches += 1
        return _Chunk(originals, work, positions, preset, self.batches)

    def settle(
        self, chunk: _Chunk, outcomes: list[BuiltItem | ItemError], seconds: float
    ) -> tuple[list[BuiltItem | tuple[ItemError, Any]], BatchStats]:
        """The chunk's results in source order, and its stats."""
        placed: dict[int, BuiltItem | ItemError] = dict(chunk.preset)
        placed.update(zip(chunk.positions, outcomes))
        ordered: list[BuiltItem | tuple[ItemError, Any]] = []
        ok = bad = 0
        for i in range(len(chunk.originals)):
            outcome = placed[i]
            if isinstance(outcome, BuiltItem):
                ordered.append(outcome)
                ok += 1
            else:
                data = data_of(chunk.originals[i])
                ordered.append((replace(outcome, data=data), data))
                bad += 1
        self.processed += ok + bad
        self.succeeded += ok
        self.failed += bad
        rss = current_rss_mb()
        self.peak = max(self.peak, rss)
        n = ok + bad
        stats = BatchStats(
            batch_number=chunk.number,
            items_processed=n,
            processing_time_ms=seconds * 1000,
            items_per_second=n / seconds if seconds > 0 else 0.0,
            memory_usage_mb=rss,
            succeeded=ok,
            failed=bad,
        )
        return ordered, stats

    def over_limit(self) -> bool:
        limit = self.proc.memory_limit
        if limit is None:
            return False
        rss = current_rss_mb()
        self.peak = max(self.peak, rss)
        return rss > limit

    def still_over_limit(self) -> None:
        """Nothing is in flight and memory is still above the limit: go on, one batch at a time."""
        gc.collect()
        if self.over_limit() and not self.warned_limit:
            self.warned_limit = True
            log.warning(
                "memory is %.0f MB with no batch in flight, above memory_limit=%s MB; "
                "building one batch at a time (raise memory_limit or lower batch_size)",
                current_rss_mb(),
                self.proc.memory_limit,
            )

    def stats(self) -> StreamStats:
        elapsed = time.perf_counter() - self.start
        self.peak = max(self.peak, current_rss_mb())
        return StreamStats(
            total_items=self.processed,
            succeeded=self.succeeded,
            failed=self.failed,
            batches=self.batches,
            total_time_ms=elapsed * 1000,
            average_items_per_second=self.processed / elapsed if elapsed > 0 else 0.0,
            peak_memory_mb=self.peak,
            error_rate=self.failed / self.processed if self.processed else 0.0,
            throttled=self.throttled,
        )


def _log_error(error: ItemError, item: Any) -> None:
    # Without an on_error handler a failure must still be visible somewhere.
    log.warning("%s", error.message)


# ---------------------------------------------------------------------------
# The processor


class StreamingBatchProcessor:
    """Build a stream of releases batch by batch, with callbacks and bounded memory.

    - ``batch_size``: releases per batch (the unit sent to a worker and reported).
    - ``max_concurrency``: batches in flight at once (bounds memory).
    - ``memory_limit``: MB of resident memory of this process; above it intake
      pauses until in-flight work drains, then goes on a batch at a time.
    - ``on_progress(processed, total)``: after each batch; ``total`` is
      ``len(source)`` when the source has one, else None.
    - ``on_error(error, item)``: per release that failed (``error`` is an
      ``ItemError`` with ``.id``, ``.message``, ``.retryable``); without it,
      failures are logged as warnings.
    - ``on_batch_complete(stats)``: a ``BatchStats`` per batch.
    - ``on_complete(stats)``: the ``StreamStats`` at the end.
    - ``builder``: the ``DDEXBuilder`` to use (version, parties, workers);
      default: ``DDEXBuilder()``.
    - ``parallel``: build in the builder's worker processes (False: in this
      thread for ``process_stream``, in a helper thread for ``aprocess_stream``).
    - ``executor``/``scheduler``: for the builder this processor makes itself
      (``"dask"`` and a scheduler address: build on that Dask cluster).

    In ``aprocess_stream`` callbacks and a callable sink may be coroutine
    functions; they are awaited.
    """

    def __init__(
        self,
        batch_size: int = 25,
        max_concurrency: int = 4,
        memory_limit: float | None = None,
        on_progress: Callable[[int, int | None], Any] | None = None,
        on_error: Callable[[ItemError, Any], Any] | None = None,
        on_batch_complete: Callable[[BatchStats], Any] | None = None,
        on_complete: Callable[[StreamStats], Any] | None = None,
        builder: DDEXBuilder | None = None,
        *,
        parallel: bool = True,
        executor: str = "local",
        scheduler: str | None = None,
    ) -> None:
        problems = []
        if batch_size < 1:
            problems.append(f"batch_size: {batch_size} is not a positive number of releases")
        if max_concurrency < 1:
            problems.append(f"max_concurrency: {max_concurrency} is not a positive number of batches")
        if memory_limit is not None and memory_limit <= 0:
            problems.append(f"memory_limit: {memory_limit} MB is not positive; fix: a size in MB, or None")
        if problems:
            raise ConfigError(problems)
        self.batch_size = batch_size
        self.max_concurrency = max_concurrency
        self.memory_limit = memory_limit
        self.on_progress = on_progress
        self.on_error = on_error
        self.on_batch_complete = on_batch_complete
        self.on_complete = on_complete
        self.parallel = parallel
        self._own_builder = builder is None
        if builder is not None and (executor != "local" or scheduler is not None):
            raise ConfigError("executor/scheduler: give them to the builder (DDEXBuilder(executor=...)), not beside it")
        self.builder = builder if builder is not None else DDEXBuilder(executor=executor, scheduler=scheduler)

    def close(self) -> None:
        """Stop the worker processes of a builder this processor created itself."""
        if self._own_builder:
            self.builder.close()

    def __enter__(self) -> StreamingBatchProcessor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _spec(self) -> _Spec:
        return self.builder._spec(False, 0, 0.0, None)

    @property
    def _use_pool(self) -> bool:
        return self.parallel and self.builder._parallel_capable

    # -- synchronous --------------------------------------------------------

    def process_stream(
        self, source: Iterable[Any] | AsyncIterable[Any], sink: Sink, *, group_by: str = "release_id"
    ) -> StreamStats:
        """Build every release of ``source`` and hand each document to ``sink``; return the stats.

        ``source`` yields releases (``Release`` records or dicts) or pandas
        DataFrames in the extract column contract, as
        ``pd.read_sql(query, conn, chunksize=N)`` or ``pd.read_csv(path,
        chunksize=N)`` stream them: their rows are grouped into releases by
        ``group_by``, across chunk boundaries (the rows of one release must be
        contiguous in the stream). An async iterable source is run with
        ``asyncio.run`` when no event loop is running; inside one,
        ``await aprocess_stream(...)`` instead.
        """
        if isinstance(source, AsyncIterable):
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return asyncio.run(self.aprocess_stream(source, sink, group_by=group_by))
            raise TypeError(
                "process_stream: an async source inside a running event loop would block it; "
                "fix: `await processor.aprocess_stream(source, sink)`"
            )
        out = _make_sink(sink)
        run = _Run(self, _total(source))
        spec = self._spec()
        use_pool = self._use_pool
        it: Iterator[Any] = expand_frames(source, group_by)
        inflight: deque[tuple[_Chunk, Any]] = deque()

        def deliver(chunk: _Chunk, future: Any) -> None:
            if future is None:
                outcomes, seconds = _build_chunk(spec, chunk.work)
            else:
                outcomes, seconds = self.builder._collect(spec, chunk.work, future)
            ordered, stats = run.settle(chunk, outcomes, seconds)
            for entry in ordered:
                if isinstance(entry, BuiltItem):
                    out.write(entry)
                else:
                    (self.on_error or _log_error)(*entry)
            if self.on_batch_complete is not None:
                self.on_batch_complete(stats)
            if self.on_progress is not None:
                self.on_progress(run.processed, run.total)

        try:
            while True:
                if inflight and run.over_limit():
                    run.throttled += 1
                    while inflight and run.over_limit():
                        deliver(*inflight.popleft())
                    if not inflight:
                        run.still_over_limit()
                originals = list(itertools.islice(it, self.batch_size))
                if not originals:
                    break
                chunk = run.chunk(originals)
                if use_pool and chunk.work:
                    inflight.append((chunk, self.builder._submit(spec, chunk.work)))
                else:
                    inflight.append((chunk, None))  # built when delivered, in this thread
                while len(inflight) >= (self.max_concurrency if use_pool else 1):
                    deliver(*inflight.popleft())
            while inflight:
                deliver(*inflight.popleft())
        finally:
            for _, future in inflight:
                if future is not None:
                    future.cancel()
        stats = run.stats()
        if self.on_complete is not None:
            self.on_complete(stats)
        return stats

    # -- asynchronous -------------------------------------------------------

    async def aprocess_stream(
        self, source: Iterable[Any] | AsyncIterable[Any], sink: Sink, *, group_by: str = "release_id"
    ) -> StreamStats:
        """Like ``process_stream``, without blocking the running event loop.

        ``source`` may be an async iterable (e.g. an async generator reading an
        ``asyncio.Queue``) or a plain iterable (read in a helper thread, DataFrames
        included); ``sink`` and the callbacks may be coroutine functions (e.g.
        another queue's ``put``).
        """
        loop = asyncio.get_running_loop()
        out = _make_sink(sink)
        run = _Run(self, _total(source))
        spec = self._spec()
        use_pool = self._use_pool
        releases: Iterable[Any] | AsyncIterable[Any] = (
            aexpand_frames(source, group_by) if isinstance(source, AsyncIterable) else expand_frames(source, group_by)
        )
        take = _async_batches(releases, self.batch_size)
        inflight: deque[tuple[_Chunk, asyncio.Future[Any]]] = deque()

        async def deliver(chunk: _Chunk, waiter: asyncio.Future[Any]) -> None:
            outcomes, seconds = await waiter
            ordered, stats = run.settle(chunk, outcomes, seconds)
            if out.blocking:
                # File writes (and fsync) happen off the loop.
                await asyncio.to_thread(_write_all, out, [e for e in ordered if isinstance(e, BuiltItem)])
            for entry in ordered:
                if isinstance(entry, BuiltItem):
                    if not out.blocking:
                        await _maybe_await(out.write(entry))
                else:
                    await _maybe_await((self.on_error or _log_error)(*entry))
            if self.on_batch_complete is not None:
                await _maybe_await(self.on_batch_complete(stats))
            if self.on_progress is not None:
                await _maybe_await(self.on_progress(run.processed, run.total))

        def start(chunk: _Chunk) -> asyncio.Future[Any]:
            if use_pool and chunk.work:
                return loop.create_task(self._pooled(spec, chunk))
            return loop.run_in_executor(None, _build_chunk, spec, chunk.work)

        try:
            async for originals in take:
                if inflight and run.over_limit():
                    run.throttled += 1
                    while inflight and run.over_limit():
                        await deliver(*inflight.popleft())
                    if not inflight:
                        run.still_over_limit()
                chunk = run.chunk(originals)
                inflight.append((chunk, start(chunk)))
                while len(inflight) >= self.max_concurrency:
                    await deliver(*inflight.popleft())
            while inflight:
                await deliver(*inflight.popleft())
        finally:
            for _, waiter in inflight:
                waiter.cancel()
        stats = run.stats()
        if self.on_complete is not None:
            await _maybe_await(self.on_complete(stats))
        return stats

    async def _pooled(self, spec: _Spec, chunk: _Chunk) -> tuple[list[BuiltItem | ItemError], float]:
        future = self.builder._submit(spec, chunk.work)
        try:
            await asyncio.wait([asyncio.wrap_future(future)])
        except asyncio.CancelledError:
            future.cancel()
            raise
        if future.exception() is None:
            return future.result()  # type: ignore[no-any-return]
        # A dead worker pool: replacing it and retrying blocks, so not on the loop.
        return await asyncio.to_thread(self.builder._collect, spec, chunk.work, future)


def _total(source: Any) -> int | None:
    """How many releases the source holds, when it says (DataFrames do not: rows are not releases)."""
    if is_frame(source) or not isinstance(source, Sized):
        return None
    if isinstance(source, (list, tuple)) and any(is_frame(item) for item in source):
        return None
    return len(source)


def _write_all(out: _FileSink | _DirSink | _CallableSink, items: list[BuiltItem]) -> None:
    for item in items:
        out.write(item)


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


async def _async_batches(source: Iterable[Any] | AsyncIterable[Any], size: int) -> Any:
    """Yield lists of up to ``size`` items from a sync or async source, never blocking the loop."""
    if isinstance(source, AsyncIterable):
        batch: list[Any] = []
        async for item in source:
            batch.append(item)
            if len(batch) >= size:
                yield batch
                batch = []
        if batch:
            yield batch
        return
    it = iter(source)
    while True:
        # A plain iterable may block (a file, a socket): read it in a helper thread.
        batch = await asyncio.to_thread(lambda: list(itertools.islice(it, size)))
        if not batch:
            return
        yield batch


__all__ = ["BatchStats", "StreamStats", "StreamingBatchProcessor", "current_rss_mb"]
