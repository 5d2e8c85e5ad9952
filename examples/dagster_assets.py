"""Dagster: the stores' deliveries as an asset materialized by `etl run --incremental`, and a sensor for the ACKs.

Load it with ``dagster dev -f dagster_assets.py`` (``etl_jobs.py`` beside
it; ``ETL_COMMAND`` in the environment as for Airflow). The logic is in
``etl_jobs``; this file maps its outcomes onto Dagster's:

    exit 0      the asset materializes, with the run's counts per recipient as metadata
    exit 4      RetryRequested: the previous run still holds the lock, try again later
    exit 1/130  RetryRequested: a retry continues the same run and window
    exit 2/3    Failure without retries; exit 3 means a person reads `etl errors`

The sensor reads the newest materialization's summary, calls ``etl acks
--json`` through ``etl_jobs.acks_settled`` and, once every store answered
every message, requests ``acknowledged_job`` (one run per set of batches).
"""
from __future__ import annotations

from typing import Any

import dagster as dg
import etl_jobs


@dg.asset(description="Every [[recipients]] store's batch of the night, delivered by `etl run --incremental`.")
def ddex_delivery(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    try:
        summary = etl_jobs.run_etl("--incremental")
    except (etl_jobs.JobLocked, etl_jobs.RunFailed) as exc:
        raise dg.RetryRequested(max_retries=3, seconds_to_wait=600) from exc
    except (etl_jobs.ConfigurationError, etl_jobs.RejectedReleases) as exc:
        raise dg.Failure(description=str(exc), metadata={"summary": dg.MetadataValue.json(exc.summary)},
                         allow_retries=False) from exc
    counts: dict[str, Any] = {}
    for r in summary.get("recipients", []):
        counts[f"{r['recipient']}_built"] = r.get("built", 0)
        counts[f"{r['recipient']}_rejected"] = r.get("rejected", 0)
        counts[f"{r['recipient']}_bytes"] = (r.get("delivery") or {}).get("bytes", 0)
    return dg.MaterializeResult(metadata={"summary": dg.MetadataValue.json(summary), **counts})


@dg.asset(deps=[ddex_delivery], description="The stores accepted every message of the newest batches.")
def ddex_acknowledged() -> None:
    return None


acknowledged_job = dg.define_asset_job("acknowledged_job", selection=[ddex_acknowledged])


@dg.sensor(job=acknowledged_job, minimum_interval_seconds=900)
def store_acknowledgements(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    event = context.instance.get_latest_materialization_event(ddex_delivery.key)
    if event is None or event.asset_materialization is None:
        return dg.SkipReason("no delivery yet")
    summary = event.asset_materialization.metadata["summary"].value
    awaited = etl_jobs.awaited_acknowledgements(summary)
    try:
        if not etl_jobs.acks_settled(summary):
            return dg.SkipReason(f"waiting for the stores' acknowledgements of {sorted(awaited.values())}")
    except etl_jobs.StoreRejected as exc:
        return dg.SkipReason(f"a store rejected releases (see `etl errors`): {exc}")
    run_key = ",".join(f"{name}:{batch}" for name, (batch, _) in sorted(awaited.items()))
    return dg.SensorResult(run_requests=[dg.RunRequest(run_key=run_key)])


defs = dg.Definitions(assets=[ddex_delivery, ddex_acknowledged], jobs=[acknowledged_job],
                      sensors=[store_acknowledgements])
