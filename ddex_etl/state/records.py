"""What the state tables hold, as frozen records: runs, checkpoints, rejected releases."""
from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

RUN_STATUSES = ("running", "succeeded", "failed", "interrupted")
RUN_MODES = ("full", "incremental", "retry", "targeted")
STAGES = ("extract", "transform", "load")


@dataclass(frozen=True)
class RunRow:
    """One row of ``runs``."""

    id: int
    job: str
    status: str
    mode: str
    extract_mode: str
    config_fingerprint: str
    target: str
    layout: str | None
    output: str | None
    batch_id: str | None
    source_run_id: int | None
    options: dict[str, Any]
    watermark_from: dt.datetime | None
    watermark_to: dt.datetime | None
    started_at: dt.datetime
    resumed_at: dt.datetime | None
    finished_at: dt.datetime | None
    heartbeat_at: dt.datetime | None
    attempts: int
    pid: int | None
    host: str | None
    total: int | None
    built: int
    rejected: int
    skipped: int
    chunks_redone: int
    seconds: float | None
    releases_per_second: float | None
    peak_memory_mb: float | None
    error: str | None
    takedowns: int = 0
    unchanged: int = 0

    @property
    def delivery_id(self) -> str:
        """What this run's MessageIds end with: ``run<id>-<a random id of the run>``.

        The random part is drawn once, when the run is created, and kept in
        the run row, so a resumed run writes the same MessageIds (the same
        bytes) and no other run ever does: not after the state schema was
        dropped and recreated, nor on a second machine, nor from a restored
        backup. Runs created before it existed keep ``run<id>``.
        """
        uid = self.options.get("delivery_uid") if isinstance(self.options, dict) else None
        return f"run{self.id}-{uid}" if isinstance(uid, str) and uid else f"run{self.id}"


@dataclass(frozen=True)
class Checkpoint:
    """Where a run stands: the first ``chunks_done`` chunks are loaded, and so are the chunks in ``ahead``.

    ``ahead``: chunks of the current attempt loaded beyond that contiguous
    point, each ``{"n": number, "lo": first id, "hi": last id}``. ``skip``:
    ``[lo, hi]`` id ranges (or, in offset mode, ``{"chunk": n}`` chunk numbers)
    that an earlier attempt loaded that way; a resume filters them out of its chunks.
    """

    run_id: int
    last_key: int | None
    next_offset: int
    chunks_done: int
    chunks_dispatched: int
    updated_at: dt.datetime | None = None
    ahead: list[dict[str, Any]] = field(default_factory=list)
    skip: list[Any] = field(default_factory=list)
    claims_through: int = -1  # the last chunk whose identifiers are claimed (see ddex_etl.state.claims)


@dataclass(frozen=True)
class RejectRecord:
    """A release that could not be extracted, built or loaded."""

    release_id: int
    stage: str  # extract | transform | load
    error_kind: str  # e.g. ReleaseDataError
    message: str
    retryable: bool = False
    input: Any = None  # JSON-able snapshot of the input


@dataclass(frozen=True)
class RejectRow:
    """One row of ``rejected_releases``."""

    id: int
    run_id: int
    release_id: int
    stage: str
    error_kind: str
    message: str
    retryable: bool
    attempts: int
    input: Any
    created_at: dt.datetime
    updated_at: dt.datetime
    resolved_at: dt.datetime | None
    resolved_by_run: int | None = field(default=None)

    def as_dict(self) -> dict[str, Any]:
        """What ``etl errors --json`` prints for it (the row's own id and update time left out)."""
        data = dataclasses.asdict(self)
        del data["id"], data["updated_at"]
        return data


_RUN_COLUMNS = [f.name for f in RunRow.__dataclass_fields__.values()]
_REJECT_COLUMNS = [f.name for f in RejectRow.__dataclass_fields__.values()]


def _run(row: Any) -> RunRow:
    return RunRow(**{k: row._mapping[k] for k in _RUN_COLUMNS})
