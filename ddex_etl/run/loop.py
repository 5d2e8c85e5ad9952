"""The run loop: hand chunks to the executor, commit what comes back, move the checkpoint.

The checkpoint is the last contiguous chunk fully loaded (keyset: its last key;
offset: the next offset) plus the chunks loaded ahead of it: a worker that
finishes chunk N+1 before another finishes chunk N gets its next chunk at once
instead of waiting, and when N is loaded the checkpoint joins up with N+1. At
most ``executor.slots`` chunks are ever handed out and not yet loaded, so a
resume after a crash redoes at most that many chunks: it pages again from the
contiguous point and leaves out the ids of the chunks loaded ahead. Redone
work is idempotent (upsert by release id, atomic replace of identical bytes).

Each result commits as it arrives: table rows + rejects + checkpoint in ONE
transaction; for files, only once the chunk's files are durable. The loop
talks to the engine only through ``ChunkExecutor`` (``ddex_etl.run.executors``).
It also owns the run's thresholds, heartbeat and signals: the first Ctrl-C /
SIGTERM drains the chunks in hand, a second one exits at once.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .. import state
from ..config import Config
from ..db import map_db_error
from ..errors import EtlError, ExitCode, InterruptedRun, LostLockError, TerminalError, TransientError
from ..load import FileLoader, Loader
from ..masking import mask_text
from ..progress import Reporter, own_peak_rss_mb
from ..retry import RetryPolicy, with_retries
from ..state import claims
from ..state.delivered import folders_of_run
from ..state.joblock import JobLock, host
from .chunks import ChunkFailure, ChunkResult, Task
from .executors.base import ChunkExecutor
from .keys import KeySource
from .reporting import RunReport
from .tally import NOTES_LOGGED, RunTally

# The run's modules log under the name they always had ("pipeline" in log lines).
log = logging.getLogger("ddex_etl.pipeline")

# Seconds to wait for chunks already in a worker's hands after the first Ctrl-C
# before abandoning them (they are redone on resume either way).
DRAIN_SECONDS = 15.0
HEARTBEAT_SECONDS = 5.0
# How long the loop waits for a finished chunk before it checks the engine and the heartbeat.
POLL_SECONDS = 0.5


# Server pids of the main process's sessions (the job lock's among them).
OWN_BACKENDS: set[int] = set()


def ahead_entry(task: Task) -> dict[str, Any]:
    """How the checkpoint remembers a chunk loaded ahead of it (see ``state.Checkpoint``)."""
    ids = task.release_ids
    return {"n": task.number, "lo": ids[0] if ids else None, "hi": ids[-1] if ids else None}


def skip_passed(entry: Any, through: Task) -> bool:
    """Whether the checkpoint, now through chunk ``through``, has left a skip entry behind."""
    if isinstance(entry, dict):
        return int(entry["chunk"]) <= through.number
    return through.last_key is not None and entry[1] <= through.last_key


class Runner:
    """One attempt at one run: owns the loop, the signals and the state updates; the executor runs the chunks."""

    def __init__(
        self,
        cfg: Config,
        engine: Engine,
        url: str,
        lock: JobLock,
        run: state.RunRow,
        checkpoint: state.Checkpoint,
        loader: Loader,
        reporter: Reporter,
        executor: ChunkExecutor,
        *,
        resumed: bool,
        key_source: KeySource,
        total: int | None,
    ) -> None:
        self.cfg = cfg
        self.engine = engine
        self.url = url
        self.lock = lock
        self.run = run
        self.cp = checkpoint
        # What an earlier attempt loaded ahead of its checkpoint, not built again:
        # id ranges [lo, hi] (keys ascending), or {"chunk": n} in offset mode,
        # where a chunk's ids follow the keys query's order, not an id range.
        self.skip: list[Any] = [r if isinstance(r, dict) else list(r) for r in checkpoint.skip]
        self.loader = loader
        self.reporter = reporter
        self.resumed = resumed
        self.key_source = key_source
        self.total = total
        self.schema = cfg.database.state_schema
        self.executor = executor
        self.retry = RetryPolicy.of(cfg.run)
        # whose identifier claims count: a retry keeps those of the run it retries
        self.claim_scope = run.source_run_id if run.mode == "retry" and run.source_run_id else run.id
        self.signals = 0
        self.tally = RunTally.of(run)
        self.shared_isrcs = 0
        self.delivery: dict[str, Any] | None = None  # what the upload to the recipient's target did
        self.t0 = time.monotonic()
        self._old_handlers: dict[int, Any] = {}

    def _drop_empty_batch(self) -> bool:
        """A run that built nothing leaves no (empty) ddex-batch folder behind and sends nothing: a store
        would otherwise receive an empty batch (a BatchComplete alone) every quiet night, or from an
        `etl retry-failed` whose releases all failed again."""
        loader = self.loader
        if self.tally.built + self.tally.takedowns:
            return False
        if not isinstance(loader, FileLoader) or loader.batch_complete_path is None:
            return False
        root = loader.root
        if not root.is_dir() or any(p.is_file() for p in root.rglob("*")):
            return False
        import shutil

        shutil.rmtree(root, ignore_errors=True)
        return True

    def _check_local_batch(self) -> None:
        """Before BatchComplete (and any upload): the local batch holds every release this run recorded as built.

        A resume whose batch folder was removed or emptied since (a container restart, a clean-up) would
        otherwise declare an empty batch complete and have the upload remove from the store every file the
        local folder lacks. Nothing is written, sent or removed; the error names the run, the folder and the fix.
        """
        loader = self.loader
        if not isinstance(loader, FileLoader) or loader.batch_complete_path is None:
            return

        def read() -> list[tuple[int, str]]:
            try:
                with self.engine.connect() as conn:
                    rows = folders_of_run(conn, self.schema, self.run.job, self.run.id)
                    conn.rollback()
                    return rows
            except sa.exc.DBAPIError as exc:
                raise map_db_error(exc, "reading which releases the run built") from exc

        built = with_retries(read, what="reading which releases the run built", policy=self.retry)
        missing = [(rid, ident) for rid, ident in built if not _is_our_message(loader.root, ident)]
        if not missing:
            return
        from ..errors import OutputError

        rid, ident = missing[0]
        raise OutputError(
            f"run {self.run.id}: the local batch folder {loader.root} lacks {len(missing):,} of the {len(built):,} "
            f"message(s) this run built (first: release {rid}, {ident}/{ident}.xml); the folder was removed or "
            "emptied after they were built. Nothing is uploaded, BatchComplete is not written and nothing on the "
            "store is removed; fix: restore the folder and `etl resume "
            f"{self.run.id}`, or rebuild those releases in a new batch with `etl run --new --force` (the store "
            f"never sees batch {loader.batch_id} complete)"
        )

    def _deliver(self, beat: Heartbeat) -> bool:
        """The local batch is whole: upload it to the recipient's target (resumable; see ddex_etl.delivery.deliver).

        Stops at the next file boundary when the run was taken over (``LostLockError``) or on Ctrl-C /
        SIGTERM (returns False: interrupted, resumable).
        """
        recipient = self.cfg.recipient
        if recipient is None or recipient.target is None or not isinstance(self.loader, FileLoader):
            return True
        from ..delivery.deliver import deliver_batch

        def check() -> None:
            beat.raise_if_lost()
            if self.signals:
                raise _DeliveryStopped
        beat.beat_now()  # the run is still this runner's before anything touches the target
        try:
            self.delivery = deliver_batch(recipient, self.loader.root, run_id=self.run.id, check=check,
                                          progress_interval=self.cfg.run.progress_interval,
                                          media_root=self.cfg.load.media_root,
                                          max_media_bytes=self.cfg.load.max_media_bytes).as_dict()
        except _DeliveryStopped:
            log.warning("run %d: the upload stopped at a file boundary (signal); `etl resume %d` sends the rest",
                        self.run.id, self.run.id)
            return False
        return True

    def _report_orphans(self) -> None:
        """Releases this job delivered that the catalog lost without a takedown: rejected in every run (see orphans)."""
        if self.run.mode not in ("full", "incremental", "targeted"):
            return
        from .orphans import record_orphans

        added = with_retries(
            lambda: record_orphans(self.engine, self.cfg, self.run),
            what="looking for delivered releases the catalog no longer has", policy=self.retry,
        )
        self.tally.rejected += added

    def _close_claims(self) -> None:
        """The run is loaded: list the ISRCs found on several of its releases, then drop its claims."""

        def tx() -> tuple[int, list[tuple[str, list[int]]]]:
            with self.engine.begin() as conn:
                found = claims.shared_isrcs(conn, self.schema, self.claim_scope, limit=NOTES_LOGGED)
                claims.forget(conn, self.schema, self.claim_scope)
                return found

        self.shared_isrcs, listed = with_retries(tx, what="closing the run's identifier claims", policy=self.retry)
        for isrc, releases in listed:
            log.warning("shared ISRC: %s is on releases %s (normal for a recording on a single and its album; "
                        "check that it is the same recording)", isrc, ", ".join(map(str, releases)))
        if self.shared_isrcs > len(listed):
            log.warning("shared ISRC: %d more ISRCs are on more than one release of this run",
                        self.shared_isrcs - len(listed))

    # ---- signals

    def request_stop(self, signum: int) -> None:
        """A signal reached the process while this run went on in another thread (recipients side by side)."""
        self._on_signal(signum, None)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.signals += 1
        if self.signals == 1:
            log.warning("signal %d: stopping after the chunks in hand; Ctrl-C again to exit at once", signum)
            return
        # Second signal: exit now, best effort to leave the run marked interrupted.
        self.executor.kill()
        with contextlib.suppress(Exception):
            mark_interrupted_now(self.url, self.schema, self.run.id, OWN_BACKENDS)
        _hard_exit({"run_id": self.run.id, "job": self.run.job, "mode": self.run.mode})

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old_handlers[sig] = signal.signal(sig, self._on_signal)

    def _restore_signals(self) -> None:
        for sig, old in self._old_handlers.items():
            with contextlib.suppress(Exception):
                signal.signal(sig, old)
        self._old_handlers.clear()

    # ---- the loop

    def execute(self) -> RunReport:
        self._install_signals()
        with _ACTIVE_LOCK:
            _ACTIVE.add(self)
        try:
            return self._execute()
        finally:
            with _ACTIVE_LOCK:
                _ACTIVE.discard(self)

    def _execute(self) -> RunReport:
        graceful = False
        status = "failed"
        error: BaseException | None = None
        try:
            self.reporter.start(self.total, self.tally.seen())
            finished = self._loop()
            if finished:
                # Every phase after the loop beats too (delivery may take hours): a live run never looks stalled.
                with Heartbeat(self) as beat:
                    self._report_orphans()
                    delivered = True
                    if not self._drop_empty_batch():
                        self._check_local_batch()
                        self.loader.finish(resumed=self.resumed or self.run.attempts > 1)
                        delivered = self._deliver(beat)
                    if delivered:
                        self._close_claims()
                beat.raise_if_lost()  # found by the last beat: the run is no longer this runner's to end
                status = "succeeded" if delivered else "interrupted"
            else:
                status = "interrupted"
            graceful = True
        except KeyboardInterrupt:  # no handler outside the main thread
            status = "interrupted"
        except BaseException as exc:
            error = exc
            status = "failed"
        finally:
            self.reporter.stop()
            self.executor.shutdown(graceful=graceful)
        report = self._close(status, error)
        if self.signals and self._old_handlers:
            # Stopped by Ctrl-C / SIGTERM: the run is marked interrupted now, so
            # another one (the "second Ctrl-C", landing while the caller is on
            # its way out) exits at once with the interrupted code, as it would
            # have during the run, instead of raising into the caller's exit.
            for sig in self._old_handlers:
                with contextlib.suppress(Exception):
                    signal.signal(sig, _exit_interrupted)
            self._old_handlers.clear()
        self._restore_signals()
        if status == "interrupted":
            raise _attach(InterruptedRun(
                f"run {self.run.id} of job {self.run.job!r} interrupted after {self.tally.built:,} releases; "
                f"resume with `etl resume {self.run.id}`"
            ), report)
        if error is not None:
            if isinstance(error, EtlError):
                raise _attach(error, report)
            raise _attach(TerminalError(
                f"run {self.run.id} of job {self.run.job!r} failed: {mask_text(str(error)) or type(error).__name__}; "
                f"resume with `etl resume {self.run.id}`"
            ), report) from error
        return report

    def _loop(self) -> bool:
        """Dispatch and commit until done (True) or stopped by a signal (False)."""
        cap = self.executor.slots
        in_flight: dict[int, Task] = {}
        pending: dict[int, ChunkResult] = {}
        next_commit = self.cp.chunks_done
        dispatched = self.cp.chunks_done
        loaded_ahead: dict[int, Task] = {}  # chunks loaded beyond next_commit, by number
        keys = self._keys(self.cp)
        exhausted = False
        last_paged: Task | None = None
        # The next chunk's keys, paged while the workers are busy so that a
        # free worker gets its next chunk without waiting for that query.
        # Paged is not handed out: only dispatched chunks count against the cap.
        paged_next: Task | None = None
        last_beat = time.monotonic()
        drain_deadline: float | None = None

        def page() -> Task | None:
            nonlocal keys, last_paged

            def next_task() -> Task | None:
                nonlocal keys
                try:
                    return self._next_key_chunk(keys)
                except TransientError:
                    # The pager is dead; the retry re-opens it after the last chunk it gave.
                    keys = self._keys_after(last_paged)
                    raise

            task = with_retries(
                next_task,
                what="paging release keys",
                policy=self.retry,
            )
            if task is not None:
                last_paged = task
            return task

        while True:
            if self.signals and drain_deadline is None:
                drain_deadline = time.monotonic() + DRAIN_SECONDS
            # Fill every free worker slot.
            while not self.signals and not exhausted and len(in_flight) < cap:
                task, paged_next = (paged_next, None) if paged_next is not None else (page(), None)
                if task is None:
                    exhausted = True
                    break
                dispatched = task.number + 1
                self.lock.execute(
                    # run now (with retries), so the lambda sees this dispatch count
                    lambda c: state.mark_dispatched(c, self.schema, self.run.id, dispatched),
                    what="recording the chunks handed to workers",
                    policy=self.retry,
                )
                self.executor.submit(task)
                in_flight[task.number] = task
                log.debug("chunk %d handed to a worker: %d releases (ids %s)", task.number, len(task.release_ids),
                          _id_span(task.release_ids), extra={"fields": {"chunk": task.number}})
            if not in_flight:
                return exhausted or not self.signals
            if drain_deadline is not None and time.monotonic() > drain_deadline:
                log.warning("abandoning %d chunk(s) in hand; they are redone on resume", len(in_flight))
                return False
            if pending:
                # One chunk at a time, refilling in between: the worker that
                # is waiting gets its next chunk before the next commit.
                number = min(pending)
                result = pending.pop(number)
                task = in_flight[number]
                if number == next_commit:
                    # Contiguous: the checkpoint moves past it and past every
                    # chunk already loaded ahead that it now joins up with.
                    through, n = task, number + 1
                    while n in loaded_ahead:
                        through, n = loaded_ahead[n], n + 1
                    joined = n > number + 1
                    left = [ahead_entry(t) for k, t in sorted(loaded_ahead.items()) if k >= n] if joined else None
                    skip = [r for r in self.skip if not skip_passed(r, through)]
                    self._commit(task, result, through, left, skip if skip != self.skip else None)
                    for k in range(number + 1, n):
                        del loaded_ahead[k]
                    self.skip = skip
                    next_commit = n
                else:
                    # A later chunk finished first: load it now and record it
                    # as loaded ahead, so its worker can take the next chunk
                    # instead of waiting for the slower one.
                    self._commit(task, result)
                    loaded_ahead[number] = task
                del in_flight[number]
                last_beat = time.monotonic()
                self.tally.check_thresholds(self.cfg.run, self.run.id, result)
                self.reporter.update(self.tally.seen(), self.tally.rejected)
                continue
            if paged_next is None and not exhausted and not self.signals:
                paged_next = page()
                exhausted = paged_next is None
            done = self.executor.finished(POLL_SECONDS)
            if not done:
                self.executor.check()
                if time.monotonic() - last_beat > HEARTBEAT_SECONDS:
                    self._heartbeat()
                    last_beat = time.monotonic()
                self.reporter.update(self.tally.seen(), self.tally.rejected)
                continue
            for msg in done:
                if msg.number not in in_flight or msg.number in pending:
                    # A late duplicate (a zombie attempt of a chunk already
                    # committed): committed at most once per attempt of the run.
                    log.debug("ignoring a second result for chunk %d", msg.number)
                    continue
                if isinstance(msg, ChunkFailure):
                    raise self._worker_failed(msg)
                self.tally.worker_peak(msg)
                pending[msg.number] = msg

    def _keys(self, cp: state.Checkpoint) -> Iterator[Any]:
        return self.key_source(cp)

    def _keys_after(self, last: Task | None) -> Iterator[Any]:
        if last is None:
            return self.key_source(self.cp)
        resume_at = state.Checkpoint(
            run_id=self.run.id,
            last_key=last.last_key,
            next_offset=last.next_offset,
            chunks_done=last.number + 1,
            chunks_dispatched=last.number + 1,
        )
        return self.key_source(resume_at)

    def _next_key_chunk(self, keys: Iterator[Any]) -> Task | None:
        try:
            kc = next(keys)
        except StopIteration:
            return None
        except sa.exc.DBAPIError as exc:
            raise map_db_error(exc, "paging release keys") from exc
        ids = tuple(int(i) for i in kc.release_ids)
        if not ids:
            return None
        if self.skip:
            # The chunk still passes through the checkpoint, possibly empty.
            number = int(kc.number)
            if any(isinstance(r, dict) and r["chunk"] == number for r in self.skip):
                ids = ()
            else:
                ranges = [r for r in self.skip if not isinstance(r, dict)]
                ids = tuple(i for i in ids if not any(lo <= i <= hi for lo, hi in ranges))
        return Task(
            number=int(kc.number),
            release_ids=ids,
            last_key=int(kc.last_key) if kc.last_key is not None else None,
            next_offset=int(getattr(kc, "next_offset", 0) or 0),
            loader=self.loader if isinstance(self.loader, FileLoader) and self.loader.in_worker else None,
            # A retry has no window: only deleted releases become takedowns there.
            takedowns=self.run.mode in ("targeted", "retry")
            or (self.run.mode == "incremental" and self.run.watermark_from is not None),
            ended_before=self.run.watermark_to.date() if self.run.watermark_to is not None else None,
            skip_unchanged=self.run.mode in ("incremental", "targeted") and not self.run.options.get("force"),
            job=self.run.job,
            state_schema=self.schema,
            run_id=int(self.run.id),
            run_started=self.run.started_at,
            delivery_id=self.run.delivery_id,
            claim_scope=self.claim_scope,
            report_missing=self.run.mode == "retry"
            or (self.run.mode == "targeted" and bool(self.run.options.get("release_ids"))),
            attempt=int(self.run.attempts),
        )

    def _worker_failed(self, f: ChunkFailure) -> EtlError:
        if f.detail:
            # The CLI prints the error itself once; the worker's traceback is for -vv / --debug.
            log.debug("worker %d failed on chunk %d:\n%s", f.pid, f.number, f.detail)
        text = f"chunk {f.number}: {f.message}"
        if f.output_error:
            from ..errors import OutputError

            return OutputError(text)
        if f.retryable:
            return TransientError(text)
        return TerminalError(text if f.kind.endswith("Error") and f.kind != "Exception" else f"{f.kind}: {text}")

    def _heartbeat(self) -> None:
        self.lock.execute(
            lambda c: c.execute(
                sa.text(f"UPDATE {state._t(self.schema, 'runs')} SET heartbeat_at = now() WHERE id = :id"),
                {"id": self.run.id},
            ),
            what="updating the run's heartbeat",
            policy=self.retry,
        )

    def _heartbeat_owned(self) -> None:
        """Beat, and check the run row still names this runner: ``LostLockError`` when another took it over."""
        updated = self.lock.execute(
            lambda c: c.execute(
                sa.text(
                    f"""UPDATE {state._t(self.schema, 'runs')} SET heartbeat_at = now()
                    WHERE id = :id AND status = 'running' AND pid = :pid AND host = :host"""
                ),
                {"id": self.run.id, "pid": os.getpid(), "host": host()},
            ).rowcount,
            what="updating the run's heartbeat",
            policy=self.retry,
        )
        if not updated:
            raise LostLockError(
                f"run {self.run.id} of job {self.run.job!r} was taken over by another runner (its row no longer "
                "names this process as running it); this runner stops before it touches the target again, so "
                "that two runners never deliver beside each other; fix: let the other runner finish, then "
                f"`etl resume {self.run.id}` if it is still unfinished"
            )

    def _commit(
        self,
        task: Task,
        result: ChunkResult,
        through: Task | None = None,
        ahead: list[dict[str, Any]] | None = None,
        skip: list[Any] | None = None,
    ) -> None:
        """One transaction: table rows (if any), rejects, delivered checksums, checkpoint, counts.

        ``through``: the checkpoint moves to the end of that chunk (``task``
        itself or a chunk loaded ahead that ``task`` joins up with), and
        ``ahead``/``skip`` replace those lists when given. Without it ``task``
        is recorded as loaded ahead of the checkpoint.
        """
        retry_source = self.run.source_run_id if self.run.mode == "retry" else None
        counts = {
            "built": result.built,
            "rejected": len(result.rejects),
            "skipped": result.skipped,
            "takedowns": result.takedowns,
            "unchanged": result.unchanged,
        }

        def tx() -> None:
            with self.engine.begin() as conn:
                written = result.written
                if result.outputs is not None:
                    written = self.loader.write(result.outputs, conn=conn, run_id=self.run.id)
                if retry_source is not None:
                    state.record_rejects(conn, self.schema, retry_source, result.rejects)
                    state.resolve_rejects(
                        conn, self.schema, retry_source, [w.release_id for w in written], self.run.id
                    )
                else:
                    state.record_rejects(conn, self.schema, self.run.id, result.rejects)
                state.record_delivered(conn, self.schema, self.run.job, self.run.id, result.delivered)
                if through is None:
                    state.record_ahead(conn, self.schema, self.run.id, ahead_entry(task), **counts)
                else:
                    state.advance(
                        conn,
                        self.schema,
                        self.run.id,
                        last_key=through.last_key,
                        next_offset=through.next_offset,
                        chunks_done=through.number + 1,
                        ahead=ahead,
                        skip=skip,
                        **counts,
                    )

        with_retries(
            tx,
            what=f"loading chunk {task.number}",
            policy=self.retry,
        )
        if isinstance(self.loader, FileLoader):
            # committed: its files no longer need their pending list
            self.loader.settle(result.written, key=task.release_ids[0] if task.release_ids else None)
        log.info(
            "chunk %d loaded: %d releases (ids %s), %d built, %d rejected, %d takedowns, %d unchanged, "
            "%.3f s in worker %d (fetch %.3f, build %.3f, write %.3f)",
            task.number, len(task.release_ids), _id_span(task.release_ids), result.built, len(result.rejects),
            result.takedowns, result.unchanged, result.seconds, result.pid,
            result.fetch_seconds, result.build_seconds, result.write_seconds,
            extra={"fields": {
                "chunk": task.number, "releases": len(task.release_ids), "built": result.built,
                "rejected": len(result.rejects), "takedowns": result.takedowns, "unchanged": result.unchanged,
                "seconds": round(result.seconds, 3), "worker_pid": result.pid,
            }},
        )
        self.tally.add(result)

    def _close(self, status: str, error: BaseException | None) -> RunReport:
        seconds = time.monotonic() - self.t0
        message = None
        if error is not None:
            message = mask_text(str(error)) or type(error).__name__
        if status == "interrupted" and message is None:
            message = "interrupted by a signal"
        peak = self.tally.peak_memory_mb(self.executor.worker_count())
        try:
            row = self.lock.execute(
                lambda c: state.finish_run(
                    c, self.schema, self.run.id, status=status, seconds=seconds, peak_memory_mb=peak, error=message
                ),
                what="recording the run's result",
                policy=self.retry,
            )
        except EtlError as exc:
            log.error("could not record the end of run %d: %s", self.run.id, mask_text(str(exc)))
            row = dataclasses.replace(
                self.run, status=status, built=self.tally.built, rejected=self.tally.rejected, skipped=self.tally.skipped,
                takedowns=self.tally.takedowns, unchanged=self.tally.unchanged,
                seconds=(self.run.seconds or 0) + seconds, peak_memory_mb=peak, error=message,
            )
        total_seconds = row.seconds or seconds
        return RunReport(
            run_id=row.id,
            job=row.job,
            status=status,
            mode=row.mode,
            built=row.built,
            rejected=row.rejected,
            skipped=row.skipped,
            seconds=total_seconds,
            releases_per_second=(row.built + row.rejected + row.skipped) / total_seconds if total_seconds else 0.0,
            peak_memory_mb=peak,
            target=row.target,
            output=row.output,
            batch_id=row.batch_id,
            attempts=row.attempts,
            chunks_redone=row.chunks_redone,
            resumed=self.resumed,
            error=message,
            attempt_releases=self.tally.attempt_releases,
            attempt_seconds=seconds,
            main_peak_mb=own_peak_rss_mb(),
            worker_peak_mb=tuple(round(v, 1) for v in self.tally.worker_rss.values()),
            stage_seconds={k: round(v, 3) for k, v in self.tally.stage_seconds.items()},
            takedowns=row.takedowns,
            unchanged=row.unchanged,
            watermark_from=row.watermark_from,
            watermark_to=row.watermark_to,
            data_warnings=self.tally.data_warnings,
            shared_isrcs=self.shared_isrcs,
            delivery=self.delivery,
        )



class _DeliveryStopped(Exception):
    """Raised at a file boundary of the upload after Ctrl-C / SIGTERM."""


class Heartbeat:
    """Beats the run row every ``HEARTBEAT_SECONDS`` from a thread while the main thread does long work
    (the upload, the orphan check), checking the row still names this runner.

    The loop beats between chunks itself; after it, nothing else would: a delivery of more than
    ``joblock.STALE_AFTER`` would look stalled and another host would take the run over. A takeover found
    is kept for ``raise_if_lost`` (called at every file boundary of the upload).
    """

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.lost: EtlError | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ddex-etl-heartbeat", daemon=True)
        self._mutex = threading.Lock()

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def beat_now(self) -> None:
        """One beat from the caller's thread (raises what it finds)."""
        self.raise_if_lost()
        with self._mutex:
            self.runner._heartbeat_owned()

    def raise_if_lost(self) -> None:
        if self.lost is not None:
            raise self.lost

    def _run(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                with self._mutex:  # the lock's connection is not shared by two threads at once
                    self.runner._heartbeat_owned()
            except EtlError as exc:
                self.lost = exc
                log.error("%s", mask_text(str(exc)))
                return
            except Exception as exc:  # noqa: BLE001 - a beat that failed is tried again at the next one
                log.warning("could not update the run's heartbeat: %s", mask_text(str(exc)))


def _is_our_message(root: Path, ident: str) -> bool:
    """``<root>/<ident>/<ident>.xml`` is a regular file reached without a link."""
    try:
        folder = os.lstat(root / ident)
        message = os.lstat(root / ident / f"{ident}.xml")
    except OSError:
        return False
    return stat.S_ISDIR(folder.st_mode) and stat.S_ISREG(message.st_mode)


def _id_span(ids: tuple[int, ...]) -> str:
    return f"{ids[0]}..{ids[-1]}" if ids else "none"


def _exit_interrupted(signum: int, frame: Any) -> None:
    _hard_exit({})


# Called with what is known just before a second signal ends the process at once
# (``etl run --json`` prints its one JSON object from it); see set_hard_exit_reporter.
_HARD_EXIT_REPORTER: Callable[[dict[str, Any]], None] | None = None


def set_hard_exit_reporter(reporter: Callable[[dict[str, Any]], None] | None) -> None:
    """Have ``reporter(data)`` called when a second Ctrl-C / SIGTERM ends the process without unwinding."""
    global _HARD_EXIT_REPORTER
    _HARD_EXIT_REPORTER = reporter


# Runs going on in this process: with recipients side by side only the main thread gets signals, and
# hands them to each (``stop_all``).
_ACTIVE: set[Runner] = set()
_ACTIVE_LOCK = threading.Lock()


def stop_all(signum: int) -> None:
    """Tell every run of this process a signal came (the first stops them after their chunks in hand).

    A second signal marks every one interrupted and exits at once, as one run's second signal does.
    """
    with _ACTIVE_LOCK:
        loops = list(_ACTIVE)
    if any(loop.signals for loop in loops):
        for loop in loops:
            loop.executor.kill()
            with contextlib.suppress(Exception):
                mark_interrupted_now(loop.url, loop.schema, loop.run.id, OWN_BACKENDS)
        first = loops[0]
        _hard_exit({"run_id": first.run.id, "job": first.run.job, "mode": first.run.mode})
    for loop in loops:
        loop.request_stop(signum)


def _hard_exit(known: dict[str, Any]) -> None:
    if _HARD_EXIT_REPORTER is not None:
        with contextlib.suppress(Exception):
            _HARD_EXIT_REPORTER({
                **known, "status": "interrupted", "exit_code": ExitCode.INTERRUPTED,
                "error": "interrupted by a second signal; the run is resumable (etl resume)",
            })
    os._exit(ExitCode.INTERRUPTED)


def _attach(exc: EtlError, report: RunReport) -> EtlError:
    """Errors leaving a run carry its report (the CLI can print the summary too)."""
    exc.report = report  # type: ignore[attr-defined]
    return exc


def mark_interrupted_now(url: str, schema: str, run_id: int, own_backends: set[int] | frozenset[int] = frozenset()) -> None:
    """From a signal handler: a fresh short-lived connection, short limits.

    The signal may have stopped this process in the middle of a transaction
    that holds the run's row (a chunk's commit): the update would then wait on
    this very process. So it waits half a second at most, and then ends this
    process's own sessions (``own_backends``; the process is exiting, their
    transactions roll back and are redone on resume) and tries again.
    """
    import psycopg
    from sqlalchemy.engine import make_url

    libpq = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    update = (
        f"UPDATE {state._t(schema, 'runs')} SET status = 'interrupted', finished_at = now(), "
        "error = 'interrupted (second signal)' WHERE id = %s AND status = 'running'"
    )
    with psycopg.connect(libpq, connect_timeout=2, autocommit=True, options="-c statement_timeout=2000 -c lock_timeout=500") as conn:
        try:
            conn.execute(update, (run_id,))
            return
        except psycopg.errors.LockNotAvailable:
            if not own_backends:
                raise
        conn.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (sorted(own_backends),))
        conn.execute(update, (run_id,))


def track_backends(engine: Engine, into: set[int]) -> None:
    """Keep ``into`` = the server pids of ``engine``'s open connections (see ``mark_interrupted_now``)."""

    def on_connect(dbapi_conn: Any, record: Any) -> None:
        with contextlib.suppress(Exception):
            into.add(int(dbapi_conn.info.backend_pid))

    def on_close(dbapi_conn: Any, *record: Any) -> None:
        with contextlib.suppress(Exception):
            into.discard(int(dbapi_conn.info.backend_pid))

    sa.event.listen(engine, "connect", on_connect)
    sa.event.listen(engine, "close", on_close)
    sa.event.listen(engine, "close_detached", on_close)


# --------------------------------------------------------------------------- public API
