"""A run's running totals: counts, this attempt's worker time, data warnings, and the error thresholds.

The Runner adds each committed chunk here; the totals start from the run
row, so a resumed run counts on from its earlier attempts. Nothing here
touches the database: the same numbers go into the state tables (with the
chunk's commit) and into the RunReport.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from .. import state
from ..config import RunConfig
from ..errors import EtlError
from ..masking import mask_text
from ..progress import children_peak_rss_mb, own_peak_rss_mb
from .chunks import ChunkResult

# The run's modules log under the name they always had ("pipeline" in log lines).
log = logging.getLogger("ddex_etl.pipeline")

# Data warnings logged at WARNING per run before the rest go to INFO; shared ISRCs listed.
NOTES_LOGGED = 50

STAGES = ("fetch", "build", "write", "worker", "fetch_cpu", "build_cpu", "write_cpu")


class RunFailed(EtlError):
    """The run stopped: too many rejected releases, or fail_fast met a rejected release."""


@dataclass
class RunTally:
    """The run's totals (earlier attempts included) and what this attempt's workers spent."""

    built: int = 0
    rejected: int = 0
    skipped: int = 0
    takedowns: int = 0
    unchanged: int = 0
    attempt_releases: int = 0  # this attempt only
    data_warnings: int = 0  # this attempt only
    worker_rss: dict[int, float] = field(default_factory=dict)  # peak RSS by worker pid
    # this attempt's worker time by stage (summed over workers), for tuning
    stage_seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))

    @classmethod
    def of(cls, run: state.RunRow) -> RunTally:
        """Totals carried on from what the run row recorded."""
        return cls(
            built=run.built, rejected=run.rejected, skipped=run.skipped, takedowns=run.takedowns,
            unchanged=run.unchanged,
        )

    def seen(self) -> int:
        """Releases done one way or another (for the progress bar)."""
        return self.built + self.rejected + self.skipped + self.takedowns + self.unchanged

    def worker_peak(self, result: ChunkResult) -> None:
        """Remember the peak RSS the chunk's worker reported."""
        self.worker_rss[result.pid] = max(self.worker_rss.get(result.pid, 0.0), result.peak_rss_mb)

    def add(self, result: ChunkResult) -> None:
        """Count a committed chunk and log its rejects and data warnings."""
        stages = self.stage_seconds
        stages["fetch"] += result.fetch_seconds
        stages["build"] += result.build_seconds
        stages["write"] += result.write_seconds
        stages["worker"] += result.seconds
        stages["fetch_cpu"] += result.fetch_cpu
        stages["build_cpu"] += result.build_cpu
        stages["write_cpu"] += result.write_cpu
        self.built += result.built
        self.rejected += len(result.rejects)
        self.skipped += result.skipped
        self.takedowns += result.takedowns
        self.unchanged += result.unchanged
        self.attempt_releases += (
            result.built + len(result.rejects) + result.skipped + result.takedowns + result.unchanged
        )
        for r in result.rejects:
            log.warning("rejected (%s): %s", r.stage, mask_text(r.message))
        for w in result.warnings:
            self.data_warnings += 1
            # Each once at WARNING while they are few; a catalog full of stray
            # spaces would otherwise bury everything else in the log.
            if self.data_warnings <= NOTES_LOGGED:
                log.warning("data warning: %s", mask_text(w))
                continue
            if self.data_warnings == NOTES_LOGGED + 1:
                log.warning("more data warnings follow at INFO level (etl -v run shows them)")
            log.info("data warning: %s", mask_text(w))

    def check_thresholds(self, rc: RunConfig, run_id: int, result: ChunkResult) -> None:
        """Raise RunFailed when the chunk just added crosses fail_fast / continue_on_error / max_errors / max_error_rate."""
        if result.rejects and (rc.fail_fast or not rc.continue_on_error):
            first = result.rejects[0]
            why = "fail_fast" if rc.fail_fast else "continue_on_error = false"
            raise RunFailed(
                f"run {run_id} stopped at the first rejected release ({why}): {mask_text(first.message)}; "
                f"fix the data, then `etl resume {run_id}` (or `etl retry-failed {run_id}`)"
            )
        if rc.max_errors is not None and self.rejected > rc.max_errors:
            raise RunFailed(
                f"run {run_id} stopped: {self.rejected} releases rejected, more than run.max_errors = "
                f"{rc.max_errors}; see `etl errors {run_id}`, fix the data or raise max_errors, "
                f"then `etl resume {run_id}`"
            )
        seen = self.built + self.rejected
        if rc.max_error_rate is not None and seen and self.rejected / seen > rc.max_error_rate:
            raise RunFailed(
                f"run {run_id} stopped: {self.rejected} of {seen} releases rejected "
                f"({100.0 * self.rejected / seen:.1f}%), more than run.max_error_rate = {rc.max_error_rate}; "
                f"see `etl errors {run_id}`, then `etl resume {run_id}`"
            )

    def peak_memory_mb(self, workers: int) -> float:
        """Main process peak plus each worker's peak: an upper bound on the run's total RSS.

        ``workers``: how many worker processes, for the estimate when none reported yet.
        """
        total = sum(self.worker_rss.values()) if self.worker_rss else children_peak_rss_mb() * workers
        return own_peak_rss_mb() + total
