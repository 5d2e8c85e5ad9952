"""Metrics an operator can scrape: what the last run of each recipient did, as a Prometheus textfile.

``etl run`` (and ``etl resume``, ``etl retry-failed``) writes ``run.metrics_file``
when it is set, in the Prometheus text format that node_exporter's textfile
collector reads (``--collector.textfile.directory``): written to a temp file
in the same folder and renamed over the old one (``prometheus_client``'s
``write_to_textfile``), so the collector never reads half a file.

Every series carries ``job`` (``run.job``) and ``recipient`` (the
``[[recipients]]`` entry's name, else ``transform.recipient_name``) and
describes that recipient's newest run. A run of some recipients only
(``--recipient NAME``) keeps the other recipients' series from the file as
they were, so one file always shows every recipient. The names:

    ddex_etl_last_run_info{job,recipient,run_id,mode,status}       1
    ddex_etl_last_run_exit_code{job,recipient}                      the recipient's exit code (see the README)
    ddex_etl_last_run_success{job,recipient}                        1 when the run succeeded (exit 0, or 3 with rejects)
    ddex_etl_last_run_timestamp_seconds{job,recipient}              when the file was written (Unix time)
    ddex_etl_last_run_duration_seconds{job,recipient}               the run's time, all attempts
    ddex_etl_last_run_releases{job,recipient,outcome}               built, rejected, skipped, takedowns, unchanged
    ddex_etl_last_run_delivered_files{job,recipient}                files uploaded to the store by the run
    ddex_etl_last_run_delivered_skipped_files{job,recipient}        files already on the store (a resume)
    ddex_etl_last_run_delivered_bytes{job,recipient}                bytes uploaded
    ddex_etl_store_acknowledgements{job,recipient,status}           releases by the status of their newest
                                                                    acknowledgement from the store

A recipient that did not start (a configuration error, the lock held) has
``info``, ``exit_code``, ``success`` and ``timestamp`` only; one with nothing
to do (``etl resume`` with no unfinished run) keeps its series as they were.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..config import Config

log = logging.getLogger("ddex_etl.metrics")

PREFIX = "ddex_etl_"
OUTCOMES = ("built", "rejected", "skipped", "takedowns", "unchanged")


def write_metrics_file(cfg: Config, report: Any, path: Path | None = None) -> Path | None:
    """Write ``report``'s metrics (a ``RunReport`` or a ``RecipientsReport``) to ``run.metrics_file``.

    Returns the path written, or None when no file is configured. A file
    that cannot be written is logged as a warning: metrics never fail a run.
    """
    path = path or cfg.run.metrics_file
    if path is None:
        return None
    try:
        rows = list(_rows(cfg, report))
        _write(path, cfg.run.job, rows, _ack_counts(cfg, [name for name, *_ in rows]))
    except Exception as exc:  # noqa: BLE001 - the run's outcome stands whatever happens here
        log.warning("could not write the metrics file %s: %s: %s; fix: check run.metrics_file's folder "
                    "(it must exist and be writable)", path, type(exc).__name__, exc)
        return None
    return path


def _rows(cfg: Config, report: Any) -> Iterable[tuple[str, str, int, Any]]:
    """(recipient name, status, exit code, RunReport or None) per recipient in ``report``."""
    outcomes = getattr(report, "outcomes", None)
    if outcomes is None:  # one job without [[recipients]]
        yield cfg.transform.recipient_name, report.status, report.exit_code, report
        return
    for o in outcomes:
        if o.report is None and o.exit_code == 0:
            continue  # nothing to resume or retry: its newest run is still the one the file shows
        yield o.recipient, o.status, o.exit_code, o.report


def _ack_counts(cfg: Config, names: list[str]) -> dict[str, dict[str, int]]:
    """Per recipient: releases by the status of their newest store acknowledgement."""
    if not cfg.recipients:
        return {}
    import sqlalchemy as sa

    from .. import state
    from ..db import database_url, make_engine

    engine = make_engine(database_url(cfg), pool_size=1)
    out: dict[str, dict[str, int]] = {}
    try:
        if state.current(engine, cfg.database.state_schema) != state.HEAD:
            return {}
        with engine.connect() as conn:
            for name in names:
                out[name] = state.ack_status_counts(conn, cfg.database.state_schema, f"{cfg.run.job}/{name}")
    except sa.exc.DBAPIError as exc:
        log.warning("metrics: could not count the stores' acknowledgements: %s", exc)
    finally:
        engine.dispose()
    return out


def _write(path: Path, job: str, rows: list[tuple[str, str, int, Any]], acks: dict[str, dict[str, int]]) -> None:
    from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

    registry = CollectorRegistry()
    made: dict[str, tuple[Gauge, set[str]]] = {}

    def gauge(name: str, doc: str, extra: tuple[str, ...] = ()) -> Gauge:
        labels = ("job", "recipient", *extra)
        made[PREFIX + name] = g = Gauge(PREFIX + name, doc, labels, registry=registry), set(labels)
        return g[0]

    info = gauge("last_run_info", "The recipient's newest run: its id, mode and status (value 1).",
                 ("run_id", "mode", "status"))
    exit_code = gauge("last_run_exit_code", "The exit code of the recipient's newest run (0 ok, 1 failed, "
                      "2 configuration, 3 rejected releases, 4 locked, 130 interrupted).")
    success = gauge("last_run_success", "1 when the recipient's newest run succeeded, else 0.")
    stamp = gauge("last_run_timestamp_seconds", "When the recipient's newest run ended (Unix time).")
    seconds = gauge("last_run_duration_seconds", "Wall time of the recipient's newest run, all its attempts.")
    releases = gauge("last_run_releases", "Releases of the recipient's newest run by outcome.", ("outcome",))
    files = gauge("last_run_delivered_files", "Files the recipient's newest run uploaded to the store.")
    skipped = gauge("last_run_delivered_skipped_files", "Files already on the store (not uploaded again).")
    sent = gauge("last_run_delivered_bytes", "Bytes the recipient's newest run uploaded to the store.")
    acked = gauge("store_acknowledgements", "Releases by the status of their newest acknowledgement from the store.",
                  ("status",))
    now = time.time()
    for name, status, code, report in rows:
        run_id = str(report.run_id) if report is not None else ""
        mode = report.mode if report is not None else ""
        info.labels(job, name, run_id, mode, status).set(1)
        exit_code.labels(job, name).set(code)
        success.labels(job, name).set(1 if report is not None and report.status == "succeeded" else 0)
        stamp.labels(job, name).set(now)
        if report is not None:
            seconds.labels(job, name).set(report.seconds)
            for outcome in OUTCOMES:
                releases.labels(job, name, outcome).set(getattr(report, outcome))
            delivery = report.delivery or {}
            if delivery:
                files.labels(job, name).set(delivery.get("uploaded", 0))
                skipped.labels(job, name).set(delivery.get("skipped", 0))
                sent.labels(job, name).set(delivery.get("bytes", 0))
        for ack_status, count in acks.get(name, {}).items():
            acked.labels(job, name, ack_status).set(count)
    # Recipients this run did not touch keep their series as the file had them.
    for sample in _other_recipients(path, job, {name for name, *_ in rows}):
        known = made.get(sample.name)
        if known is not None and set(sample.labels) == known[1]:
            known[0].labels(**sample.labels).set(sample.value)
    write_to_textfile(str(path), registry)


def _other_recipients(path: Path, job: str, names: set[str]) -> list[Any]:
    """The samples of ``path`` that belong to another recipient of ``job`` (kept on rewrite)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    from prometheus_client.parser import text_string_to_metric_families

    try:
        return [s for family in text_string_to_metric_families(text) for s in family.samples
                if s.labels.get("job") == job and s.labels.get("recipient") not in names]
    except ValueError as exc:  # not ours, or torn by hand: start afresh
        log.warning("metrics file %s could not be read (%s): rewritten with this run's recipients only", path, exc)
        return []
