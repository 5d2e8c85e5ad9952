"""Incremental sync against a real PostgreSQL: what changed is rebuilt, what left is taken down,
the watermark moves only on success, and an unchanged catalog delivers nothing."""
from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ddex_etl import run as run_api
from ddex_etl.config import Config, DatabaseConfig
from ddex_etl.db import make_engine
from ddex_etl.demo.seed import seed_catalog
from ddex_etl.run import RunFailed

RELEASES = 200


@pytest.fixture()
def engine(db_url: str) -> Iterator[sa.Engine]:
    eng = make_engine(db_url, pool_size=2)
    seed_catalog(eng, RELEASES, seed=11)
    yield eng
    eng.dispose()


def make_cfg(db_url: str, tmp_path: Path, **run: Any) -> Config:
    """Table target, small chunks, two workers, no watermark lag unless a test asks for one."""
    cfg = Config(database=DatabaseConfig(url=db_url, pool_size=2))
    return cfg.with_overrides(
        extract={"chunk_size": 20},
        load={"target": "table", "directory": tmp_path / "out"},
        run={"workers": 2, "retry_delay": 0.01, "watermark_lag_seconds": 0.0, **run},
    )


def sql(engine: sa.Engine, text: str, **params: Any) -> list[Any]:
    with engine.begin() as conn:
        result = conn.execute(sa.text(text), params)
        return list(result) if result.returns_rows else []


def ids(engine: sa.Engine, text: str, **params: Any) -> set[int]:
    return {int(r[0]) for r in sql(engine, text, **params)}


def docs_of_run(engine: sa.Engine, run_id: int) -> dict[int, str]:
    """release_id -> kind of the documents a run wrote to the output table."""
    rows = sql(engine, "SELECT release_id, kind FROM ddex_etl.documents WHERE run_id = :r", r=run_id)
    return {int(r[0]): str(r[1]) for r in rows}


def all_deals_ended(engine: sa.Engine, release_ids: set[int]) -> set[int]:
    """Releases whose every deal has ended before today: an incremental run takes them down."""
    return ids(
        engine,
        """SELECT release_id FROM deals WHERE release_id = ANY(:ids) GROUP BY release_id
        HAVING bool_and(end_date IS NOT NULL AND end_date < current_date)""",
        ids=sorted(release_ids),
    )


def pick(engine: sa.Engine, n: int, exclude: set[int]) -> list[int]:
    """n live releases, not in exclude, whose deals have not all ended (so they rebuild as releases)."""
    live = ids(engine, "SELECT release_id FROM releases WHERE deleted_at IS NULL")
    ended = all_deals_ended(engine, live)
    return sorted(live - ended - exclude)[:n]


# ---------------------------------------------------------------- the exact set


def test_incremental_rebuilds_exactly_what_changed_in_every_table(engine: sa.Engine, db_url: str, tmp_path: Path) -> None:
    cfg = make_cfg(db_url, tmp_path)
    full = run_api.run(cfg, progress=False)
    assert (full.status, full.mode, full.built) == ("succeeded", "full", RELEASES)
    assert full.watermark_to is not None

    title, isrc, contrib, deal, gone1, gone2 = pick(engine, 6, set())
    track = sql(engine, "SELECT min(track_id) FROM tracks WHERE release_id = :r", r=isrc)[0][0]
    contrib_track = sql(engine, "SELECT min(track_id) FROM tracks WHERE release_id = :r", r=contrib)[0][0]
    # An artist credited on several releases (release_artists or track credits): all of them change.
    artist = sql(
        engine,
        """SELECT artist_id FROM release_artists GROUP BY artist_id HAVING count(*) BETWEEN 2 AND 6
        ORDER BY artist_id LIMIT 1""",
    )[0][0]
    artist_releases = ids(
        engine,
        """SELECT release_id FROM release_artists WHERE artist_id = :a
        UNION SELECT t.release_id FROM track_contributors c JOIN tracks t USING (track_id) WHERE c.artist_id = :a""",
        a=artist,
    )
    label = sql(
        engine,
        "SELECT label_id FROM releases GROUP BY label_id ORDER BY count(*), label_id LIMIT 1",
    )[0][0]
    label_releases = ids(engine, "SELECT release_id FROM releases WHERE label_id = :l", l=label)

    cases = [
        ("UPDATE releases SET title = title || ' (Remastered)', updated_at = now() WHERE release_id = :x", title),
        ("UPDATE tracks SET isrc = 'QZZZZ2600001', updated_at = now() WHERE track_id = :x", track),
        (
            """UPDATE track_contributors SET sequence = sequence + 1, updated_at = now()
            WHERE (track_id, artist_id, role) = (SELECT track_id, artist_id, role FROM track_contributors
                                                 WHERE track_id = :x ORDER BY artist_id, role LIMIT 1)""",
            contrib_track,
        ),
        ("UPDATE artists SET name = name || ' & Friends', updated_at = now() WHERE artist_id = :x", artist),
        ("UPDATE labels SET name = name || ' Records', updated_at = now() WHERE label_id = :x", label),
        (
            """UPDATE deals SET territories = ARRAY['FR'], updated_at = now()
            WHERE deal_id = (SELECT min(deal_id) FROM deals WHERE release_id = :x)""",
            deal,
        ),
        ("UPDATE releases SET deleted_at = now(), updated_at = now() WHERE release_id = :x", gone1),
        ("UPDATE releases SET deleted_at = now(), updated_at = now() WHERE release_id = :x", gone2),
    ]
    for statement, key in cases:
        sql(engine, statement, x=key)

    changed = {title, isrc, contrib, deal, gone1, gone2} | artist_releases | label_releases
    taken_down = {gone1, gone2} | all_deals_ended(engine, changed)
    rebuilt = changed - taken_down

    inc = run_api.run(cfg, progress=False, mode="incremental")
    assert (inc.status, inc.mode, inc.exit_code) == ("succeeded", "incremental", 0)
    assert inc.watermark_from == full.watermark_to
    docs = docs_of_run(engine, inc.run_id)
    assert set(docs) == changed
    assert {rid for rid, kind in docs.items() if kind == "TakeDown"} == taken_down
    assert (inc.built, inc.takedowns, inc.unchanged, inc.rejected) == (len(rebuilt), len(taken_down), 0, 0)
    # The untouched releases keep the full run's documents.
    assert len(docs_of_run(engine, full.run_id)) == RELEASES - len(changed)
    status = {j.job: j for j in run_api.status(cfg)}["default"]
    assert status.last_success is not None and status.last_success.watermark_to == inc.watermark_to


def test_unchanged_catalog_delivers_nothing(engine: sa.Engine, db_url: str, tmp_path: Path) -> None:
    cfg = make_cfg(db_url, tmp_path)
    full = run_api.run(cfg, progress=False)
    inc = run_api.run(cfg, progress=False, mode="incremental")
    assert (inc.status, inc.built, inc.takedowns, inc.unchanged, inc.rejected) == ("succeeded", 0, 0, 0, 0)
    assert docs_of_run(engine, inc.run_id) == {}
    assert len(docs_of_run(engine, full.run_id)) == RELEASES


@pytest.mark.parametrize(
    ("force", "built", "unchanged"),
    [
        (False, 0, 3),  # identical bytes: not delivered again
        (True, 3, 0),  # --force delivers anyway
    ],
)
def test_targeted_rebuild_skips_identical_documents_unless_forced(
    engine: sa.Engine, db_url: str, tmp_path: Path, force: bool, built: int, unchanged: int
) -> None:
    cfg = make_cfg(db_url, tmp_path)
    full = run_api.run(cfg, progress=False)
    targets = pick(engine, 3, set())
    report = run_api.run(cfg, progress=False, release_ids=targets, force=force)
    assert (report.mode, report.built, report.unchanged) == ("targeted", built, unchanged)
    assert set(docs_of_run(engine, report.run_id)) == (set(targets) if force else set())
    # A targeted run never moves the job's watermark.
    status = {j.job: j for j in run_api.status(cfg)}["default"]
    assert status.last_success is not None and status.last_success.run_id == full.run_id


def test_since_rebuilds_changes_after_a_timestamp(engine: sa.Engine, db_url: str, tmp_path: Path) -> None:
    cfg = make_cfg(db_url, tmp_path)
    run_api.run(cfg, progress=False)
    a, b = pick(engine, 2, set())
    sql(engine, "UPDATE releases SET updated_at = now() - interval '3 days' WHERE release_id = :x", x=a)
    sql(engine, "UPDATE releases SET updated_at = now() - interval '1 day', title = 'B' WHERE release_id = :x", x=b)
    since = sql(engine, "SELECT now() - interval '2 days'")[0][0]
    report = run_api.run(cfg, progress=False, since=since)
    assert report.mode == "targeted" and set(docs_of_run(engine, report.run_id)) == {b}


# ---------------------------------------------------------------- takedowns


def test_deals_that_all_ended_since_the_last_run_become_a_takedown(engine: sa.Engine, db_url: str, tmp_path: Path) -> None:
    cfg = make_cfg(db_url, tmp_path)
    full = run_api.run(cfg, progress=False)
    (ending,) = pick(engine, 1, set())
    # The last deal ended yesterday, entered long ago (updated_at untouched): only the date crossed.
    sql(engine, "UPDATE deals SET end_date = current_date - 1, updated_at = updated_at WHERE release_id = :x", x=ending)
    sql(engine, "UPDATE ddex_etl.runs SET watermark_to = now() - interval '3 days' WHERE id = :r", r=full.run_id)
    inc = run_api.run(cfg, progress=False, mode="incremental")
    assert docs_of_run(engine, inc.run_id) == {ending: "TakeDown"}
    assert (inc.built, inc.takedowns) == (0, 1)


def test_flat_files_takedown_replaces_the_file(engine: sa.Engine, db_url: str, tmp_path: Path) -> None:
    cfg = make_cfg(db_url, tmp_path).with_overrides(load={"target": "files", "layout": "flat"})
    run_api.run(cfg, progress=False)
    out = tmp_path / "out"
    before = {p.name: p.read_bytes() for p in out.glob("*.xml")}
    (gone,) = pick(engine, 1, set())
    sql(engine, "UPDATE releases SET deleted_at = now(), updated_at = now() WHERE release_id = :x", x=gone)
    inc = run_api.run(cfg, progress=False, mode="incremental")
    after = {p.name: p.read_bytes() for p in out.glob("*.xml")}
    changed = {name for name in after if after[name] != before.get(name)}
    assert (inc.takedowns, inc.built, len(changed), set(after) == set(before)) == (1, 0, 1, True)
    rows = sql(engine, "SELECT release_id, kind FROM ddex_etl.delivered WHERE run_id = :r", r=inc.run_id)
    assert [(int(r[0]), r[1]) for r in rows] == [(gone, "TakeDown")]


# ---------------------------------------------------------------- the watermark


def test_a_change_after_the_frozen_watermark_is_picked_up_next_run(engine: sa.Engine, db_url: str, tmp_path: Path) -> None:
    # The full run freezes its window two hours back; run A one hour back; run B at now.
    full = run_api.run(make_cfg(db_url, tmp_path, watermark_lag_seconds=7200), progress=False)
    early, late = pick(engine, 2, set())
    sql(engine, "UPDATE releases SET title = 'early', updated_at = now() - interval '90 minutes' WHERE release_id = :x", x=early)
    # Committed "during" run A: after its frozen upper bound.
    sql(engine, "UPDATE releases SET title = 'late', updated_at = now() - interval '30 minutes' WHERE release_id = :x", x=late)
    a = run_api.run(make_cfg(db_url, tmp_path, watermark_lag_seconds=3600), progress=False, mode="incremental")
    assert a.watermark_from == full.watermark_to
    assert set(docs_of_run(engine, a.run_id)) == {early}
    b = run_api.run(make_cfg(db_url, tmp_path), progress=False, mode="incremental")
    assert b.watermark_from == a.watermark_to
    assert set(docs_of_run(engine, b.run_id)) == {late}


def test_a_failed_incremental_run_resumes_with_its_window(engine: sa.Engine, db_url: str, tmp_path: Path) -> None:
    cfg = make_cfg(db_url, tmp_path)
    full = run_api.run(cfg, progress=False)
    bad, good = pick(engine, 2, set())  # bad < good: with one release per chunk, bad's chunk stops the run first
    sql(engine, "UPDATE tracks SET isrc = 'not an isrc', updated_at = now() WHERE release_id = :x", x=bad)
    sql(engine, "UPDATE releases SET title = 'good', updated_at = now() WHERE release_id = :x", x=good)
    strict = cfg.with_overrides(extract={"chunk_size": 1}, run={"workers": 1, "max_errors": 0})
    with pytest.raises(RunFailed) as failed:
        run_api.run(strict, progress=False, mode="incremental")
    stopped = failed.value.report  # type: ignore[attr-defined]
    assert (stopped.status, stopped.watermark_from) == ("failed", full.watermark_to)
    assert docs_of_run(engine, stopped.run_id) == {}
    # Changed after the failed run froze its window: not this run's business.
    (later,) = pick(engine, 1, {bad, good})
    sql(engine, "UPDATE releases SET title = 'later', updated_at = now() WHERE release_id = :x", x=later)
    # The watermark did not move: the last success is still the full run.
    status = {j.job: j for j in run_api.status(cfg)}["default"]
    assert status.last_success is not None and status.last_success.run_id == full.run_id
    # Same extract settings (they are part of the run's fingerprint), no error limit.
    lenient = strict.with_overrides(run={"max_errors": None})
    resumed = run_api.run(lenient, progress=False, mode="incremental")  # continues the unfinished run
    assert (resumed.run_id, resumed.status, resumed.resumed) == (stopped.run_id, "succeeded", True)
    assert (resumed.watermark_from, resumed.watermark_to) == (stopped.watermark_from, stopped.watermark_to)
    assert set(docs_of_run(engine, resumed.run_id)) == {good}
    nxt = run_api.run(cfg, progress=False, mode="incremental")
    assert nxt.watermark_from == resumed.watermark_to
    assert set(docs_of_run(engine, nxt.run_id)) == {later}


# ---------------------------------------------------------------- the CLI


def test_cli_incremental_json_summary(engine: sa.Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from ddex_etl.cli import cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ETL_DATABASE_URL", db_url)
    monkeypatch.setenv("ETL_WORKERS", "1")
    (tmp_path / "etl.toml").write_text('[load]\ntarget = "table"\n[run]\nwatermark_lag_seconds = 0\n')
    first = CliRunner().invoke(cli, ["run", "--no-progress", "--json"], catch_exceptions=False)
    assert first.exit_code == 0, first.output
    (gone,) = pick(engine, 1, set())
    sql(engine, "UPDATE releases SET deleted_at = now(), updated_at = now() WHERE release_id = :x", x=gone)
    result = CliRunner().invoke(cli, ["run", "--incremental", "--no-progress", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert {k: summary[k] for k in ("mode", "built", "takedowns", "unchanged", "rejected", "exit_code")} == {
        "mode": "incremental", "built": 0, "takedowns": 1, "unchanged": 0, "rejected": 0, "exit_code": 0,
    }
    assert summary["window"]["from"] is not None and summary["window"]["to"] is not None
    status = CliRunner().invoke(cli, ["status", "--json"], catch_exceptions=False)
    (job,) = json.loads(status.stdout)
    assert (job["job"], job["watermark"]) == ("default", summary["window"]["to"])
    table = CliRunner().invoke(cli, ["status"], catch_exceptions=False)
    assert "watermark" in table.stdout


# ---------------------------------------------------------------- optional triggers


def test_catalog_triggers_stamp_updates_and_child_deletes(engine: sa.Engine, db_url: str, tmp_path: Path) -> None:
    from ddex_etl.extract import SQL_DIR

    with engine.begin() as conn:
        # The raw driver: no parameters, so format()'s %I is not taken for a placeholder (as in psql).
        conn.connection.driver_connection.execute((SQL_DIR / "catalog_triggers.sql").read_text(encoding="utf-8"))
    cfg = make_cfg(db_url, tmp_path)
    run_api.run(cfg, progress=False)
    renamed, lost_deal = pick(engine, 2, set())
    # Neither statement sets updated_at: the triggers do.
    sql(engine, "UPDATE releases SET title = 'renamed' WHERE release_id = :x", x=renamed)
    sql(engine, "DELETE FROM deals WHERE deal_id = (SELECT max(deal_id) FROM deals WHERE release_id = :x)", x=lost_deal)
    inc = run_api.run(cfg, progress=False, mode="incremental")
    assert set(docs_of_run(engine, inc.run_id)) == {renamed, lost_deal}


def install_triggers(engine: sa.Engine) -> None:
    from ddex_etl.extract import SQL_DIR

    with engine.begin() as conn:
        # The raw driver: no parameters, so format()'s %I is not taken for a placeholder (as in psql).
        conn.connection.driver_connection.execute((SQL_DIR / "catalog_triggers.sql").read_text(encoding="utf-8"))


def test_a_child_row_moved_to_another_release_rebuilds_both_releases(
    engine: sa.Engine, db_url: str, tmp_path: Path
) -> None:
    """Issue 21 item 6: the shipped triggers stamped the old release only on DELETE, so moving a track,
    a credit, an artist row or a deal to another release rebuilt only the release it moved to (this
    test failed: the old releases were missing from the incremental run, a moved deal stayed on sale)."""
    install_triggers(engine)
    cfg = make_cfg(db_url, tmp_path)
    run_api.run(cfg, progress=False)
    # Releases with two tracks and two deals, so each keeps one after losing one (still a valid message).
    roomy = sorted(ids(
        engine,
        """SELECT release_id FROM tracks GROUP BY release_id HAVING count(*) >= 2
        INTERSECT SELECT release_id FROM deals GROUP BY release_id HAVING count(*) >= 2
        INTERSECT SELECT release_id FROM release_artists GROUP BY release_id HAVING count(*) >= 2""",
    ) & set(pick(engine, RELEASES, set())))
    assert len(roomy) >= 8
    t_from, t_to, d_from, d_to, c_from, c_to, a_from, a_to = roomy[:8]
    track = sql(engine, "SELECT max(track_id) FROM tracks WHERE release_id = :x", x=t_from)[0][0]
    other_track = sql(engine, "SELECT min(track_id) FROM tracks WHERE release_id = :x", x=c_to)[0][0]
    credit_track = sql(engine, "SELECT min(track_id) FROM tracks WHERE release_id = :x", x=c_from)[0][0]
    # None of these statements sets updated_at: the triggers do.
    sql(engine, "UPDATE tracks SET release_id = :to, track_number = 99 WHERE track_id = :t", to=t_to, t=track)
    sql(engine, "UPDATE deals SET release_id = :to WHERE deal_id = (SELECT max(deal_id) FROM deals WHERE release_id = :x)",
        to=d_to, x=d_from)
    sql(engine,
        """UPDATE track_contributors SET track_id = :to
        WHERE (track_id, artist_id, role) = (SELECT track_id, artist_id, role FROM track_contributors
                                             WHERE track_id = :t ORDER BY artist_id, role LIMIT 1)""",
        to=other_track, t=credit_track)
    sql(engine,
        """UPDATE release_artists SET release_id = :to
        WHERE (release_id, artist_id, role) = (SELECT release_id, artist_id, role FROM release_artists
                                               WHERE release_id = :x ORDER BY sequence DESC, artist_id LIMIT 1)""",
        to=a_to, x=a_from)
    inc = run_api.run(cfg, progress=False, mode="incremental")
    assert inc.rejected == 0
    assert set(docs_of_run(engine, inc.run_id)) == {t_from, t_to, d_from, d_to, c_from, c_to, a_from, a_to}
    # The release the track left no longer lists it.
    with engine.connect() as conn:
        doc = conn.execute(sa.text("SELECT document FROM ddex_etl.documents WHERE release_id = :x"), {"x": t_from}).scalar()
        isrc = conn.execute(sa.text("SELECT isrc FROM tracks WHERE track_id = :t"), {"t": track}).scalar()
    assert isrc.encode() not in bytes(doc)


def test_outdated_catalog_triggers_are_named_with_the_fix(engine: sa.Engine, db_url: str, tmp_path: Path) -> None:
    """Issue 21 item 6, upgrading: a catalog whose triggers came from the older file (no move triggers)
    is reported by `etl config check --connect` (exit 2, the psql command) and warned about by incremental
    runs; installing the file again fixes it. (Before: nothing said so.)"""
    from etl_cli import etl

    install_triggers(engine)
    # What the older file left: every trigger but the move ones.
    sql(engine, "DO $$ DECLARE t text; BEGIN FOREACH t IN ARRAY ARRAY['release_artists', 'tracks', "
                "'track_contributors', 'deals', 'release_images'] LOOP "
                "EXECUTE format('DROP TRIGGER ddex_etl_touch_moved ON %I', t); END LOOP; END $$")
    sql(engine, "DROP FUNCTION ddex_etl_touch_moved()")
    (tmp_path / "etl.toml").write_text('[load]\ntarget = "table"\n[run]\nwatermark_lag_seconds = 0\nworkers = 1\n')
    env = {"ETL_DATABASE_URL": db_url}
    check = etl(tmp_path, "config", "check", "--connect", env=env)
    assert check.returncode == 2, check.stdout + check.stderr
    assert "catalog triggers: the catalog's ddex-etl triggers are from an older version" in check.stdout
    assert "catalog_triggers.sql" in check.stdout and "ddex_etl_touch_moved" in check.stdout
    assert etl(tmp_path, "run", "--no-progress", env=env).returncode == 0
    inc = etl(tmp_path, "run", "--incremental", "--no-progress", env=env)
    assert inc.returncode == 0, inc.stderr
    assert inc.stderr.count("triggers are from an older version") == 1
    install_triggers(engine)  # what the fix says: the file again
    fixed = etl(tmp_path, "config", "check", "--connect", env=env)
    assert fixed.returncode == 0, fixed.stdout
    assert "catalog_triggers.sql are installed and current" in fixed.stdout
    assert "older version" not in etl(tmp_path, "run", "--incremental", "--no-progress", env=env).stderr


# ---------------------------------------------------------------- ddex-batch


def test_ddex_batch_holds_only_what_changed_and_a_quiet_night_leaves_no_batch(
    engine: sa.Engine, db_url: str, tmp_path: Path
) -> None:
    cfg = make_cfg(db_url, tmp_path).with_overrides(load={"target": "files", "layout": "ddex-batch"})
    full = run_api.run(cfg, progress=False)
    out = tmp_path / "out"
    changed, gone = pick(engine, 2, set())
    sql(engine, "UPDATE releases SET title = 'new title', updated_at = now() WHERE release_id = :x", x=changed)
    sql(engine, "UPDATE releases SET deleted_at = now(), updated_at = now() WHERE release_id = :x", x=gone)
    inc = run_api.run(cfg, progress=False, mode="incremental")
    assert inc.batch_id and inc.batch_id != full.batch_id
    batch = out / inc.batch_id
    documents = [p for p in batch.rglob("*.xml") if not p.name.startswith("BatchComplete")]
    assert len(documents) == 2 and (inc.built, inc.takedowns) == (1, 1)
    assert any(p.name.startswith("BatchComplete") for p in batch.iterdir())
    quiet = run_api.run(cfg, progress=False, mode="incremental")
    assert (quiet.status, quiet.built, quiet.takedowns) == ("succeeded", 0, 0)
    assert sorted(p.name for p in out.iterdir()) == sorted([full.batch_id, inc.batch_id])


def test_a_forced_redelivery_gets_a_new_message_id_and_creation_time(engine: sa.Engine, db_url: str, tmp_path: Path) -> None:
    from messages import header

    def headers(run_id: int) -> dict[int, dict[str, str]]:
        rows = sql(engine, "SELECT release_id, document FROM ddex_etl.documents WHERE run_id = :r", r=run_id)
        return {int(r[0]): header(bytes(r[1])) for r in rows}

    cfg = make_cfg(db_url, tmp_path)
    full = run_api.run(cfg, progress=False)
    targets = pick(engine, 2, set())
    before = headers(full.run_id)
    forced = run_api.run(cfg, progress=False, release_ids=targets, force=True)
    after = headers(forced.run_id)
    assert set(after) == set(targets)
    runs = {r.run_id: r for r in run_api.recent_runs(cfg, limit=5)}
    for rid in targets:
        # Never the same id for another delivery of the same release: the run names it.
        assert before[rid]["MessageId"] != after[rid]["MessageId"]
        assert re.fullmatch(rf".*-{rid}-run{forced.run_id}-[0-9a-f]{{32}}", after[rid]["MessageId"]), after[rid]["MessageId"]
        # Created = the run's frozen start, not the catalog's last change.
        started = runs[forced.run_id].started_at.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert after[rid]["MessageCreatedDateTime"] == started
