"""What every loader shares: the documents it takes, what it reports back, the Loader protocol, names."""
from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.engine import Connection, Engine

from ..models import Document


TMP_SUFFIX = ".etl-tmp"
PENDING_SUFFIX = ".etl-pending"  # ddex-batch: a chunk's files, listed until its checkpoint commits
# Which of some release ids a committed chunk of the run delivered (see FileLoader._reconcile).
Committed = Callable[[Sequence[int]], set[int]]
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,120}")


@dataclass(frozen=True, slots=True)


class Output:
    """A document with the identifier its file or folder is named after."""

    doc: Document
    identifier: str  # see release_identifier()


@dataclass(frozen=True, slots=True)


class Written:
    """What a loader did with one document (small enough to send between processes)."""

    release_id: int
    where: str  # relative file path, or "schema.table"
    checksum: str


def release_identifier(release_id: int, icpn: str | None = None, grid: str | None = None) -> str:
    """The name of a release's folder/file: its ICPN, else its GRid, else its release id.

    DDEX batch deliveries name each release folder by the release's identifier.
    Anything that is not a plain file-name-safe token falls back to the release
    id, so a stray ``/`` in the catalog can never write outside the batch.
    """
    for candidate in (icpn, grid):
        if candidate:
            token = candidate.strip()
            if _SAFE_NAME.fullmatch(token):
                return token
    return str(release_id)


def new_batch_id(now: dt.datetime | None = None) -> str:
    """A DDEX batch id: the creation time as ``YYYYMMDDhhmmssnnn`` (UTC, milliseconds)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return now.strftime("%Y%m%d%H%M%S") + f"{now.microsecond // 1000:03d}"


class Loader(Protocol):
    """Where documents go. ``in_worker``: the worker that built a chunk writes it itself."""

    in_worker: bool

    def describe(self) -> str:
        """Where output goes, for the run row and messages."""

    def check(self) -> None:
        """Fail early (before a run row exists) when the destination cannot work."""

    def acquire(self, job: str, run_id: int | None = None) -> None:
        """Claim the destination for this run (before a run row exists), or refuse."""

    def prepare(self, engine: Engine, *, run_id: int | None = None, committed: Committed | None = None) -> None:
        """Make the destination ready and clean up after a crashed attempt."""

    def write(self, outputs: Sequence[Output], *, conn: Connection | None, run_id: int) -> list[Written]:
        """Load one chunk's documents (table: inside ``conn``'s transaction)."""

    def finish(self, *, resumed: bool) -> None:
        """Called once when the whole run is loaded (e.g. write BatchComplete)."""

    def close(self) -> None:
        """Called once however the run ended: clean up what is in flight, free the destination."""


def _pending_name(run_id: int, first_release_id: int) -> str:
    return f".{run_id}-{first_release_id}{PENDING_SUFFIX}"
