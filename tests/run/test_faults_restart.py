"""A routine server restart mid-run passes unnoticed: the retry budget is a duration, not a count.

The run talks to the real PostgreSQL through a forwarder on 127.0.0.1 that
cuts every connection and refuses new ones for a few seconds, as a restart
or failover does. The old budget (3 retries, pauses doubling from the
delay) gives up long before; ``run.retry_for`` rides it out.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from tcp_proxy import TcpProxy

from ddex_etl import extract
from ddex_etl import run as run_api
from ddex_etl.config import Config, DatabaseConfig
from ddex_etl.db import make_engine
from ddex_etl.demo.seed import seed_catalog
from ddex_etl.errors import TransientError

RELEASES = 120
OUTAGE = 4.0  # seconds without a server
DELAY = 0.2  # first pause: the old 3-retry budget is 0.2 + 0.4 + 0.8 s


@pytest.fixture()
def proxied(db_url: str) -> Iterator[tuple[sa.Engine, str, TcpProxy]]:
    url = sa.engine.make_url(db_url)
    if not url.host or url.host.startswith("/") or url.query.get("host"):
        pytest.skip("the forwarder needs a server on TCP (the embedded one listens on a Unix socket)")
    engine = make_engine(db_url, pool_size=2)
    seed_catalog(engine, RELEASES, seed=5)
    proxy = TcpProxy(url.host, url.port or 5432)
    yield engine, url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False), proxy
    proxy.close()
    engine.dispose()


def slow_rows_query(tmp_path: Path) -> Path:
    """The packaged rows query, 0.1 s slower per chunk, so the run is still going when the outage comes."""
    packaged = extract.ROWS_SQL.read_text(encoding="utf-8").strip().rstrip(";")
    query = tmp_path / "slow_rows.sql"
    query.write_text(
        "SELECT q.* FROM (\n" + packaged + "\n) q, (SELECT pg_sleep(0.1)) AS pause\n"
        "ORDER BY q.release_id, q.disc_number, q.track_number, q.track_id\n"
    )
    return query


def run_through_an_outage(engine: sa.Engine, url: str, proxy: TcpProxy, tmp_path: Path, **run: object) -> run_api.RunReport:
    cfg = Config(database=DatabaseConfig(url=url, pool_size=2)).with_overrides(
        extract={"chunk_size": 10, "rows_query": slow_rows_query(tmp_path)},
        load={"target": "table"},
        run={"workers": 1, "retry_delay": DELAY, **run},
    )

    def cut_when_under_way() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                built = conn.execute(sa.text(
                    "SELECT coalesce(max(built), 0) FROM ddex_etl.runs WHERE status = 'running'")).scalar()
            if built:
                proxy.outage(OUTAGE)
                return
            time.sleep(0.05)

    # The state tables first, so the watcher can read the run's progress.
    from ddex_etl import state

    state.upgrade(engine, "ddex_etl")
    cutter = threading.Thread(target=cut_when_under_way, daemon=True)
    cutter.start()
    try:
        return run_api.run(cfg, progress=False)
    finally:
        cutter.join(timeout=OUTAGE + 70)


def documents(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM ddex_etl.documents")).scalar_one())


def test_a_run_rides_out_a_server_restart(
    proxied: tuple[sa.Engine, str, TcpProxy], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine, url, proxy = proxied
    report = run_through_an_outage(engine, url, proxy, tmp_path)  # the default budget: retry_for = 120 s
    assert (report.status, report.built) == ("succeeded", RELEASES)
    assert documents(engine) == RELEASES
    assert any("; retry " in r.getMessage() for r in caplog.records)  # it did have to wait


def test_the_old_three_retry_budget_would_have_failed(
    proxied: tuple[sa.Engine, str, TcpProxy], tmp_path: Path
) -> None:
    engine, url, proxy = proxied
    with pytest.raises(TransientError, match="gave up after 3 retries") as info:
        run_through_an_outage(engine, url, proxy, tmp_path, max_retries=3)
    assert info.value.report.status == "failed"  # type: ignore[attr-defined]
