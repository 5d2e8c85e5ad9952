"""Log output of the `etl` command: readable lines or one JSON object per line, secrets masked.

A run writes its log to stderr, where a terminal user reads it now and a
scheduler stores it for whoever reads it at 3 a.m. So the format follows
where it goes: on a terminal, short ``LEVEL logger: message`` lines; anywhere
else, each line starts with a UTC timestamp. ``json`` (``--log-format json``)
writes one object per line for log shippers: ``time``, ``level``,
``logger``, ``job``, ``run``, ``recipient`` (always the recipient's name:
its ``[[recipients]]`` entry, else ``transform.recipient_name``),
``recipient_dpid``, ``message`` and ``fields`` (the structured values a
line carries, e.g. a chunk's counts).

The pipeline names what it is working on with ``bind(job=..., run=...,
recipient=...)``; every line after that carries it.
"""
from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import sys
from typing import Any

from .config import mask_secrets

FORMATS = ("auto", "text", "json")

# What the process (or, with recipients side by side, the thread) is working on; on every line it logs.
# A context variable: each recipient's thread binds its own, starting from a copy of the caller's.
_CONTEXT: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("ddex_etl_log_context")

# LogRecord attributes that are not a caller's ``extra=`` values.
_STANDARD = set(vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None))) | {"message", "asctime", "fields"}


def bind(**values: Any) -> None:
    """Attach ``values`` (job, run, recipient, ...) to every line logged from now on; None removes one."""
    bound = dict(_CONTEXT.get({}))
    for key, value in values.items():
        if value is None:
            bound.pop(key, None)
        else:
            bound[key] = value
    _CONTEXT.set(bound)


def context() -> dict[str, Any]:
    """A copy of what ``bind`` attached."""
    return dict(_CONTEXT.get({}))


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """A record's structured values: ``extra={"fields": {...}}`` plus any other ``extra`` keys."""
    fields = dict(getattr(record, "fields", None) or {})
    for key, value in vars(record).items():
        if key not in _STANDARD and not key.startswith("_"):
            fields[key] = value
    return fields


def _utc(created: float) -> str:
    return dt.datetime.fromtimestamp(created, dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _short(name: str) -> str:
    return name.removeprefix("ddex_etl.")


class TextFormatter(logging.Formatter):
    """``2026-12-02T02:30:01.123Z WARNING pipeline [job nightly, run 12]: message`` (time only off a terminal)."""

    def __init__(self, timestamps: bool) -> None:
        super().__init__()
        self.timestamps = timestamps

    def format(self, record: logging.LogRecord) -> str:
        bound = _CONTEXT.get({})
        where = ", ".join(f"{k} {bound[k]}" for k in ("job", "run") if k in bound)
        head = f"{record.levelname} {_short(record.name)}" + (f" [{where}]" if where else "")
        if self.timestamps:
            head = f"{_utc(record.created)} {head}"
        text = f"{head}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return mask_secrets(text)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        bound = _CONTEXT.get({})
        data: dict[str, Any] = {
            "time": _utc(record.created),
            "level": record.levelname.lower(),
            "logger": _short(record.name),
            "job": bound.get("job"),
            "run": bound.get("run"),
            "recipient": bound.get("recipient"),
            "message": mask_secrets(record.getMessage()),
            "fields": record_fields(record),
            "recipient_dpid": context().get("recipient_dpid"),
        }
        if record.exc_info:
            data["exception"] = mask_secrets(self.formatException(record.exc_info))
        return json.dumps(data, ensure_ascii=False, default=lambda v: mask_secrets(str(v)))


class StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at emit time (click's test runner swaps it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:  # pragma: no cover - logging must never crash the run
            self.handleError(record)


def setup(verbosity: int, fmt: str = "auto") -> None:
    """Send ddex_etl's log to stderr: -1 errors only, 0 warnings (and progress lines), 1 info, 2 debug.

    ``fmt``: ``auto`` (text; timestamps when stderr is not a terminal),
    ``text`` (always timestamps) or ``json``. Calling it again replaces the
    earlier setup.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r}; use one of {', '.join(FORMATS)}")
    level = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    root = logging.getLogger("ddex_etl")
    root.setLevel(level)
    for old in [h for h in root.handlers if isinstance(h, StderrHandler)]:
        root.removeHandler(old)
    handler = StderrHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        tty = fmt == "auto" and _is_tty()
        handler.setFormatter(TextFormatter(timestamps=not tty))
    root.addHandler(handler)
    # Progress lines (when stderr is no terminal) are the run's heartbeat in a
    # scheduler's log: shown at the default verbosity, hidden by -q.
    logging.getLogger("ddex_etl.progress").setLevel(logging.INFO if verbosity >= 0 else logging.ERROR)


def installed() -> bool:
    """Whether ``setup`` sent the log somewhere (else library use: progress prints plain lines)."""
    return any(isinstance(h, StderrHandler) for h in logging.getLogger("ddex_etl").handlers)


def _is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False
