"""The ``etl`` command (``etl = "ddex_etl.cli:main"``, ``python -m ddex_etl``)."""
from __future__ import annotations

from .app import _with_run_overrides, cli, exit_process, main

__all__ = ["_with_run_overrides", "cli", "exit_process", "main"]
