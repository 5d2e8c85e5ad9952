"""Imports point one way: a module never loads the modules that build on it."""
from __future__ import annotations

import subprocess
import sys

import pytest

# (module imported alone, modules it must not load)
CASES = [
    ("ddex_etl.api.batch", ["ddex_etl.api.batch_stream"]),
    ("ddex_etl.run.chunks", ["ddex_etl.run.worker", "ddex_etl.run.loop", "ddex_etl.run.job"]),
    ("ddex_etl.run.worker", ["ddex_etl.run.loop", "ddex_etl.run.job", "ddex_etl.run.executors"]),
    ("ddex_etl.run.executors.local", ["ddex_etl.run.loop", "ddex_etl.run.job"]),
    ("ddex_etl.run.loop", ["ddex_etl.run.job", "ddex_etl.run.executors.local"]),
    ("ddex_etl.run.reporting", ["ddex_etl.run.loop", "ddex_etl.run.worker", "ddex_etl.run.executors"]),
    ("ddex_etl.run.tally", ["ddex_etl.run.loop", "ddex_etl.run.job", "ddex_etl.run.executors"]),
]


@pytest.mark.parametrize(("module", "not_loaded"), CASES, ids=[c[0] for c in CASES])
def test_a_module_does_not_load_what_builds_on_it(module: str, not_loaded: list[str]) -> None:
    probe = f"import sys, {module}; print(' '.join(m for m in {not_loaded!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
