"""MessageIds are unique for ever: across runs, jobs, recipients, `--new`, and a dropped and recreated state schema.

Run ids restart at 1 with a fresh state schema (or on a second machine, or
from a restored backup): a MessageId built from the run id alone repeated,
with other content, to the same store. Each run now draws a random id once,
kept in its run row, so a resume writes the same ids and no other run does.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from ddex_etl import run as run_api
from ddex_etl.config import Config, DatabaseConfig, RecipientConfig
from ddex_etl.db import make_engine
from ddex_etl.demo.seed import seed_catalog

RELEASES = 12
_ID = re.compile(rb"<MessageId>([^<]+)</MessageId>")


@pytest.fixture()
def engine(db_url: str) -> Iterator[sa.Engine]:
    eng = make_engine(db_url, pool_size=2)
    seed_catalog(eng, RELEASES, seed=3)
    yield eng
    eng.dispose()


def cfg_for(db_url: str, out: Path, job: str = "default") -> Config:
    out.mkdir(parents=True, exist_ok=True)
    base = Config(database=DatabaseConfig(url=db_url, pool_size=2))
    return base.with_overrides(load={"directory": out}, run={"workers": 1, "job": job, "retry_delay": 0.01})


def message_ids(folder: Path) -> list[bytes]:
    found = [m.group(1) for f in sorted(folder.rglob("*.xml")) if (m := _ID.search(f.read_bytes()))]
    assert found, f"no messages in {folder}"
    return found


def test_message_ids_never_repeat(engine: sa.Engine, db_url: str, tmp_path: Path) -> None:
    seen: list[bytes] = []

    def deliver(name: str, cfg: Config, **kwargs: object) -> list[bytes]:
        report = run_api.run(cfg, progress=False, **kwargs)  # type: ignore[arg-type]
        assert report.built == RELEASES, name
        ids = message_ids(cfg.load.directory)
        assert len(set(ids)) == len(ids), name
        seen.extend(ids)
        return ids

    first = deliver("first run", cfg_for(db_url, tmp_path / "first"))
    assert all(re.fullmatch(rb"PADPIDA\w+-\d+-run\d+-[0-9a-f]{32}", i) for i in first), first[:2]
    deliver("a second full run", cfg_for(db_url, tmp_path / "second"))
    deliver("--new", cfg_for(db_url, tmp_path / "new"), new=True)
    deliver("another job", cfg_for(db_url, tmp_path / "nightly", job="nightly"))
    two = cfg_for(db_url, tmp_path / "stores")
    for r in (RecipientConfig(name="a", dpid="PADPIDA2014120301L"), RecipientConfig(name="b", dpid="PADPIDA20150507019")):
        deliver(f"recipient {r.name}", two.for_recipient(r))
    # The state schema dropped and created afresh: run ids start again at 1.
    with engine.begin() as conn:
        conn.execute(sa.text('DROP SCHEMA "ddex_etl" CASCADE'))
    again = deliver("after the state schema was recreated", cfg_for(db_url, tmp_path / "fresh"))
    assert [i.split(b"-run")[1].split(b"-")[0] for i in again] == [i.split(b"-run")[1].split(b"-")[0] for i in first]
    assert len(set(seen)) == len(seen), "a MessageId was used twice"


def test_a_resumed_run_keeps_its_delivery_id(engine: sa.Engine, db_url: str, tmp_path: Path) -> None:
    """The random part lives in the run row: reopening the run (a resume) gives the same MessageIds."""
    from ddex_etl import state

    run_api.run(cfg_for(db_url, tmp_path / "out"), progress=False)
    with engine.begin() as conn:
        [row] = state.list_runs(conn, "ddex_etl", job="default")
        again = state.reopen_run(conn, "ddex_etl", row.id, pid=1, host="elsewhere", redone=0)
    assert again.delivery_id == row.delivery_id and re.fullmatch(r"run\d+-[0-9a-f]{32}", row.delivery_id)
    assert all(i.endswith(b"-" + row.delivery_id.encode()) for i in message_ids(tmp_path / "out"))
