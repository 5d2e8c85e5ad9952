"""A recipient's finished batch, uploaded to its target: the last step of that recipient's run.

``pipeline`` calls ``deliver_batch`` once the local batch is whole (every
chunk loaded, ``BatchComplete`` written locally). The upload is
``delivery.upload_batch``: resources, then messages, then ``BatchComplete``
last, resumable through its journal beside the batch folder. A run is
``succeeded`` only once its batch is complete on the target; an upload
that fails leaves the run failed (exit 1), and ``etl resume`` (or the next
``etl run``, which continues the unfinished run) finds the checkpoint at
the end and uploads only what is missing.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..config import RecipientConfig
from ..errors import DeliveryTerminalError
from . import open_target, upload_batch
from .paths import batch_folder

log = logging.getLogger("ddex_etl.deliver")


@dataclass(frozen=True)
class DeliveryReport:
    """What the upload of one batch did."""

    recipient: str
    target: str
    batch_id: str
    uploaded: int
    skipped: int
    removed: int
    bytes: int
    seconds: float
    complete: bool

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (the run report's ``delivery``)."""
        return asdict(self)


def deliver_batch(recipient: RecipientConfig, batch_dir: Path, *, run_id: int) -> DeliveryReport:
    """Upload the local batch folder to ``recipient.target``; raises ``DeliveryError`` when it cannot finish."""
    assert recipient.target is not None
    t0 = time.monotonic()
    target = open_target(recipient.target, **dict(recipient.target_options))
    try:
        where = target.describe()
        log.info("uploading batch %s to %s", batch_dir.name, where, extra={"fields": {"recipient": recipient.name}})

        def on_file(event: str, path: str) -> None:
            log.debug("upload %s: %s", event, path)

        # The choreography version the store follows names the folder (N_<batch id> from 1.6 on).
        remote_dir = batch_folder(recipient.batch_naming, batch_dir.name)
        report = upload_batch(batch_dir, target, remote_dir=remote_dir, on_file=on_file)
    finally:
        target.close()
    if report.failed:
        path, why = report.failed[0]
        raise DeliveryTerminalError(
            f"run {run_id}: {len(report.failed)} file(s) of batch {report.batch_id} could not be uploaded to {where} "
            f"(first: {path}: {why}); BatchComplete was not sent; fix the cause, then `etl resume {run_id}` "
            "uploads only what is missing"
        )
    seconds = time.monotonic() - t0
    log.info("%s (%.1f s)", report.summary(), seconds, extra={"fields": {"recipient": recipient.name}})
    return DeliveryReport(
        recipient=recipient.name, target=where, batch_id=report.batch_id, uploaded=len(report.uploaded),
        skipped=len(report.skipped), removed=len(report.removed), bytes=report.bytes_uploaded,
        seconds=round(seconds, 3), complete=report.complete,
    )
