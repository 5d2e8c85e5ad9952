"""Each kind of bad row in the catalog, through the `etl` command line, end to end.

The good releases all arrive; each bad one is recorded once with a message
naming the release and the field; `etl run` exits 3 (REJECTED); `etl errors
--json` lists them; once the data is fixed, `etl retry-failed` rebuilds only
those, clears them, and exits 0.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from ddex_etl.cli import cli
from ddex_etl.errors import ExitCode

RELEASES = 60

# (kind, release id, the SQL that breaks it, the field the message must name)
BAD: list[tuple[str, int, str, str]] = [
    ("control character in a title", 3,
     "UPDATE releases SET title = 'Bell' || chr(7) || 'Title' WHERE release_id = :r", "title"),
    ("malformed ISRC", 8,
     "UPDATE tracks SET isrc = 'US-ABC-12-34567' WHERE track_id = (SELECT min(track_id) FROM tracks WHERE release_id = :r)",
     "tracks[0].isrc"),
    ("zero duration", 13,
     "UPDATE tracks SET duration_seconds = 0 WHERE track_id = (SELECT min(track_id) FROM tracks WHERE release_id = :r)",
     "tracks[0].duration_seconds"),
    ("unknown commercial model", 21,
     "UPDATE deals SET commercial_model = 'RentToOwnModel' WHERE deal_id = (SELECT min(deal_id) FROM deals WHERE release_id = :r)",
     "deals[0].commercial_model"),
    ("duplicate track position", 0,  # a release with two or more tracks, picked below
     "UPDATE tracks SET track_number = 1, disc_number = 1 WHERE track_id = "
     "(SELECT track_id FROM tracks WHERE release_id = :r ORDER BY disc_number, track_number OFFSET 1 LIMIT 1)",
     "tracks[1].track_number"),
    ("release with no tracks", 34,
     "DELETE FROM track_contributors WHERE track_id IN (SELECT track_id FROM tracks WHERE release_id = :r);"
     "DELETE FROM tracks WHERE release_id = :r", "tracks"),
    ("release with no deals", 45, "DELETE FROM deals WHERE release_id = :r", "deals"),
]
CHILDREN = ("tracks", "track_contributors", "deals")


def invoke(args: list[str]) -> Result:
    return CliRunner().invoke(cli, args, catch_exceptions=False)


@pytest.fixture()
def workdir(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("ETL_") and not name.startswith("ETL_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ETL_DATABASE_URL", db_url)
    # repair = false: a control character is rejected, not silently cleaned.
    (tmp_path / "etl.toml").write_text(
        "[extract]\nchunk_size = 10\n[transform]\nrepair = false\n[run]\nworkers = 2\nretry_delay = 0.01\n"
    )
    yield tmp_path


def execute(db_url: str, fn: Callable[[sa.Connection], object]) -> object:
    eng = sa.create_engine(db_url)
    try:
        with eng.begin() as conn:
            return fn(conn)
    finally:
        eng.dispose()


def test_each_kind_of_bad_row_is_rejected_named_and_retried_after_the_fix(workdir: Path, db_url: str) -> None:
    assert invoke(["seed", "--releases", str(RELEASES)]).exit_code == 0
    multi = int(execute(db_url, lambda c: c.execute(sa.text(  # type: ignore[arg-type]
        "SELECT release_id FROM tracks WHERE release_id > 50 GROUP BY 1 HAVING count(*) >= 2 ORDER BY 1 LIMIT 1"
    )).scalar_one()))
    cases = [(kind, rid or multi, sql, field) for kind, rid, sql, field in BAD]
    bad_ids = sorted(rid for _, rid, _, _ in cases)

    def break_them(conn: sa.Connection) -> None:
        ids = {"ids": bad_ids}
        # Keep the good rows, to put them back once "the data is fixed".
        conn.execute(sa.text("CREATE TABLE keep_releases AS SELECT * FROM releases WHERE release_id = ANY(:ids)"), ids)
        conn.execute(sa.text("CREATE TABLE keep_tracks AS SELECT * FROM tracks WHERE release_id = ANY(:ids)"), ids)
        conn.execute(sa.text("CREATE TABLE keep_deals AS SELECT * FROM deals WHERE release_id = ANY(:ids)"), ids)
        conn.execute(sa.text(
            "CREATE TABLE keep_track_contributors AS SELECT c.* FROM track_contributors c "
            "JOIN tracks t USING (track_id) WHERE t.release_id = ANY(:ids)"
        ), ids)
        # A user's catalog may lack the reference catalog's unique key on track positions.
        conn.execute(sa.text("ALTER TABLE tracks DROP CONSTRAINT tracks_position_key"))
        for _, rid, sql, _ in cases:
            for statement in sql.split(";"):
                conn.execute(sa.text(statement), {"r": rid})

    execute(db_url, break_them)

    result = invoke(["run", "--no-progress"])
    assert result.exit_code == ExitCode.REJECTED, result.output
    assert f"built {RELEASES - len(cases)}, rejected {len(cases)}" in result.stdout
    out = workdir / "out"
    good = {f"{i}.xml" for i in range(1, RELEASES + 1) if i not in bad_ids}
    assert {p.name for p in out.iterdir()} == good  # every good release arrived, nothing else

    listed = json.loads(invoke(["errors", "--json"]).stdout)
    assert sorted(r["release_id"] for r in listed) == bad_ids  # each recorded once
    by_id = {r["release_id"]: r for r in listed}
    for kind, rid, _, field in cases:
        r = by_id[rid]
        assert r["message"].startswith(f"release {rid}: {field}="), (kind, r["message"])
        assert "fix:" in r["message"] and r["retryable"] is False and r["attempts"] == 1, kind
    readable = invoke(["errors"]).stdout
    assert f"{len(cases)} rejected releases" in readable and all(f"release {rid} " in readable for rid in bad_ids)

    def fix_them(conn: sa.Connection) -> None:
        ids = {"ids": bad_ids}
        conn.execute(sa.text("DELETE FROM track_contributors WHERE track_id IN "
                             "(SELECT track_id FROM tracks WHERE release_id = ANY(:ids))"), ids)
        conn.execute(sa.text("DELETE FROM tracks WHERE release_id = ANY(:ids)"), ids)
        conn.execute(sa.text("DELETE FROM deals WHERE release_id = ANY(:ids)"), ids)
        for table in CHILDREN:
            conn.execute(sa.text(f"INSERT INTO {table} SELECT * FROM keep_{table}"))
        conn.execute(sa.text("UPDATE releases r SET title = k.title FROM keep_releases k WHERE k.release_id = r.release_id"))

    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    execute(db_url, fix_them)
    retried = invoke(["retry-failed", "--no-progress", "--json"])
    assert retried.exit_code == ExitCode.OK, retried.output
    summary = json.loads(retried.stdout)
    assert (summary["mode"], summary["built"], summary["rejected"]) == ("retry", len(cases), 0)
    assert {p.name for p in out.iterdir()} == {f"{i}.xml" for i in range(1, RELEASES + 1)}
    assert all(p.stat().st_mtime_ns == before[p.name] for p in out.iterdir() if p.name in before)  # only those rebuilt
    assert json.loads(invoke(["errors", "--json"]).stdout) == []  # cleared
    resolved = json.loads(invoke(["errors", "1", "--all", "--json"]).stdout)
    assert sorted(r["release_id"] for r in resolved) == bad_ids and all(r["resolved_at"] for r in resolved)
    # Nothing left to retry is a usage error a scheduler can tell apart.
    assert invoke(["retry-failed", "--no-progress"]).exit_code == ExitCode.USAGE
