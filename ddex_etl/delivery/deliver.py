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
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..config import RecipientConfig
from ..errors import DeliveryTerminalError
from . import open_target, upload_batch
from .paths import batch_folder
from .upload import UploadProgress

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
    files: int = 0  # uploaded + already there
    mb_per_s: float = 0.0  # bytes uploaded / seconds (MB = 2^20 bytes)
    retries: int = 0  # operations retried after a transient fault
    transfers: int = 1  # files in flight at once

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (the run report's ``delivery``)."""
        return asdict(self)


def deliver_batch(recipient: RecipientConfig, batch_dir: Path, *, run_id: int, progress_interval: float = 10.0,
                  media_root: str | None = None, max_media_bytes: int | None = None,
                  check: Callable[[], None] | None = None) -> DeliveryReport:
    """Upload the local batch folder to ``recipient.target``; raises ``DeliveryError`` when it cannot finish.

    Every ``progress_interval`` seconds it logs where the upload stands (files,
    bytes, rate, ETA), tagged with the recipient. ``media_root``: where the
    media the batch lists are read from (the run's; default: as the batch says).
    ``check()`` runs before the connection opens and at every file boundary; what it raises stops the upload
    there (see ``BatchUpload``).
    """
    assert recipient.target is not None
    t0 = time.monotonic()
    if check is not None:
        check()
    target = open_target(recipient.target, **dict(recipient.target_options))
    fields = {"recipient": recipient.name}
    last = [t0]
    try:
        where = target.describe()
        log.info("uploading batch %s to %s (%d transfers in flight)", batch_dir.name, where, target.transfers,
                 extra={"fields": fields})

        def on_file(event: str, path: str) -> None:
            log.debug("upload %s: %s", event, path)

        def on_progress(p: UploadProgress) -> None:
            now = time.monotonic()
            if now - last[0] >= progress_interval:
                last[0] = now
                log.info("recipient %s: uploading batch %s: %s", recipient.name, batch_dir.name, p.line(),
                         extra={"fields": {**fields, "files_done": p.files_done, "files_total": p.files_total,
                                           "bytes_done": p.bytes_done, "bytes_total": p.bytes_total,
                                           "bytes_per_s": round(p.rate), "eta_s": p.eta}})

        options: dict[str, Any] = {"media_root": media_root}
        if max_media_bytes is not None:
            options["max_media_bytes"] = max_media_bytes
        # The choreography version the store follows names the folder (N_<batch id> from 1.6 on).
        remote_dir = batch_folder(recipient.batch_naming, batch_dir.name)
        report = upload_batch(batch_dir, target, remote_dir=remote_dir, on_file=on_file, on_progress=on_progress, check=check, **options)
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
    rate = report.bytes_uploaded / 2**20 / seconds if seconds > 0 else 0.0
    log.info("%s (%.1f s, %.2f MB/s, %d retries)", report.summary(), seconds, rate, target.retried,
             extra={"fields": fields})
    return DeliveryReport(
        recipient=recipient.name, target=where, batch_id=report.batch_id, uploaded=len(report.uploaded),
        skipped=len(report.skipped), removed=len(report.removed), bytes=report.bytes_uploaded,
        seconds=round(seconds, 3), complete=report.complete, files=len(report.uploaded) + len(report.skipped),
        mb_per_s=round(rate, 3), retries=target.retried, transfers=target.transfers,
    )
