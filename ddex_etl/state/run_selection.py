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

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from . import RunRow

# Where a run row keeps the per-key hashes of its configuration (``Config.fingerprint_keys``).
CONFIG_KEYS = "config_keys"


# A recipient's key and the keys Config.for_recipient derives from it.
_DERIVED = {
    "recipients.dpid": ("transform.recipient_dpid",),
    "recipients.party_name": ("transform.recipient_name",),
    "recipients.name": ("transform.recipient_name", "load.directory"),
    "recipients.ern_version": ("transform.ern_version",),
    "recipients.message_control": ("transform.message_control_type",),
    "recipients.allow_unverified_media": ("load.allow_unverified_media",),
}


@dataclass(frozen=True)
class ConfigPrint:
    """The configuration as runs record it: the fingerprint, its per-key hashes, and the older fingerprint."""

    fingerprint: str
    keys: Mapping[str, str] = field(default_factory=dict)
    legacy: str | None = None  # what versions before per-key hashes recorded for the same configuration

    @classmethod
    def of(cls, cfg: object) -> ConfigPrint:
        return cls(cfg.fingerprint(), cfg.fingerprint_keys(), cfg.legacy_fingerprint())  # type: ignore[attr-defined]

    def matches(self, run: RunRow) -> bool:
        """Whether ``run`` was started with this configuration (as far as its output goes)."""
        return run.config_fingerprint == self.fingerprint or (
            self.legacy is not None and run.config_fingerprint == self.legacy and CONFIG_KEYS not in (run.options or {})
        )

    def changed(self, run: RunRow) -> list[str] | None:
        """The fingerprinted keys that differ from ``run``'s, or None when the run did not record them."""
        recorded = run.options.get(CONFIG_KEYS) if isinstance(run.options, dict) else None
        if not isinstance(recorded, dict) or not self.keys:
            return None
        changed = {k for k in set(recorded) | set(self.keys) if recorded.get(k) != self.keys.get(k)}
        for key, derived in _DERIVED.items():  # name the key the user changed, not the ones it sets
            if key in changed:
                changed -= set(derived)
        return sorted(changed)

    def difference(self, run: RunRow) -> str:
        """"another configuration (...)", naming the keys that differ when the run recorded them."""
        changed = self.changed(run)
        if changed:
            return f"another configuration ({', '.join(changed)} changed since it started)"
        return (f"another configuration (fingerprint {run.config_fingerprint}, now {self.fingerprint}; "
                "started by an older version, which did not record which keys)")

    def restore_hint(self, run: RunRow) -> str:
        """The one next step that finishes ``run``: put its keys back, then resume it."""
        changed = self.changed(run)
        what = f"{', '.join(changed)} as run {run.id} had it" if changed else f"the configuration run {run.id} started with"
        return f"restore {what}, then `etl resume {run.id}`"


@dataclass(frozen=True)
class Selection:
    """The outcome: continue ``resume``, or start afresh (superseding ``superseded`` if set)."""

    resume: RunRow | None = None
    superseded: RunRow | None = None
    reason: str | None = None  # why ``superseded`` is not continued
    next_step: str | None = None  # how to finish ``superseded`` instead, when `etl resume ID` alone would not

    def describe(self) -> str | None:
        """One line for the log and the summary, or None when nothing was superseded."""
        old = self.superseded
        if old is None:
            return None
        step = self.next_step or f"resume it with `etl resume {old.id}`"
        return f"run {old.id} ({old.mode}, {old.status}) is superseded: {self.reason}; it is kept as it stands, {step}"


def _a(word: str) -> str:
    return f"an {word}" if word[:1] in "aeiou" else f"a {word}"


def select_run(unfinished: RunRow | None, *, mode: str, fingerprint: str | ConfigPrint, new: bool) -> Selection:
    """Decide what `etl run` in ``mode`` does with the job's newest unfinished full/incremental run."""
    if unfinished is None:
        return Selection()
    now = fingerprint if isinstance(fingerprint, ConfigPrint) else ConfigPrint(fingerprint)
    step = None
    if new:
        reason = "--new asks for a new run"
    elif unfinished.mode != mode:
        reason = f"it is {_a(unfinished.mode)} run and {_a(mode)} run was asked for"
    elif not now.matches(unfinished):
        reason = f"it was started with {now.difference(unfinished)}"
        step = "to finish it instead, " + now.restore_hint(unfinished)
    else:
        return Selection(resume=unfinished)
    return Selection(superseded=unfinished, reason=reason, next_step=step)
