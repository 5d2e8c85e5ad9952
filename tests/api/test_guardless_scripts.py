"""Scripts written top to bottom like the docs, with no ``if __name__ == "__main__":`` guard (issue 20 part 1).

Each test writes a real script file, runs it in a fresh interpreter and
checks that its top level ran exactly once (the marker line, and a side
effect: a line appended to a file), that it exited 0 within a bound, and that
every release came out. Before the shared worker launcher, a second pool
started with ``forkserver`` re-ran the script in the fork server, printed the
marker three times, raised "An attempt has been made to start a new process
before the current process has finished its bootstrapping phase" and hung.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MARKER = "MARKER: the script's top level runs"

PRELUDE = f'''
import sys
print("{MARKER}", flush=True)
with open("side-effect.log", "a") as log:  # a top-level side effect: must happen once
    log.write("ran\\n")

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import sqlalchemy as sa

from ddex_etl import DDEXBuilder, StreamingBatchProcessor
from ddex_etl.demo.seed import SQL_DIR

engine = sa.create_engine(sys.argv[1])
query = sa.text((SQL_DIR / "release_rows.sql").read_text())
with engine.connect() as conn:  # disposed at the end (the last snippet)
    ids = list(conn.execute(sa.text("SELECT release_id FROM releases ORDER BY 1")).scalars())
    frame = pd.read_sql(query, conn, params={{"release_ids": ids}})
release = {{
    "release_id": 1, "icpn": "0602445790005", "title": "Northern Lights", "release_type": "Single",
    "label": {{"label_id": 1, "name": "Aurora Records"}}, "genre": "Electronic", "release_date": "2025-03-01",
    "p_line_text": "2025 Aurora Records", "c_line_text": "2025 Aurora Records",
    "cover_image": {{"file": "covers/1.jpg", "md5": "5d41402abc4b2a76b9719d911017c592", "width": 3000,
                    "height": 3000, "mime_type": "image/jpeg"}},
    "artists": [{{"artist_id": 1, "name": "Nova", "role": "MainArtist"}}],
    "tracks": [{{"track_id": 1, "disc_number": 1, "track_number": 1, "isrc": "GBAYE2500001",
                "title": "Aurora", "duration_seconds": "3:57"}}],
    "deals": [{{"territories": ["Worldwide"], "commercial_model": "SubscriptionModel",
               "use_types": ["OnDemandStream"], "start_date": "2025-03-01"}}],
}}


def dicts(n):
    return [{{**release, "release_id": k}} for k in range(1, n + 1)]
'''

SNIPPETS = {
    "build": '''
builder = DDEXBuilder(workers=2)
print("RESULT build", sum(1 for d in dicts(5) if builder.build(d).startswith("<?xml")), 0)
''',
    "build_batch": '''
result = DDEXBuilder(workers=2).build_batch(dicts(60), batch_size=10, parallel=True)
print("RESULT build_batch", len(result.success), len(result.errors))
''',
    "from_dataframe_batch": '''
result = DDEXBuilder(workers=2).from_dataframe_batch(frame, group_by="release_id", parallel=True, batch_size=5)
print("RESULT from_dataframe_batch", len(result.success), len(result.errors))
''',
    "stream_dicts": '''
got = []
stats = StreamingBatchProcessor(batch_size=10, builder=DDEXBuilder(workers=2)).process_stream(dicts(60), got.append)
print("RESULT stream_dicts", len(got), stats.failed)
''',
    "stream_read_sql": '''
got = []
with engine.connect().execution_options(stream_results=True) as conn:
    frames = pd.read_sql(query, conn, params={"release_ids": ids}, chunksize=500)
    stats = StreamingBatchProcessor(batch_size=10).process_stream(frames, got.append)
print("RESULT stream_read_sql", len(got), stats.failed)
''',
    "threads": '''
shared = DDEXBuilder(workers=2)  # its pool is started by whichever thread needs it first
chunks = [dicts(80)[k::4] for k in range(4)]
with ThreadPoolExecutor(max_workers=4) as threads:
    results = list(threads.map(lambda chunk: shared.build_batch(chunk, batch_size=5), chunks))
print("RESULT threads", sum(len(r.success) for r in results), sum(len(r.errors) for r in results))
''',
    "asyncio": '''
async def main():
    inbox, outbox = asyncio.Queue(maxsize=20), asyncio.Queue(maxsize=20)

    async def producer():
        for d in dicts(50):
            await inbox.put(d)
        await inbox.put(None)

    async def incoming():
        while (item := await inbox.get()) is not None:
            yield item

    delivered = []

    async def consumer():
        while (item := await outbox.get()) is not None:
            delivered.append(item)

    tasks = [asyncio.create_task(producer()), asyncio.create_task(consumer())]
    stats = await StreamingBatchProcessor(batch_size=5, builder=DDEXBuilder(workers=2)).aprocess_stream(
        incoming(), outbox.put)
    await outbox.put(None)
    await asyncio.gather(*tasks)
    return len(delivered), stats.failed

print("RESULT asyncio", *asyncio.run(main()))
''',
}
EXPECTED = {"build": 5, "build_batch": 60, "from_dataframe_batch": None, "stream_dicts": 60,
            "stream_read_sql": None, "threads": 80, "asyncio": 50}
RELEASES = 24  # the seeded catalog: what the DataFrame patterns must build


@pytest.fixture(scope="module")
def catalog_url(server_url: str) -> object:
    """One seeded catalog for every script of this module (read only)."""
    import uuid

    import psycopg
    from sqlalchemy.engine import make_url

    from ddex_etl.db import make_engine
    from ddex_etl.demo.seed import seed_catalog

    name = "etl_t_" + uuid.uuid4().hex[:12]
    admin = make_url(server_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    try:
        seed_catalog(engine, releases=RELEASES, seed=4)
    finally:
        engine.dispose()
    yield url
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_script(body: str, url: str, folder: Path) -> subprocess.CompletedProcess[str]:
    script = folder / "guardless.py"  # a file, as a user runs it: `python guardless.py`
    script.write_text(PRELUDE + body, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-W", "error", str(script), url], cwd=folder, env=env,
        capture_output=True, text=True, timeout=240, check=False,  # a hang fails the test, bounded
    )


def check(done: subprocess.CompletedProcess[str], folder: Path, names: list[str]) -> None:
    shown = done.stdout[-3000:] + done.stderr[-3000:]
    assert done.returncode == 0, shown
    assert done.stdout.count(MARKER) == 1, shown
    assert (folder / "side-effect.log").read_text() == "ran\n"
    assert "bootstrapping" not in done.stderr, shown
    results = {line.split()[1]: (int(line.split()[2]), int(line.split()[3]))
               for line in done.stdout.splitlines() if line.startswith("RESULT ")}
    assert sorted(results) == sorted(names), shown
    for name in names:
        assert results[name] == (EXPECTED[name] or RELEASES, 0), (name, shown)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SNIPPETS))
def test_one_api_in_a_guardless_script_runs_once_and_finishes(name: str, catalog_url: str, tmp_path: Path) -> None:
    done = run_script(SNIPPETS[name] + "engine.dispose()\n", catalog_url, tmp_path)
    check(done, tmp_path, [name])


@pytest.mark.slow
def test_every_api_in_one_guardless_script_runs_once_and_finishes(catalog_url: str, tmp_path: Path) -> None:
    order = ["build_batch", "from_dataframe_batch", "stream_read_sql", "stream_dicts", "threads", "asyncio", "build"]
    done = run_script("".join(SNIPPETS[n] for n in order) + "engine.dispose()\n", catalog_url, tmp_path)
    check(done, tmp_path, order)
