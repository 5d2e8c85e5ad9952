"""Airflow: the nightly `etl run --incremental` as a task, and a sensor that waits for the stores' acknowledgements.

Copy this file and ``etl_jobs.py`` into the DAGs folder (Airflow 2.5+; on
Airflow 3 import ``dag``, ``task`` and ``PokeReturnValue`` from
``airflow.sdk``). Set ``ETL_COMMAND`` (e.g. ``/srv/ddex-etl/.venv/bin/etl
--config /srv/ddex-etl/etl.toml``) in the workers' environment. The logic
is in ``etl_jobs``; this file only maps its outcomes onto Airflow's:

    exit 0    the task succeeds and returns the run's JSON summary (XCom)
    exit 4    AirflowSkipException: the previous run still holds the lock, no alert
    exit 1/130  a normal failure: Airflow's retries continue the same run and window
    exit 2/3  AirflowFailException: no retry; exit 3 means a person reads `etl errors`
"""
from __future__ import annotations

import datetime as dt
from typing import Any

import etl_jobs
import pendulum
from airflow.decorators import dag, task
from airflow.exceptions import AirflowFailException, AirflowSkipException
from airflow.sensors.base import PokeReturnValue


@dag(schedule="30 2 * * *", start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, max_active_runs=1,
     tags=["ddex"])
def ddex_etl_nightly() -> None:
    @task(retries=2, retry_delay=dt.timedelta(minutes=10))
    def incremental_sync() -> dict[str, Any]:
        try:
            return etl_jobs.run_etl("--incremental")
        except etl_jobs.JobLocked as exc:
            raise AirflowSkipException(str(exc)) from exc
        except (etl_jobs.ConfigurationError, etl_jobs.RejectedReleases) as exc:
            raise AirflowFailException(str(exc)) from exc
        # RunFailed (exit 1, 130) propagates: a retry continues the run

    @task.sensor(poke_interval=900, timeout=12 * 3600, mode="reschedule")
    def store_acknowledgements(summary: dict[str, Any]) -> PokeReturnValue:
        try:
            return PokeReturnValue(is_done=etl_jobs.acks_settled(summary))
        except etl_jobs.StoreRejected as exc:
            raise AirflowFailException(str(exc)) from exc

    store_acknowledgements(incremental_sync())


ddex_etl_nightly()
