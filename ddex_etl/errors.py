"""One error tree for the whole connector.

Every error says whether a retry can help (``retryable``) and which exit code
the CLI should use for it, so the pipeline and the CLI never inspect driver
exceptions or message text to decide what to do.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# C0 and C1 controls, DEL, and the characters terminals and log viewers take for a line break.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: object) -> str:
    """Text from outside (a store's acknowledgement, a file name it listed) as one visible line.

    Control characters are escaped the way Python writes them (``\\n``,
    ``\\x1b``, ``\\u2028``), so a store's text can
    never start a line of its own in our log or output (a fake ``ERROR
    pipeline ...``) nor steer the terminal. Every place that shows or logs text
    a store wrote goes through this one function.
    """
    s = str(text)
    if not _UNPRINTABLE.search(s):
        return s
    return _UNPRINTABLE.sub(lambda m: _NAMED.get(m.group(0)) or (
        f"\\x{ord(m.group(0)):02x}" if ord(m.group(0)) < 0x100 else f"\\u{ord(m.group(0)):04x}"), s)


class ExitCode:
    """Process exit codes, documented in the README and ``etl --help``."""

    OK = 0
    FAILED = 1
    USAGE = 2  # usage or configuration error
    REJECTED = 3  # the run finished, but some releases were rejected
    LOCKED = 4  # another run of the same job holds the lock
    INTERRUPTED = 130  # stopped by Ctrl-C / SIGTERM; resumable


class EtlError(Exception):
    """Root of every error the connector raises on purpose."""

    retryable: bool = False
    exit_code: int = ExitCode.FAILED


class ConfigError(EtlError):
    """The configuration is invalid; ``problems`` lists every problem found."""

    exit_code = ExitCode.USAGE

    def __init__(self, problems: list[str] | tuple[str, ...] | str) -> None:
        if isinstance(problems, str):
            problems = [problems]
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        noun = "problem" if len(self.problems) == 1 else "problems"
        super().__init__(f"configuration has {len(self.problems)} {noun}:\n{lines}")

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from its problems, not its message (which __init__ would wrap again).
        return type(self), (self.problems,), self.__dict__


class TransientError(EtlError):
    """A fault a retry can fix: dropped connection, restart, deadlock, pool timeout."""

    retryable = True


class TerminalError(EtlError):
    """A fault no retry fixes: bad credentials, missing table, bad query, missing directory."""


class OutputError(TerminalError):
    """Writing output failed (permission denied, disk full, name refused)."""


class RefusedError(EtlError):
    """A command refused to touch data it does not own (``etl seed`` on a real catalog); ``--yes`` overrides."""

    exit_code = ExitCode.USAGE


class LockHeldError(EtlError):
    """Another process is running the same job."""

    exit_code = ExitCode.LOCKED


class LostLockError(TerminalError):
    """The run's job lock went with its connection and the run is no longer this runner's to continue."""


class InterruptedRun(EtlError):
    """The run was stopped by a signal; it can be resumed."""

    exit_code = ExitCode.INTERRUPTED


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One reason a release cannot become a valid message."""

    field: str  # dotted path, e.g. "tracks[3].isrc" or "deals[0].commercial_model"
    value: object
    problem: str  # what is wrong
    fix: str  # what would fix it

    def __str__(self) -> str:
        return f"{self.field}={self.value!r}: {self.problem}; fix: {self.fix}"


class ReleaseDataError(EtlError):
    """A release's data cannot make a schema-valid message. Names release, field, value, fix."""

    def __init__(self, release_id: object, problems: list[FieldProblem] | tuple[FieldProblem, ...]) -> None:
        self.release_id = release_id
        self.problems = tuple(problems)
        detail = "; ".join(str(p) for p in self.problems)
        super().__init__(f"release {release_id}: {detail}")

    def __reduce__(self) -> tuple[Any, ...]:
        # Picklable (a worker process or a Dask worker sends it back): rebuilt from its arguments.
        return type(self), (self.release_id, self.problems), self.__dict__


class DeliveryError(EtlError):
    """Sending a batch to a store's server or bucket failed (see ``ddex_etl.delivery``)."""


class DeliveryTransientError(DeliveryError, TransientError):
    """A delivery fault a retry can fix: connection lost, 503 SlowDown, timeout. Resume the upload."""


class DeliveryTerminalError(DeliveryError, TerminalError):
    """A delivery fault no retry fixes: bad credentials, unknown host key, missing bucket, unsafe path."""


class MediaError(ReleaseDataError):
    """A release's audio or artwork is missing or does not match the catalog MD5; the release is rejected."""


class ClusterError(TerminalError):
    """The Dask cluster that runs a run's chunks cannot be reached, or was lost mid-run (``etl resume`` continues)."""
