"""Plain-Python callables around the `etl` command, for the scheduler that runs a label's jobs.

The Airflow DAG (``airflow_dag.py``) and the Dagster assets
(``dagster_assets.py``) beside this file wrap these functions; they hold
all the logic, so they are tested without either scheduler installed
(``tests/test_examples.py`` runs them against a real ``etl`` process and a
real PostgreSQL).

``etl`` is called as a subprocess with ``--json``: stdout holds exactly one
JSON object on every exit path, stderr the log (one line per recipient that
did not succeed). What each exit code asks of a scheduler (README, "Exit
codes"):

    0    done                                         -> return the summary
    3    finished, some releases rejected             -> RejectedReleases: fail, a person reads `etl errors`
    4    the previous run still holds the job's lock  -> JobLocked: skip this slot, no alert
    1    failed (resumable)                           -> RunFailed (retryable): a retry continues the same run
    130  interrupted (resumable)                      -> RunFailed (retryable)
    2    configuration error                          -> ConfigurationError: fail, no retry
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

# The command that runs `etl`: override with ETL_COMMAND, e.g. "/srv/ddex-etl/.venv/bin/etl".
DEFAULT_COMMAND = ("etl",)


class EtlFailed(Exception):
    """`etl` ended with a non-zero exit code; ``summary`` is its JSON object, ``stderr`` its log."""

    retryable = False

    def __init__(self, message: str, exit_code: int, summary: Mapping[str, Any], stderr: str = "") -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.summary = dict(summary)
        self.stderr = stderr


class RejectedReleases(EtlFailed):
    """Exit 3: the run finished but some releases were rejected (by the builder or a store)."""


class JobLocked(EtlFailed):
    """Exit 4: another run of the job holds its lock (the previous night's is still going)."""


class ConfigurationError(EtlFailed):
    """Exit 2: etl.toml or the command line is wrong; retrying cannot help."""


class RunFailed(EtlFailed):
    """Exit 1 or 130: the run failed or was interrupted; the next `etl run` (a retry) continues it."""

    retryable = True


class StoreRejected(EtlFailed):
    """`etl acks` exit 3: a store rejected a delivered release in its acknowledgement."""


_BY_CODE: dict[int, type[EtlFailed]] = {2: ConfigurationError, 3: RejectedReleases, 4: JobLocked, 1: RunFailed, 130: RunFailed}


def etl_command() -> list[str]:
    """The `etl` command line prefix (ETL_COMMAND, split like a shell would, else ``etl``)."""
    configured = os.environ.get("ETL_COMMAND")
    return shlex.split(configured) if configured else list(DEFAULT_COMMAND)


def call_etl(args: Sequence[str], *, command: Sequence[str] | None = None, cwd: str | os.PathLike[str] | None = None,
             env: Mapping[str, str] | None = None, timeout: float | None = None) -> tuple[int, dict[str, Any], str]:
    """Run ``etl ARGS`` (ARGS must hold --json); return (exit code, its JSON object, stderr)."""
    proc = subprocess.run(
        [*(command or etl_command()), *args], cwd=cwd, env={**os.environ, **(env or {})},
        capture_output=True, text=True, timeout=timeout, check=False,
    )
    try:
        data = json.loads(proc.stdout)
    except json.JSONDecodeError:
        data = {"exit_code": proc.returncode, "error": proc.stdout.strip() or proc.stderr.strip()[-2000:]}
    return proc.returncode, data if isinstance(data, dict) else {"result": data}, proc.stderr


def _raise_for(code: int, data: Mapping[str, Any], stderr: str, what: str) -> None:
    if code == 0:
        return
    cls = _BY_CODE.get(code, RunFailed if code < 0 else EtlFailed)  # < 0: killed by a signal
    # one line per recipient that did not succeed (stderr), else the command's own error (its JSON)
    problems = [line for line in stderr.splitlines() if line.startswith("etl: recipient ")]
    detail = "; ".join(problems) or " ".join(str(data.get("error") or "").split())
    raise cls(f"{what} exited {code}: {detail}" if detail else f"{what} exited {code}", code, data, stderr)


def run_etl(*options: str, command: Sequence[str] | None = None, cwd: str | os.PathLike[str] | None = None,
            env: Mapping[str, str] | None = None, timeout: float | None = None) -> dict[str, Any]:
    """``etl -q run OPTIONS --no-progress --json``: the run's summary on exit 0, else the exception for its code.

    ``options`` as on the command line, e.g. ``run_etl("--incremental")`` or
    ``run_etl("--recipient", "store-a")``. With [[recipients]] the summary
    holds ``recipients``, one entry per store (``run_id``, ``batch_id``,
    ``built``, ``rejected``, ``delivery`` …).
    """
    code, data, stderr = call_etl(["-q", "run", *options, "--no-progress", "--json"], command=command, cwd=cwd,
                                  env=env, timeout=timeout)
    _raise_for(code, data, stderr, "etl run")
    return data


def awaited_acknowledgements(run_summary: Mapping[str, Any]) -> dict[str, tuple[str, int]]:
    """Per recipient the run delivered to: (its batch id, how many messages the store should answer)."""
    out: dict[str, tuple[str, int]] = {}
    for r in run_summary.get("recipients", []):
        delivered = r.get("delivery") or {}
        messages = int(r.get("built") or 0) + int(r.get("takedowns") or 0)
        if r.get("batch_id") and delivered.get("complete") and messages:
            out[r["recipient"]] = (r["batch_id"], messages)
    return out


def acks_settled(run_summary: Mapping[str, Any], *, command: Sequence[str] | None = None,
                 cwd: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None,
                 timeout: float | None = None) -> bool:
    """An acknowledgement sensor's poke: has every store answered every message of the run's batches?

    Calls ``etl acks --json`` (which also records what the stores answered).
    True: every message acknowledged and accepted; False: some answers are
    still missing, or a store could not be reached (exit 1: poke again
    later); raises StoreRejected when a store rejected a release (exit 3:
    a person reads `etl errors`) and ConfigurationError on exit 2.
    """
    awaited = awaited_acknowledgements(run_summary)
    if not awaited:
        return True
    names = [arg for name in awaited for arg in ("--recipient", name)]
    code, data, stderr = call_etl(["acks", *names, "--json"], command=command, cwd=cwd, env=env, timeout=timeout)
    if code == 3:
        raise StoreRejected("a store rejected delivered releases: see `etl errors`", code, data, stderr)
    if code == 1:
        return False
    _raise_for(code, data, stderr, "etl acks")
    answered = {r["recipient"]: r.get("by_batch", {}) for r in data.get("recipients", []) if "error" not in r}
    return all(answered.get(name, {}).get(batch, 0) >= messages for name, (batch, messages) in awaited.items())
