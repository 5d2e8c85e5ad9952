"""The library face of the ERN builder: ``DDEXBuilder`` and ``BatchResult``.

Users who embed the connector in their own Python code (a DataFrame from a
CSV export, a list of release dicts from an API) call this instead of
``etl run``. It is the same engine: the same records conversion
(``ddex_etl.extract.records``), the same pure builder (``ddex_etl.ern``), the same
error tree (``retryable`` says whether a retry can help) and the same worker
processes. Only the source and the sink differ.

``parallel=True`` builds in a pool of worker processes that the builder
creates on first use and reuses (``ddex_etl.executors.pool``). Its workers
start as fresh interpreters that import the package, never the caller's main
script, so a script written top to bottom without an
``if __name__ == "__main__":`` guard runs its top level once, from any thread
and with any number of builders and processors, and no fork copies a lock
another thread holds. ``start_method=`` asks for a ``multiprocessing`` pool
instead (``fork``, ``forkserver``, ``spawn``), with their usual rules.

The streaming processor lives in ``ddex_etl.api.batch_stream``, which builds on this
module; this one never imports it (``ddex_etl.StreamingBatchProcessor`` reaches it).
"""
from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
import logging
import multiprocessing
import os
import random
import re
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..dpid import DEMO_RECIPIENT_DPID, DEMO_SENDER_DPID
from ..errors import ConfigError, EtlError, FieldProblem, ReleaseDataError
from ..executors.pool import ProcessPool
from ..models import Document, Party, Release
from .engines import DaskPool, check_executor
from .frame_rows import Block, RowGroup, data_of, grouped, pack, prepared, release_rows

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

ERN_VERSIONS = ("4.3", "4.2", "3.8.2")
_VERSION_ALIASES = {"43": "4.3", "42": "4.2", "382": "3.8.2", "ern43": "4.3", "ern42": "4.2", "ern382": "3.8.2"}
_DPID = re.compile(r"PADPIDA[a-zA-Z0-9]+")  # the XSD's DdexPartyId pattern
# Used when the caller names no sender/recipient: the same demo parties as etl.toml's defaults.
DEFAULT_SENDER = Party(DEMO_SENDER_DPID, "Demo Label Group")
DEFAULT_RECIPIENT = Party(DEMO_RECIPIENT_DPID, "Demo Store")

T = TypeVar("T")

# A release as the batch API accepts it: the package's record or a nested dict
# (see ``ddex_etl.extract.records.release_from_dict``).
ReleaseInput = Release | Mapping[str, Any]


# ---------------------------------------------------------------------------
# Results


@dataclass(frozen=True, slots=True)
class BuiltItem:
    """One release that became a message."""

    id: Any  # the release id
    xml_bytes: bytes  # UTF-8, exactly as the builder produced it
    checksum: str  # sha256 hex of xml_bytes
    message_id: str = ""
    ern_version: str = ""
    warnings: tuple[str, ...] = ()  # repairs made (control characters stripped, ...)
    attempts: int = 1

    @property
    def xml(self) -> str:
        """The document as text."""
        return self.xml_bytes.decode("utf-8")


@dataclass(frozen=True, slots=True)
class ItemError:
    """One release that did not become a message, and why.

    ``message`` names the release, the field, the value and the fix.
    ``retryable`` says whether trying again could help (a flaky validator or
    hook) or not (bad data: fix the data first). ``data`` is the input item as
    given (a Release, a dict, or for a DataFrame the list of row dicts), so it
    can be inspected, fixed and resubmitted.
    """

    id: Any
    message: str
    retryable: bool = False
    kind: str = "ReleaseDataError"  # the exception class name
    stage: str = "build"  # records | build | validate
    problems: tuple[FieldProblem, ...] = ()
    attempts: int = 1
    data: Any = None

    @property
    def fields(self) -> tuple[str, ...]:
        """The dotted field paths named by the problems, e.g. ``("tracks[0].isrc",)``."""
        return tuple(p.field for p in self.problems)

    def __str__(self) -> str:
        return self.message


class BatchError(EtlError):
    """Raised by ``BatchResult.raise_for_errors()``: at least one release failed."""

    def __init__(self, errors: Sequence[ItemError]) -> None:
        self.errors = tuple(errors)
        self.retryable = bool(errors) and all(e.retryable for e in errors)
        first = errors[0].message if errors else ""
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(f"{len(errors)} release(s) failed: {first}{more}")

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from its errors (a worker process can send it back).
        return type(self), (self.errors,), self.__dict__


@dataclass(slots=True)
class BatchResult:
    """What ``build_batch`` / ``from_dataframe_batch`` did, in input order.

    ``success`` holds a ``BuiltItem`` per built release, ``errors`` an
    ``ItemError`` per failed one. ``skipped`` counts releases never attempted
    because the batch stopped early (``fail_fast`` or ``continue_on_error=False``).
    """

    success: list[BuiltItem] = field(default_factory=list)
    errors: list[ItemError] = field(default_factory=list)
    skipped: int = 0
    stopped_early: bool = False
    batches: int = 0
    retries: int = 0  # extra attempts made for retryable errors
    elapsed_seconds: float = 0.0
    parallel: bool = False

    @property
    def total(self) -> int:
        """Releases attempted (succeeded + failed)."""
        return len(self.success) + len(self.errors)

    @property
    def ok(self) -> bool:
        """True when every release was built and none was skipped."""
        return not self.errors and not self.skipped

    @property
    def items_per_second(self) -> float:
        return self.total / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0

    @property
    def error_rate(self) -> float:
        return len(self.errors) / self.total if self.total else 0.0

    @property
    def stats(self) -> dict[str, Any]:
        """The figures as a plain dict (for logs and JSON)."""
        return {
            "total": self.total,
            "succeeded": len(self.success),
            "failed": len(self.errors),
            "skipped": self.skipped,
            "stopped_early": self.stopped_early,
            "batches": self.batches,
            "retries": self.retries,
            "elapsed_ms": round(self.elapsed_seconds * 1000, 3),
            "items_per_second": round(self.items_per_second, 1),
            "error_rate": self.error_rate,
            "parallel": self.parallel,
        }

    def raise_for_errors(self) -> None:
        """Raise ``BatchError`` if any release failed (for callers who prefer exceptions)."""
        if self.errors:
            raise BatchError(self.errors)

    def __repr__(self) -> str:
        return (
            f"BatchResult(succeeded={len(self.success)}, failed={len(self.errors)}, "
            f"skipped={self.skipped}, elapsed={self.elapsed_seconds:.3f}s)"
        )


# ---------------------------------------------------------------------------
# Retry helper


def backoff_delay(attempt: int, base: float, cap: float = 60.0, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based).

    Exponential (``base * 2**(attempt-1)``, at most ``cap``) with "equal
    jitter": half the delay is fixed, half random, so many workers retrying the
    same fault do not hammer it in step.
    """
    if base <= 0 or attempt < 1:
        return 0.0
    delay = min(cap, base * 2 ** (attempt - 1))
    r = (rng or random).random()
    return delay / 2 + r * delay / 2


def retry(
    func: Callable[[], T],
    *,
    max_retries: int,
    retry_delay: float,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[T, int]:
    """Call ``func`` until it succeeds; retry only errors marked ``retryable``.

    Returns ``(value, attempts)``. An exception whose ``retryable`` attribute is
    not true (bad data, a bug) is raised at once; a retryable one is raised
    after ``max_retries`` retries. The raised exception carries ``attempts``.
    """
    attempt = 1
    while True:
        try:
            return func(), attempt
        except Exception as exc:
            if not is_retryable(exc) or attempt > max_retries:
                try:
                    exc.attempts = attempt  # type: ignore[attr-defined]
                except AttributeError:  # exceptions with __slots__
                    pass
                raise
            delay = backoff_delay(attempt, retry_delay)
            if on_retry is not None:
                on_retry(attempt, exc, delay)
            sleep(delay)
            attempt += 1


def is_retryable(exc: BaseException) -> bool:
    """Whether a retry can help: the error tree's ``retryable`` marker (any class may set it)."""
    return bool(getattr(exc, "retryable", False))


# ---------------------------------------------------------------------------
# Building one item (runs in the worker processes, or inline)


@dataclass(frozen=True, slots=True)
class _Spec:
    """Everything a worker needs to build: sent with each chunk (small, picklable)."""

    ctx: Any  # ddex_etl.ern.BuildContext
    ern_version: str
    schema_dir: str | None
    validate: bool  # XSD validation in the worker (user callables run in the calling process)
    max_retries: int
    retry_delay: float


# Item kinds: what the payload is (a DataFrame release: its rows' segments, see frame_rows).
_RELEASE, _DICT, _FRAME = "release", "dict", "frame"


class _ValidationFailed(EtlError):
    """A built document did not pass the XSD (a builder bug or a schema mismatch)."""


def _to_release(kind: str, payload: Any) -> Release:
    from ..extract.records import iter_release_results, release_from_dict

    if kind == _RELEASE:
        return payload  # type: ignore[no-any-return]
    if kind == _DICT:
        return release_from_dict(payload)
    columns, rows = release_rows(payload)
    # The run's own converter: the rows of one release, as the extract query returns them.
    results = list(iter_release_results(rows, columns or None))
    if len(results) == 1:
        if isinstance(results[0], ReleaseDataError):
            raise results[0]
        return results[0]
    ids = [getattr(r, "release_id", None) for r in results]
    raise ReleaseDataError(
        ids[0] if ids else None,
        [FieldProblem("release_id", ids, f"the rows of one group made {len(results)} releases",
                      "group the rows by the release id column (group_by=...)")],
    )


def _packed(chunk: list[tuple[str, Any, Any]]) -> list[tuple[str, Any, Any]]:
    """The chunk as it travels: DataFrame releases point into one block holding only this chunk's rows."""
    frames = [n for n, (kind, _, _) in enumerate(chunk) if kind == _FRAME]
    if not frames:
        return chunk
    out = list(chunk)
    for n, segments in zip(frames, pack([chunk[n][1] for n in frames])):
        out[n] = (_FRAME, segments, chunk[n][2])
    return out


def _run_check(check: Callable[[bytes], Any], xml: bytes, release_id: Any) -> None:
    """Call a user's ``validate_each`` callable; raise when it refuses the document."""
    outcome = check(xml)
    if outcome is False:
        raise _ValidationFailed(f"release {release_id}: the validate_each callable refused the document")
    if isinstance(outcome, (list, tuple)) and outcome:
        raise _ValidationFailed(f"release {release_id}: {'; '.join(map(str, outcome[:5]))}")


def _check_item(
    item: BuiltItem, check: Callable[[bytes], Any], max_retries: int, retry_delay: float
) -> BuiltItem | ItemError:
    """Run a user's callable on a built document, retrying only retryable refusals.

    It runs in the calling process: user code never has to be picklable or
    importable by the workers, and building is deterministic, so retrying the
    check alone is the same as rebuilding and checking again.
    """
    try:
        _, attempts = retry(
            lambda: _run_check(check, item.xml_bytes, item.id), max_retries=max_retries, retry_delay=retry_delay
        )
    except Exception as exc:
        return _item_error(exc, item.id, "validate")
    return item if attempts == 1 else replace(item, attempts=attempts)


def _validate_xml(xml: bytes, spec: _Spec, release_id: Any) -> None:
    """Validate against the XSD; raise when the document is refused."""
    from ..ern.validate import validate_bytes

    issues = validate_bytes(xml, spec.schema_dir, spec.ern_version)
    if issues:
        shown = "; ".join(str(i) for i in issues[:5])
        more = f" (and {len(issues) - 5} more)" if len(issues) > 5 else ""
        raise _ValidationFailed(
            f"release {release_id}: document is not valid against the ERN {spec.ern_version} XSD in "
            f"{spec.schema_dir}: {shown}{more}; fix: check schema_dir points at the official XSDs "
            "for this version, else report this release as a builder bug"
        )


def _build_item(spec: _Spec, kind: str, payload: Any, release_id: Any) -> BuiltItem | ItemError:
    """Convert, build and (optionally) validate one release, with retries for retryable errors."""
    from ..ern import build

    stage = "records"

    def attempt() -> Document:
        nonlocal stage
        stage = "records"
        release = _to_release(kind, payload)
        stage = "build"
        doc = build(release, spec.ctx)
        if spec.validate:
            stage = "validate"
            _validate_xml(doc.xml, spec, doc.release_id)
        return doc

    try:
        doc, attempts = retry(attempt, max_retries=spec.max_retries, retry_delay=spec.retry_delay)
    except Exception as exc:  # every failure becomes a result: the batch goes on
        return _item_error(exc, release_id, stage)
    return BuiltItem(
        id=doc.release_id,
        xml_bytes=doc.xml,
        checksum=doc.checksum,
        message_id=doc.message_id,
        ern_version=doc.ern_version,
        warnings=tuple(doc.warnings),
        attempts=attempts,
    )


def _item_error(exc: BaseException, release_id: Any, stage: str) -> ItemError:
    problems = tuple(getattr(exc, "problems", ()) or ())
    rid = getattr(exc, "release_id", None)
    if rid is None:
        rid = release_id
    message = str(exc)
    if not isinstance(exc, EtlError):
        # Not one of ours: a bug or a user hook. Name the release so it can be found.
        message = f"release {rid}: {type(exc).__name__} during {stage}: {exc}"
    elif rid is not None and str(rid) not in message:
        message = f"release {rid}: {message}"
    return ItemError(
        id=rid,
        message=message,
        retryable=is_retryable(exc),
        kind=type(exc).__name__,
        stage=stage,
        problems=tuple(p for p in problems if isinstance(p, FieldProblem)),
        attempts=int(getattr(exc, "attempts", 1) or 1),
    )


def _modules_to_warm() -> tuple[str, ...]:
    """What a new worker imports before its first chunk: the builder, and pandas when the caller uses it."""
    import sys

    return ("ddex_etl.ern", "ddex_etl.extract.records", *(("pandas",) if "pandas" in sys.modules else ()))


def _warm_up(modules: tuple[str, ...]) -> None:
    """A worker's first call: import what building needs while the caller is still reading its input."""
    import importlib

    for name in modules:
        importlib.import_module(name)


def _build_chunk(spec: _Spec, items: list[tuple[str, Any, Any]]) -> tuple[list[BuiltItem | ItemError], float]:
    """Worker entry point: build a chunk; returns the outcomes and the seconds spent."""
    start = time.perf_counter()
    items = _packed(items)  # in this process too: only the chunk's rows become tuples, never a whole frame
    out = [_build_item(spec, kind, payload, rid) for kind, payload, rid in items]
    return out, time.perf_counter() - start


# ---------------------------------------------------------------------------
# Inputs


def _release_id_of(item: Any) -> Any:
    if isinstance(item, Release):
        return item.release_id
    if isinstance(item, Mapping):
        return item.get("release_id")
    return None


def _classify(item: Any, position: int) -> tuple[str, Any, Any] | ItemError:
    """(kind, payload, id) for a release given as a Release or a dict; an error for anything else."""
    if isinstance(item, Release):
        return (_RELEASE, item, item.release_id)
    if isinstance(item, Mapping):
        return (_DICT, item, item.get("release_id"))
    return ItemError(
        id=None,
        message=(
            f"item #{position}: a {type(item).__name__} is not a release; "
            "fix: pass a ddex_etl.models.Release or a dict with release_id, title, tracks, deals, ..."
        ),
        kind="TypeError",
        stage="records",
        data=item,
    )


def _coerce_party(value: Party | tuple[str, str] | Mapping[str, str] | None, default: Party, what: str) -> Party:
    if value is None:
        party = default
    elif isinstance(value, Party):
        party = value
    elif isinstance(value, Mapping):
        dpid = value.get("dpid", value.get("party_id"))
        name = value.get("name")
        if not dpid or not name:
            raise ConfigError(f"{what}: a dict needs 'dpid' and 'name' keys, got {sorted(value)}")
        party = Party(str(dpid), str(name))
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        party = Party(str(value[0]), str(value[1]))
    else:
        raise ConfigError(f"{what}: expected a Party, a (dpid, name) tuple or a dict, got {value!r}")
    if not _DPID.fullmatch(party.dpid):
        raise ConfigError(
            f"{what}: DPID {party.dpid!r} is not a DDEX party id; fix: use the 'PADPIDA...' id DDEX assigned"
        )
    if not party.name.strip():
        raise ConfigError(f"{what}: name is empty; fix: give the party's name")
    return party


def _normalize_version(version: str) -> str:
    v = str(version).strip().lower().replace("ern", "").strip(" -_")
    v = _VERSION_ALIASES.get(v, v)
    if v not in ERN_VERSIONS:
        raise ConfigError(f"version: ERN {version!r} is not supported; fix: use one of {', '.join(ERN_VERSIONS)}")
    return v


def _pool_context(start_method: str) -> multiprocessing.context.BaseContext:
    """The ``multiprocessing`` context of a pool the caller asked for by start method."""
    ctx = multiprocessing.get_context(start_method)
    if start_method == "forkserver":
        # Import the builder once in the server, not in every worker it forks.
        ctx.set_forkserver_preload(["ddex_etl.api.batch", "ddex_etl.ern", "ddex_etl.extract.records"])
    return ctx


_BROKEN_HINT = (
    "a worker process died twice building this batch (killed for memory, or a crash in a library); "
    "the batch is reported failed and the next one gets a new worker; retry it, or pass parallel=False "
    "to build in this process"
)


# ---------------------------------------------------------------------------
# The builder


class DDEXBuilder:
    """Build DDEX ERN messages from releases given as dicts or ``Release`` records.

    ``sender``/``recipient`` accept a ``Party``, a ``(dpid, name)`` tuple or a
    ``{"dpid": ..., "name": ...}`` dict; by default the demo parties of
    ``etl.toml``. ``schema_dir`` is the folder holding the DDEX XSDs (used by
    ``validate_each``). ``repair`` strips XML-illegal control characters and
    surrounding whitespace with a warning instead of rejecting the release.
    ``workers`` is the size of the process pool (default: one per core);
    ``start_method`` asks for a ``multiprocessing`` pool with that start method
    instead of the default pool, whose workers never import the main script.
    ``executor="dask"`` builds on a Dask cluster instead, through the same
    executor as ``etl run``'s ``run.executor = "dask"``: the one at
    ``scheduler`` (``"tcp://host:8786"``), or without one a ``LocalCluster`` of
    ``workers`` processes started on first parallel use and stopped by ``close()``.

    A builder is safe to share between threads; its process pool is created on
    first parallel use and reused. ``close()`` (or ``with DDEXBuilder(...)``)
    stops the pool.
    """

    def __init__(
        self,
        version: str = "4.3",
        sender: Party | tuple[str, str] | Mapping[str, str] | None = None,
        recipient: Party | tuple[str, str] | Mapping[str, str] | None = None,
        language: str = "en",
        schema_dir: str | os.PathLike[str] | None = None,
        repair: bool = True,
        *,
        workers: int | None = None,
        default_created: dt.datetime | None = None,
        start_method: str | None = None,
        executor: str = "local",
        scheduler: str | None = None,
    ) -> None:
        from ..ern import BuildContext

        self.version = _normalize_version(version)
        self.sender = _coerce_party(sender, DEFAULT_SENDER, "sender")
        self.recipient = _coerce_party(recipient, DEFAULT_RECIPIENT, "recipient")
        if not language or not str(language).strip():
            raise ConfigError("language: empty; fix: give an ISO 639 code such as 'en'")
        self.language = str(language)
        self.repair = bool(repair)
        self.schema_dir = _check_schema_dir(schema_dir)
        if workers is not None and workers < 1:
            raise ConfigError(f"workers: {workers} is not a positive number of processes")
        self.workers = workers or os.cpu_count() or 1
        self.default_created = default_created
        if start_method is not None and start_method not in multiprocessing.get_all_start_methods():
            raise ConfigError(
                f"start_method: {start_method!r} is not available here; fix: one of "
                f"{', '.join(multiprocessing.get_all_start_methods())}, or None"
            )
        self.start_method = start_method
        self.executor = check_executor(executor, scheduler)
        self.scheduler = scheduler
        if self.executor == "dask" and start_method is not None:
            raise ConfigError("start_method: only for executor='local'; fix: leave it out with executor='dask'")
        extra = {"default_created": default_created} if default_created is not None else {}
        # BuildContext checks the language code (and the rest) once, up front.
        self._ctx = BuildContext(
            ern_version=self.version,
            sender=self.sender,
            recipient=self.recipient,
            language=self.language,
            repair=self.repair,
            **extra,
        )
        self._pool: Any = None  # a ProcessPool, or a ProcessPoolExecutor for an explicit start_method
        self._pool_lock = threading.Lock()

    @classmethod
    def from_config(cls, cfg: Any) -> DDEXBuilder:
        """A builder with the transform settings (and worker count) of a loaded ``etl.toml``."""
        tr = cfg.transform
        return cls(
            version=tr.ern_version,
            sender=Party(tr.sender_dpid, tr.sender_name),
            recipient=Party(tr.recipient_dpid, tr.recipient_name),
            language=tr.language,
            schema_dir=tr.schema_dir,
            repair=tr.repair,
            workers=cfg.run.workers or None,
        )

    def __repr__(self) -> str:
        return f"DDEXBuilder(version={self.version!r}, sender={self.sender.dpid!r}, recipient={self.recipient.dpid!r})"

    # -- one release ------------------------------------------------------

    def build_document(self, release: ReleaseInput) -> Document:
        """Build one release into a ``Document`` (bytes, checksum, message id, warnings).

        Raises ``ReleaseDataError`` naming the release, field, value and fix.
        """
        from ..ern import build

        if isinstance(release, Release):
            record = release
        elif isinstance(release, Mapping):
            record = _to_release(_DICT, release)
        else:
            raise TypeError(f"build() takes a Release or a dict, not {type(release).__name__}")
        return build(record, self._ctx)

    def build(self, release: ReleaseInput) -> str:
        """Build one release (a dict or a ``Release``) into an ERN message, as text."""
        return self.build_document(release).xml.decode("utf-8")

    # -- many releases ----------------------------------------------------

    def build_batch(
        self,
        releases: Iterable[ReleaseInput],
        *,
        batch_size: int = 50,
        parallel: bool = True,
        validate_each: bool | Callable[[bytes], Any] = False,
        continue_on_error: bool = True,
        fail_fast: bool = False,
        max_retries: int = 0,
        retry_delay: float = 1.0,
        schema_dir: str | os.PathLike[str] | None = None,
    ) -> BatchResult:
        """Build many releases; failures become ``result.errors`` instead of exceptions.

        - ``batch_size``: releases sent to a worker at a time.
        - ``parallel``: build in worker processes (False: in this thread).
        - ``validate_each``: True validates every document against the XSD in
          ``schema_dir`` (this call's or the builder's); a callable
          ``check(xml: bytes)`` is called instead and refuses a document by
          raising, returning False or returning a non-empty list of problems.
          The callable runs in the calling process (any function or lambda;
          it need not be picklable), while the workers build the next batches.
        - ``continue_on_error=False``: stop after the batch in which the first
          error occurred; ``fail_fast=True``: stop at the first error itself
          (nothing after it, in input order, is kept). Releases not attempted
          are counted in ``result.skipped``.
        - ``max_retries``/``retry_delay``: retries, with exponential backoff
          and jitter, for errors marked ``retryable`` only (a data error is
          never retried: the same data fails the same way).

        Results keep input order.
        """
        items = ((_classify(item, n), item) for n, item in enumerate(releases))
        return self._run(
            items,
            total=len(releases) if isinstance(releases, Sized) else None,
            batch_size=batch_size,
            parallel=parallel,
            validate_each=validate_each,
            continue_on_error=continue_on_error,
            fail_fast=fail_fast,
            max_retries=max_retries,
            retry_delay=retry_delay,
            schema_dir=schema_dir,
        )

    def from_dataframe_batch(
        self,
        df: pd.DataFrame,
        group_by: str = "release_id",
        batch_size: int = 100,
        parallel: bool = True,
        **options: Any,
    ) -> BatchResult:
        """Build every release of a DataFrame in the extract column contract.

        One row per track, release columns repeated (as ``etl``'s extract query
        returns them, or as ``pandas.read_csv("releases.csv")`` reads them).
        Rows are grouped by ``group_by``; a release's rows need not be next to
        each other. A row without a ``group_by`` value and a group whose values
        are bad become ``result.errors`` (with the rows as ``data``), never an
        exception. ``options`` are those of ``build_batch``.
        """
        if group_by not in df.columns:
            raise ConfigError(
                f"group_by: column {group_by!r} is not in the DataFrame "
                f"(columns: {', '.join(map(str, df.columns[:12]))}{', ...' if len(df.columns) > 12 else ''}); "
                "fix: pass group_by= the release id column"
            )
        items = list(_dataframe_items(df, group_by))  # grouping needs every row anyway
        return self._run(items, total=len(items), batch_size=batch_size, parallel=parallel, **options)

    # -- engine -----------------------------------------------------------

    def _spec(
        self,
        validate_each: bool | Callable[[bytes], Any],
        max_retries: int,
        retry_delay: float,
        schema_dir: str | os.PathLike[str] | None,
    ) -> _Spec:
        if max_retries < 0:
            raise ConfigError(f"max_retries: {max_retries} is negative; fix: 0 or more")
        if retry_delay < 0:
            raise ConfigError(f"retry_delay: {retry_delay} is negative; fix: 0 or more seconds")
        folder = _check_schema_dir(schema_dir) if schema_dir is not None else self.schema_dir
        if validate_each is True and folder is None:
            raise ConfigError(
                "validate_each=True needs the DDEX XSD folder; fix: DDEXBuilder(schema_dir=...) "
                "or build_batch(..., schema_dir=...)"
            )
        return _Spec(
            ctx=self._ctx,
            ern_version=self.version,
            schema_dir=str(folder) if folder is not None else None,
            validate=validate_each is True,
            max_retries=max_retries,
            retry_delay=retry_delay,
        )

    def _get_pool(self) -> Any:
        with self._pool_lock:
            if self._pool is None:
                pool: Any
                if self.executor == "dask":
                    pool = DaskPool(self.scheduler, self.workers)
                elif self.start_method is None:
                    pool = ProcessPool(self.workers, _warm_up, (_modules_to_warm(),))
                else:
                    pool = cf.ProcessPoolExecutor(max_workers=self.workers, mp_context=_pool_context(self.start_method))
                # A builder dropped without close() must not leave its workers behind.
                weakref.finalize(self, pool.shutdown, wait=False, cancel_futures=True)
                self._pool = pool
            return self._pool

    @property
    def _parallel_capable(self) -> bool:
        """Whether parallel=True sends chunks away: always on Dask, with more than one process locally."""
        return self.executor == "dask" or self.workers > 1

    def _inflight_limit(self) -> int:
        """Chunks in flight at once: two per worker (per Dask worker thread), so none idles between chunks."""
        return int(getattr(self._get_pool(), "slots", 0)) or self.workers * 2

    def _reset_pool(self, broken: Any) -> None:
        """Forget a pool whose worker died (others may already have replaced it)."""
        if broken is None or getattr(broken, "heals", False):
            return  # a ProcessPool replaces its dead worker itself
        with self._pool_lock:
            if self._pool is broken:
                self._pool = None
        broken.shutdown(wait=False, cancel_futures=True)

    def _submit(self, spec: _Spec, chunk: list[tuple[str, Any, Any]]) -> cf.Future[Any]:
        chunk = _packed(chunk)
        pool = self._get_pool()
        try:
            future = pool.submit(_build_chunk, spec, chunk)
        except BrokenProcessPool:
            self._reset_pool(pool)
            pool = self._get_pool()
            future = pool.submit(_build_chunk, spec, chunk)
        future.ddex_pool = pool  # type: ignore[attr-defined]  # which pool to replace if it breaks
        return future

    def _collect(
        self, spec: _Spec, chunk: list[tuple[str, Any, Any]], future: cf.Future[Any] | None
    ) -> tuple[list[BuiltItem | ItemError], float]:
        """The outcomes of a chunk; a dead pool is replaced and the chunk retried once."""
        if future is None:
            return _build_chunk(spec, chunk)
        try:
            return future.result()  # type: ignore[no-any-return]
        except BrokenProcessPool:
            self._reset_pool(getattr(future, "ddex_pool", None))
            retry_future = None
            try:
                retry_future = self._submit(spec, chunk)
                return retry_future.result()  # type: ignore[no-any-return]
            except BrokenProcessPool:
                self._reset_pool(getattr(retry_future, "ddex_pool", None))
                return [_chunk_failure(rid, _BROKEN_HINT, True, "BrokenProcessPool") for _, _, rid in chunk], 0.0
        except Exception as exc:  # e.g. an item that cannot be pickled
            msg = f"could not send the batch to a worker process: {type(exc).__name__}: {exc}"
            return [_chunk_failure(rid, msg, False, type(exc).__name__) for _, _, rid in chunk], 0.0

    def _run(
        self,
        items: Iterable[tuple[tuple[str, Any, Any] | ItemError, Any]],
        *,
        total: int | None,
        batch_size: int,
        parallel: bool,
        validate_each: bool | Callable[[bytes], Any] = False,
        continue_on_error: bool = True,
        fail_fast: bool = False,
        max_retries: int = 0,
        retry_delay: float = 1.0,
        schema_dir: str | os.PathLike[str] | None = None,
    ) -> BatchResult:
        if batch_size < 1:
            raise ConfigError(f"batch_size: {batch_size} is not a positive number of releases")
        spec = self._spec(validate_each, max_retries, retry_delay, schema_dir)
        check = validate_each if callable(validate_each) else None
        use_pool = parallel and self._parallel_capable
        result = BatchResult(parallel=use_pool)
        start = time.perf_counter()
        # A chunk: (work for the worker, the positions of that work in `slots`).
        # `slots` holds each input's outcome in input order; pre-classified
        # errors (not a release at all) take their slot at once.
        stop = False  # an error seen in a settled chunk: stop submitting
        stop_read = False  # an input that is no release at all: stop reading
        slots: list[BuiltItem | ItemError | None] = []  # each input's outcome, in input order
        data: list[Any] = []  # each input as given, for ItemError.data
        inflight: deque[tuple[list[tuple[str, Any, Any]], list[int], cf.Future[Any] | None]] = deque()
        # Bounded: a generator input is never read far ahead of the workers.
        max_inflight = self._inflight_limit() if use_pool else 1

        def settle(chunk: list[tuple[str, Any, Any]], positions: list[int], future: cf.Future[Any] | None) -> None:
            nonlocal stop
            outcomes, _ = self._collect(spec, chunk, future)
            result.batches += 1
            for pos, outcome in zip(positions, outcomes):
                if check is not None and isinstance(outcome, BuiltItem):
                    outcome = _check_item(outcome, check, max_retries, retry_delay)
                slots[pos] = outcome
                if isinstance(outcome, ItemError) and (fail_fast or not continue_on_error):
                    stop = True

        def chunks() -> Iterator[tuple[list[tuple[str, Any, Any]], list[int]]]:
            nonlocal stop_read
            chunk: list[tuple[str, Any, Any]] = []
            positions: list[int] = []
            for classified, original in items:
                pos = len(slots)
                data.append(original)
                if isinstance(classified, ItemError):
                    slots.append(classified)
                    if fail_fast or not continue_on_error:
                        stop_read = True  # the work before it is still wanted
                        break
                    continue
                slots.append(None)
                chunk.append(classified)
                positions.append(pos)
                if len(chunk) >= batch_size:
                    yield chunk, positions
                    chunk, positions = [], []
            if chunk:
                yield chunk, positions

        try:
            for chunk, positions in chunks():
                inflight.append((chunk, positions, self._submit(spec, chunk) if use_pool else None))
                # Settled in input order, so every chunk before the first error
                # is settled before we decide to stop.
                while len(inflight) >= max_inflight and not stop:
                    settle(*inflight.popleft())
                if stop:
                    break
            while inflight and not stop:
                settle(*inflight.popleft())
        finally:
            for _, _, future in inflight:
                if future is not None:
                    future.cancel()  # work after the stop point is not wanted
            inflight.clear()
        result.elapsed_seconds = time.perf_counter() - start

        first_error = next((i for i, s in enumerate(slots) if isinstance(s, ItemError)), None)
        # fail_fast keeps nothing after the first error: the same result whatever the parallelism.
        cut = first_error + 1 if fail_fast and first_error is not None else len(slots)
        for pos in range(cut):
            outcome = slots[pos]
            if outcome is None:  # in a chunk abandoned at the stop
                result.skipped += 1
            elif isinstance(outcome, BuiltItem):
                result.success.append(outcome)
                result.retries += outcome.attempts - 1
            else:
                result.errors.append(replace(outcome, data=data_of(data[pos])))
                result.retries += outcome.attempts - 1
        result.skipped += len(slots) - cut
        result.stopped_early = stop or stop_read
        if result.stopped_early and total is not None:
            result.skipped += max(0, total - len(slots))  # never read
        return result

    # -- lifecycle --------------------------------------------------------

    def close(self) -> None:
        """Stop the worker processes (a later parallel call starts new ones)."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> DDEXBuilder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        # A builder can be sent to another process (or copied); the pool and lock stay behind.
        state = self.__dict__.copy()
        state["_pool"] = None
        del state["_pool_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._pool_lock = threading.Lock()


def _chunk_failure(release_id: Any, message: str, retryable: bool, kind: str) -> ItemError:
    prefix = f"release {release_id}: " if release_id is not None else ""
    return ItemError(id=release_id, message=prefix + message, retryable=retryable, kind=kind, stage="build")


def _check_schema_dir(schema_dir: str | os.PathLike[str] | None) -> Path | None:
    if schema_dir is None:
        return None
    folder = Path(schema_dir).resolve()  # workers and later calls must not depend on the cwd
    if not folder.is_dir():
        raise ConfigError(
            f"schema_dir: folder {folder} not found; fix: point it at the folder holding the DDEX XSDs "
            "(with ern/43, ern/42, ern/382 inside)"
        )
    return folder


def _dataframe_items(df: pd.DataFrame, group_by: str) -> Iterator[tuple[tuple[str, Any, Any] | ItemError, Any]]:
    """Group a DataFrame's rows into releases, keeping the order of first appearance.

    One vectorized pass finds each release's rows; no row becomes a dict here
    (see ``frame_rows``): the workers read their chunk's rows straight from the frame.
    """
    frame, keys, starts, stops, empty_rows = grouped(prepared(df), group_by)
    block = Block(frame)
    for key, start, stop in zip(keys, starts, stops):
        group = RowGroup(key, ((block, start, stop),))
        if key is None:
            yield (
                ItemError(
                    id=None,
                    message=(
                        f"row {empty_rows[start]}: column {group_by!r} is empty, so the row belongs to no release; "
                        f"fix: give every row its release's {group_by}"
                    ),
                    stage="records",
                    problems=(FieldProblem(group_by, None, "empty", f"give every row its release's {group_by}"),),
                ),
                group,
            )
            continue
        yield ((_FRAME, group.segments, key), group)
