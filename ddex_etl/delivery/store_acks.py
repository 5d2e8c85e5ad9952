"""What the stores answered: their acknowledgements, read back and recorded per release; old local batches let go.

A store answers the messages of a batch with ``ACK_*.xml`` files
(``delivery.acks`` reads both kinds DDEX's choreography has used). For one
recipient, ``read_store_acks``:

1. takes the batches of the recipient's newest finished runs
   (``BATCHES_READ``) and leaves out those the store has answered in full
   (``ack_batches.settled``): a settled batch is never listed again;
2. for each other batch, lists its folder on the target (named by the
   recipient's ``batch_naming``), its ``acknowledgements/`` folder, and the
   release folders no final answer is known for yet — never ``resources/``,
   so the cost follows the number of releases, not of media files; with
   ``ack_folder`` set, the batch folder once and that folder instead of the
   release folders;
3. reads each acknowledgement file not read before (its size checked in the
   listing first), finds the release it names (by the folder the release was
   delivered under, recorded with its checksum in ``delivered``), and upserts
   a row per acknowledgement into ``store_acks``; a batch whose every release
   has a final answer becomes settled;
4. lets go of old local batches (``prune_local_batches``): beyond the newest
   ``keep_batches``, a batch whose run succeeded and that the store answered
   in full is removed with its upload journals.

``etl acks`` calls it for every recipient, and so does ``etl run`` before it
builds; ``etl errors`` lists the releases whose latest acknowledgement is a
rejection beside the run's own rejects. Store text reaches logs and terminals
only through ``errors.printable``.
"""
from __future__ import annotations

import logging
import re
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from .. import state
from ..config import Config, RecipientConfig
from ..db import database_url, make_engine, map_db_error
from ..errors import DeliveryError, printable
from ..retry import RetryPolicy, with_retries
from . import open_target
from .acks import ACK_FOLDER, PENDING, AckParseError, AckRecord, find_ack_files, is_ack_name, parse_acks, read_ack_file, read_acks
from .paths import KNOWN_BATCH_NAMINGS, batch_folder, join
from .targets import Target
from .upload import JOURNAL_DIR

log = logging.getLogger("ddex_etl.store_acks")

BATCHES_READ = 50  # the newest batches of a recipient whose acknowledgements are looked for
_BATCH_ID = re.compile(r"[0-9]{17}")
_TIMED_NAME = re.compile(r"ACK_([0-9]{17})_.+\.xml", re.IGNORECASE)


@dataclass
class AckSummary:
    """One recipient's acknowledgements as read now, and what it cost."""

    recipient: str
    target: str
    batches: int = 0
    read: int = 0
    new: int = 0
    accepted: int = 0
    # per batch id, its messages with an acknowledgement recorded (a scheduler's sensor waits for all of them)
    by_batch: dict[str, int] = field(default_factory=dict)
    rejected: list[state.StoreAck] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (ack file, why it could not be read)
    listings: int = 0  # listing requests made on the target
    settled: int = 0  # batches skipped: the store had answered for every release already
    pruned: list[str] = field(default_factory=list)  # local batches removed (keep_batches)
    kept_unacknowledged: list[str] = field(default_factory=list)  # old local batches kept: not answered in full

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (``etl acks --json``)."""
        return {
            "by_batch": dict(self.by_batch),
            "recipient": self.recipient, "target": self.target, "batches": self.batches, "read": self.read,
            "new": self.new, "accepted": self.accepted, "listings": self.listings, "settled_batches": self.settled,
            "rejected": [
                {"release": a.release, "release_id": a.release_id, "batch_id": a.batch_id, "status": a.status,
                 "error_text": a.error_text, "proposed_action": a.proposed_action, "message_file": a.message_file}
                for a in self.rejected
            ],
            "problems": [{"ack_file": f, "problem": p} for f, p in self.problems],
            "pruned_batches": self.pruned,
            "kept_unacknowledged_batches": self.kept_unacknowledged,
        }


@dataclass
class _Batch:
    run_id: int
    batch_id: str
    folder: str
    known: list[state.StoreAck]  # acknowledgements recorded earlier
    releases: tuple[str, ...] = ()
    found: bool = False
    records: list[AckRecord] = field(default_factory=list)

    def answered(self) -> set[str]:
        """Release folders with a final answer (recorded earlier or read now)."""
        out = {f for a in self.known if a.status not in PENDING and (f := _folder(a.message_file, self.folder))}
        out |= {f for r in self.records if r.final and (f := _folder(r.message_file, self.folder))}
        return out


def read_store_acks(cfg: Config) -> AckSummary:
    """Read and record the acknowledgements on ``cfg.recipient``'s target (``cfg`` from ``Config.for_recipient``).

    Raises ``DeliveryError`` when the target cannot be reached or listed.
    """
    recipient = cfg.recipient
    assert recipient is not None and recipient.target is not None
    schema = cfg.database.state_schema
    job = cfg.run.job
    engine = make_engine(database_url(cfg), pool_size=1)
    try:
        with_retries(lambda: state.ensure_current(engine, schema), what="connecting to PostgreSQL",
                     policy=RetryPolicy.of(cfg.run))
        with engine.connect() as conn:
            delivered = state.delivered_batches(conn, schema, job, BATCHES_READ)
            ids = [b for _, b in delivered]
            known = state.ack_batches(conn, schema, job, ids)
            open_ids = [b for b in ids if not (b in known and known[b].settled)]
            earlier = state.acks_of_batches(conn, schema, job, open_ids)
        summary = AckSummary(recipient.name, "", batches=len(delivered), settled=len(ids) - len(open_ids))
        batches = [
            _Batch(run_id, b, known[b].folder if b in known else batch_folder(recipient.batch_naming, b),
                   [a for a in earlier if a.batch_id == b])
            for run_id, b in delivered if b in open_ids
        ]
        target = open_target(recipient.target, **dict(recipient.target_options))
        summary.target = target.describe()
        try:
            for batch in batches:
                _look(target, batch, recipient, summary, retry_names=batch.batch_id not in known)
            if recipient.ack_folder:
                _look_in_ack_folder(target, recipient.ack_folder, batches, summary)
        finally:
            target.close()
        rows = [_row(job, b, rec) for b in batches for rec in b.records]
        with engine.begin() as conn:
            names = sorted({n for a in rows for n in (a.release, _folder(a.message_file, _batch_of(a, batches)))
                            if n})
            ids_by_name = state.releases_by_identifier(conn, schema, job, names)
            rows = [_with_id(a, ids_by_name, batches) for a in rows]
            summary.new = state.record_acks(conn, schema, rows)
            for b in batches:
                # A batch not on the target (the store moved it away) is remembered too, under the name
                # looked for: the other choreography versions' names are tried once, not on every read.
                answered = b.answered() & set(b.releases)
                settled = b.found and answered == set(b.releases)
                state.record_ack_batch(conn, schema, job, state.AckBatch(
                    b.batch_id, b.folder, len(b.releases), len(answered), settled))
            summary.rejected = state.store_rejections(conn, schema, job)
            summary.by_batch = state.acks_per_batch(
                conn, schema, job, [b for _, b in state.delivered_batches(conn, schema, job, BATCHES_READ)])
        summary.read = len(rows)
        summary.accepted = sum(a.accepted for a in rows)
        for f, why in summary.problems:
            log.warning("acknowledgement %s on %s could not be read: %s", printable(f), summary.target, printable(why))
        with engine.connect() as conn:
            prune_local_batches(cfg, conn, summary)
        return summary
    except sa.exc.DBAPIError as exc:
        raise map_db_error(exc, f"recording the acknowledgements of recipient {recipient.name!r}") from exc
    finally:
        engine.dispose()


def _look(target: Target, batch: _Batch, recipient: RecipientConfig, summary: AckSummary, *, retry_names: bool) -> None:
    """List one batch's folders and read its new acknowledgement files into ``batch.records``."""
    answered = batch.answered()
    skip = {a.ack_file.split("#", 1)[0] for a in batch.known if a.status not in PENDING}
    if recipient.ack_folder:
        # The store answers elsewhere: the batch folder is listed once, for the release folders it holds.
        found = find_ack_files(target, batch.folder, settled=answered, deep=False)
        report = None
    else:
        report = read_acks(target, batch.folder, settled=answered, skip=skip)
        found = report
    summary.listings += found.listings
    if not found.found and retry_names:
        # Never seen before: the batch may lie under another choreography version's name (batch_naming changed).
        for naming in KNOWN_BATCH_NAMINGS:
            other = batch_folder(naming, batch.batch_id)
            if other == batch.folder:
                continue
            probe = target.list_folder(other)
            summary.listings += 1
            if probe.exists:
                batch.folder = other
                _look(target, batch, recipient, summary, retry_names=False)
                return
    batch.found = found.found
    batch.releases = found.release_folders
    if report is not None:
        batch.records.extend(report.records)
        summary.problems.extend(report.problems)


def _look_in_ack_folder(target: Target, folder: str, batches: list[_Batch], summary: AckSummary) -> None:
    """Read the recipient's ``ack_folder``: its ACK files, and its sub-folders named after an open batch.

    Each acknowledgement is tied to a batch by the sub-folder it lies in, the
    batch id in its name (``ACK_<batch id>_<release>.xml``) or its ``BatchId``,
    else to the newest open batch holding a folder for the release it names.
    """
    by_id = {b.batch_id: b for b in batches}
    by_folder = {b.folder: b for b in batches}
    top = target.list_folder(folder)
    summary.listings += 1
    if not top.exists:
        why = (f"ack_folder {folder} is not on {target.describe()}; fix: correct the recipient's ack_folder, "
               "or ask the store where it puts them")
        summary.problems.append((folder, why))
        return
    files: list[tuple[str, int, _Batch | None]] = [(join(folder, n), o.size, None) for n, o in top.files.items()
                                                   if is_ack_name(n)]
    for sub in top.folders:
        owner = by_folder.get(sub) or by_id.get(sub)
        if owner is not None:
            listed = target.list_folder(join(folder, sub))
            summary.listings += 1
            files += [(join(folder, sub, n), o.size, owner) for n, o in listed.files.items() if is_ack_name(n)]
    known = {a.ack_file.split("#", 1)[0] for b in batches for a in b.known if a.status not in PENDING}
    for path, size, owner in sorted(files, key=lambda f: f[0]):
        if path in known:
            continue
        try:
            records = parse_acks(read_ack_file(target, path, size), ack_file=path)
        except AckParseError as exc:
            summary.problems.append((path, str(exc)))
            continue
        except DeliveryError as exc:
            if exc.retryable:
                raise
            summary.problems.append((path, str(exc)))
            continue
        named = _TIMED_NAME.fullmatch(path.rpartition("/")[2])
        for rec in records:
            batch = owner or by_id.get(rec.batch or "") or (by_id.get(named.group(1)) if named else None)
            release = rec.release
            if batch is None:
                batch = next((b for b in batches if release in b.releases), None)
            if batch is None or release is None:
                why = (f"names release {release} of no batch this recipient delivered recently "
                       f"(BatchId {rec.batch}); it was not recorded")
                summary.problems.append((path, why))
                continue
            folder_name = next((i for i in (release, *rec.release_ids) if i in batch.releases), release)
            batch.records.append(replace(rec, release=folder_name,
                                         message_file=join(batch.folder, folder_name, f"{folder_name}.xml")))


def _row(job: str, batch: _Batch, rec: AckRecord) -> state.StoreAck:
    folder = _folder(rec.message_file, batch.folder)
    return state.StoreAck(
        job=job, ack_file=rec.ack_file, batch_id=batch.batch_id, run_id=batch.run_id,
        message_file=rec.message_file, release=folder or rec.release, release_id=None,
        status=rec.status, accepted=rec.accepted, error_text=rec.error_text,
        proposed_action=rec.proposed_action, manual_check_required=rec.manual_check_required,
        acknowledged_at=rec.created,
    )


def _batch_of(ack: state.StoreAck, batches: list[_Batch]) -> str:
    return next((b.folder for b in batches if b.batch_id == ack.batch_id), ack.batch_id)


def _folder(message_file: str, batch_folder_name: str) -> str | None:
    """The release folder of ``<batch folder>/<release>/<release>.xml``."""
    parts = message_file.split("/")
    if len(parts) >= 2 and parts[-2] not in (batch_folder_name.rpartition("/")[2], ACK_FOLDER):
        return parts[-2]
    return None


def _with_id(ack: state.StoreAck, ids: dict[str, int], batches: list[_Batch]) -> state.StoreAck:
    for name in (_folder(ack.message_file, _batch_of(ack, batches)), ack.release):
        if name and name in ids:
            return replace(ack, release_id=ids[name])
    return ack


# --------------------------------------------------------------------------- keep_batches


def prune_local_batches(cfg: Config, conn: sa.Connection, summary: AckSummary | None = None) -> list[str]:
    """Remove the recipient's old local batches and their upload journals; returns the batch ids removed.

    Kept, always: the newest ``keep_batches`` batches, every batch of a run
    that has not succeeded (it may be resumed), and — unless
    ``keep_unacknowledged = false`` — every batch the store has not answered
    for in full (the local copy is what an operator compares a rejection
    with). ``keep_batches = 0`` keeps everything. Only folders named like a
    batch id, directly in the recipient's output folder and not a link, are
    ever removed.
    """
    recipient = cfg.recipient
    assert recipient is not None
    removed: list[str] = []
    if recipient.keep_batches <= 0:
        return removed
    schema, job = cfg.database.state_schema, cfg.run.job
    runs = state.batch_runs(conn, schema, job)
    newest: list[str] = []
    held: set[str] = set()
    for _run_id, batch_id, status in runs:
        if batch_id not in newest:
            newest.append(batch_id)
        if status != "succeeded":
            held.add(batch_id)
    keep = set(newest[: recipient.keep_batches]) | held
    old = [b for b in newest[recipient.keep_batches:] if b not in keep]
    settled = state.settled_batches(conn, schema, job) if old else set()
    directory = Path(cfg.load.directory)
    for batch_id in old:
        path = directory / batch_id
        journals = sorted((directory / JOURNAL_DIR).glob(f"{batch_id}.*.jsonl"))
        if not _BATCH_ID.fullmatch(batch_id) or path.is_symlink() or not (path.is_dir() or journals):
            continue
        if batch_id not in settled and recipient.keep_unacknowledged:
            if summary is not None:
                summary.kept_unacknowledged.append(batch_id)
            continue
        try:
            if path.is_dir():
                shutil.rmtree(path)
            for j in journals:
                j.unlink(missing_ok=True)
        except OSError as exc:  # a batch we could not remove stays; reading acknowledgements goes on
            log.warning("recipient %s: could not remove old local batch %s: %s; fix: check the permissions of %s",
                        recipient.name, path, exc, directory)
            continue
        removed.append(batch_id)
    if removed:
        log.info("recipient %s: removed %d old local batch(es) the store has answered for (keep_batches = %d): %s",
                 recipient.name, len(removed), recipient.keep_batches, ", ".join(removed))
    if summary is not None:
        summary.pruned.extend(removed)
    return removed
