"""What the stores answered: their acknowledgement files, read back and recorded per release.

A store answers each message of a batch with ``ACK_<message file>.xml``
beside it (``delivery.acks`` parses them). For one recipient,
``read_store_acks`` lists the acknowledgements under the batches of the
recipient's newest runs on its target, finds the release each one names
(by the folder the release was delivered under, recorded with its checksum
in ``delivered``), and upserts a row per acknowledgement file into
``store_acks``. ``etl acks`` calls it for every recipient, and so does
``etl run`` before it builds; ``etl errors`` lists the releases whose
latest acknowledgement is a rejection beside the run's own rejects.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from .. import state
from ..config import Config
from ..db import database_url, make_engine, map_db_error
from ..retry import RetryPolicy, with_retries
from . import open_target, read_acks

log = logging.getLogger("ddex_etl.store_acks")

BATCHES_READ = 50  # the newest batches of a recipient whose acknowledgements are (re)read


@dataclass
class AckSummary:
    """One recipient's acknowledgements as read now."""

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

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (``etl acks --json``)."""
        return {
            "by_batch": dict(self.by_batch),
            "recipient": self.recipient, "target": self.target, "batches": self.batches, "read": self.read,
            "new": self.new, "accepted": self.accepted,
            "rejected": [
                {"release": a.release, "release_id": a.release_id, "batch_id": a.batch_id, "status": a.status,
                 "error_text": a.error_text, "proposed_action": a.proposed_action, "message_file": a.message_file}
                for a in self.rejected
            ],
            "problems": [{"ack_file": f, "problem": p} for f, p in self.problems],
        }


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
            batches = state.delivered_batches(conn, schema, job, BATCHES_READ)
        target = open_target(recipient.target, **dict(recipient.target_options))
        summary = AckSummary(recipient.name, target.describe(), batches=len(batches))
        rows: list[state.StoreAck] = []
        try:
            for run_id, batch_id in batches:
                report = read_acks(target, batch_id)
                summary.problems.extend(report.problems)
                for rec in report.records:
                    folder = _folder(rec.message_file, batch_id)
                    rows.append(state.StoreAck(
                        job=job, ack_file=rec.ack_file, batch_id=batch_id, run_id=run_id,
                        message_file=rec.message_file, release=rec.release or folder, release_id=None,
                        status=rec.status, accepted=rec.accepted, error_text=rec.error_text,
                        proposed_action=rec.proposed_action, manual_check_required=rec.manual_check_required,
                        acknowledged_at=rec.created,
                    ))
        finally:
            target.close()
        with engine.begin() as conn:
            names = sorted({n for a in rows for n in (a.release, _folder(a.message_file, a.batch_id)) if n})
            ids = state.releases_by_identifier(conn, schema, job, names)
            rows = [_with_id(a, ids) for a in rows]
            summary.new = state.record_acks(conn, schema, rows)
            summary.rejected = state.store_rejections(conn, schema, job)
            summary.by_batch = state.acks_per_batch(
                conn, schema, job, [b for _, b in state.delivered_batches(conn, schema, job, BATCHES_READ)])
        summary.read = len(rows)
        summary.accepted = sum(a.accepted for a in rows)
        for f, why in summary.problems:
            log.warning("acknowledgement %s on %s could not be read: %s", f, summary.target, why)
        return summary
    except sa.exc.DBAPIError as exc:
        raise map_db_error(exc, f"recording the acknowledgements of recipient {recipient.name!r}") from exc
    finally:
        engine.dispose()


def _folder(message_file: str, batch_id: str) -> str | None:
    """The release folder of ``<batch>/<folder>/<folder>.xml``."""
    parts = message_file.split("/")
    return parts[-2] if len(parts) >= 2 and parts[-2] != batch_id else None


def _with_id(ack: state.StoreAck, ids: dict[str, int]) -> state.StoreAck:
    from dataclasses import replace

    for name in (_folder(ack.message_file, ack.batch_id), ack.release):
        if name and name in ids:
            return replace(ack, release_id=ids[name])
    return ack
