"""Run the real `etl` command in its own process, as a scheduler would (shared by tests in several folders)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any


def etl(cwd: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """The real `etl` command, in its own process, with only the ETL_* variables given here."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("ETL_") or k.startswith("ETL_TEST_")}
    return subprocess.run(
        [sys.executable, "-m", "ddex_etl", *args], cwd=cwd, env={**base, **(env or {})},
        capture_output=True, text=True, timeout=timeout, check=False,
    )


def one_json(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """stdout must hold exactly one JSON object."""
    data = json.loads(proc.stdout)
    assert isinstance(data, dict), proc.stdout
    return data
