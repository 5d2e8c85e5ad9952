"""The batch API on the same Dask executor as `etl run` (issue 20 part 3).

A notebook user starts a LocalCluster, points the builder at it and builds a
DataFrame batch there: the documents are byte for byte those built in the
calling process. The processor streams through the same builder.
"""
from __future__ import annotations

import logging
from typing import Any

import pandas as pd
import pytest

pytest.importorskip("distributed")

from ddex_etl import DDEXBuilder, StreamingBatchProcessor  # noqa: E402
from ddex_etl.errors import ConfigError  # noqa: E402


@pytest.fixture()
def catalog_frame(db_url: str) -> pd.DataFrame:
    import sqlalchemy as sa

    from ddex_etl.db import make_engine
    from ddex_etl.demo.seed import SQL_DIR, seed_catalog

    engine = make_engine(db_url)
    try:
        seed_catalog(engine, releases=30, seed=8)
        query = sa.text((SQL_DIR / "release_rows.sql").read_text(encoding="utf-8"))
        with engine.connect() as conn:
            ids = list(conn.execute(sa.text("SELECT release_id FROM releases ORDER BY 1")).scalars())
            return pd.read_sql(query, conn, params={"release_ids": ids})
    finally:
        engine.dispose()


@pytest.mark.slow
def test_a_notebook_builds_a_dataframe_batch_on_a_dask_local_cluster(catalog_frame: pd.DataFrame) -> None:
    from distributed import LocalCluster

    expected = {s.id: s.checksum for s in DDEXBuilder(workers=1).from_dataframe_batch(catalog_frame, parallel=False).success}
    assert len(expected) == 30

    # The notebook's cells:
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR)
    try:
        builder = DDEXBuilder(executor="dask", scheduler=cluster.scheduler_address)
        result = builder.from_dataframe_batch(catalog_frame, group_by="release_id", batch_size=4)
        built: list[Any] = []
        stats = StreamingBatchProcessor(batch_size=5, builder=builder).process_stream(
            [catalog_frame.iloc[:100], catalog_frame.iloc[100:]], built.append)  # a release straddles the two
        builder.close()
    finally:
        cluster.close()

    assert result.errors == [] and result.parallel
    assert {s.id: s.checksum for s in result.success} == expected
    assert {s.id: s.checksum for s in built} == expected and stats.failed == 0


def test_an_unknown_executor_is_refused_with_the_fix() -> None:
    with pytest.raises(ConfigError, match="executor: 'ray' is not one of local, dask"):
        DDEXBuilder(executor="ray")
    with pytest.raises(ConfigError, match="executor='dask'"):
        DDEXBuilder(scheduler="tcp://127.0.0.1:8786")
    with pytest.raises(ConfigError, match="give them to the builder"):
        StreamingBatchProcessor(builder=DDEXBuilder(workers=1), executor="dask")
