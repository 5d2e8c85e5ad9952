"""Which run `etl run` works on: the job's unfinished run, or a new one.

A scheduler calls the same command every night, so the rule has to be one it
can live with: an unfinished run is continued only when it is the same kind
of run (full or incremental) started with the same configuration. Anything
else (another mode, another configuration, ``--new``) supersedes it: it is
left as it stands, still resumable by id with ``etl resume RUN_ID``, and the
requested run starts. A failed run can then never hold a job hostage, and
``--full`` / ``--incremental`` always mean what they say.

Targeted runs (``--since``, ``--release-id``) and retries neither continue nor
supersede the job's unfinished run: they run beside it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from . import RunRow


@dataclass(frozen=True)
class Selection:
    """The outcome: continue ``resume``, or start afresh (superseding ``superseded`` if set)."""

    resume: RunRow | None = None
    superseded: RunRow | None = None
    reason: str | None = None  # why ``superseded`` is not continued

    def describe(self) -> str | None:
        """One line for the log and the summary, or None when nothing was superseded."""
        old = self.superseded
        if old is None:
            return None
        return (
            f"run {old.id} ({old.mode}, {old.status}) is superseded: {self.reason}; "
            f"it is kept as it stands, resume it with `etl resume {old.id}`"
        )


def _a(word: str) -> str:
    return f"an {word}" if word[:1] in "aeiou" else f"a {word}"


def select_run(unfinished: RunRow | None, *, mode: str, fingerprint: str, new: bool) -> Selection:
    """Decide what `etl run` in ``mode`` does with the job's newest unfinished full/incremental run."""
    if unfinished is None:
        return Selection()
    if new:
        reason = "--new asks for a new run"
    elif unfinished.mode != mode:
        reason = f"it is {_a(unfinished.mode)} run and {_a(mode)} run was asked for"
    elif unfinished.config_fingerprint != fingerprint:
        reason = (
            f"it was started with another configuration (fingerprint {unfinished.config_fingerprint}, "
            f"now {fingerprint})"
        )
    else:
        return Selection(resume=unfinished)
    return Selection(superseded=unfinished, reason=reason)
