"""A value PostgreSQL cannot store (U+0000, a lone surrogate) costs one release, never the run.

The NUL arrives the way it can in a real catalog: inside a JSON column of a
user's rows query (a ``json`` value may hold ``\\u0000``; a text column cannot).
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from ddex_etl import state
from ddex_etl.cli import cli
from ddex_etl.errors import ExitCode

REPO = Path(__file__).resolve().parents[2]
NUL_ARTIST = 3  # the seeded artist whose name the rows query spoils


def invoke(args: list[str]) -> Result:
    return CliRunner().invoke(cli, args, catch_exceptions=False)


@pytest.fixture()
def workdir(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("ETL_") and not name.startswith("ETL_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ETL_DATABASE_URL", db_url)
    rows = (REPO / "sql" / "release_rows.sql").read_text()
    spoiled = rows.replace(
        "to_json(a.name)",
        f"CASE WHEN a.artist_id = {NUL_ARTIST} THEN '\"Nul\\u0000Name\"' ELSE to_json(a.name)::text END",
        1,
    )
    assert spoiled != rows
    (tmp_path / "rows.sql").write_text(spoiled)
    yield tmp_path


def configure(workdir: Path, *, repair: bool) -> None:
    (workdir / "etl.toml").write_text(
        '[extract]\nrows_query = "rows.sql"\nchunk_size = 10\n'
        f"[transform]\nrepair = {'true' if repair else 'false'}\n"
        "[run]\nworkers = 2\nmax_retries = 0\n"
    )


def test_a_nul_in_the_catalog_rejects_its_releases_and_the_reject_is_stored(workdir: Path) -> None:
    configure(workdir, repair=False)
    assert invoke(["seed", "--releases", "30"]).exit_code == 0
    result = invoke(["run", "--no-progress", "--json"])
    assert result.exit_code == ExitCode.REJECTED, result.output
    summary = json.loads(result.stdout)
    rejects = json.loads(invoke(["errors", "--json"]).stdout)
    assert summary["rejected"] == len(rejects) >= 1
    assert summary["built"] + summary["rejected"] == 30
    for r in rejects:
        # the message names the release and the field; the value is shown escaped
        assert r["message"].startswith(f"release {r['release_id']}: ") and ".name='Nul\\x00Name'" in r["message"]
        # the snapshot is kept, with a visible stand-in and a note saying so
        assert r["input"]["_note"] == state.UNSTORABLE_NOTE
        assert "Nul\u2400Name" in json.dumps(r["input"], ensure_ascii=False)
    assert sum(1 for _ in (workdir / "out").iterdir()) == summary["built"]


def test_with_repair_the_nul_is_removed_with_a_warning_naming_release_and_field(workdir: Path) -> None:
    configure(workdir, repair=True)
    assert invoke(["seed", "--releases", "30"]).exit_code == 0
    result = invoke(["run", "--no-progress", "--json"])
    assert result.exit_code == ExitCode.OK, result.output
    summary = json.loads(result.stdout)
    assert summary["built"] == 30 and summary["data_warnings"] >= 1
    warned = [ln for ln in result.stderr.splitlines() if "data warning: release" in ln]
    assert len(warned) == summary["data_warnings"]
    repaired = [ln for ln in warned if "removed XML-illegal control characters from 'Nul\\x00Name'" in ln]
    assert repaired and all(".name: removed" in ln for ln in repaired)
    repaired = [p.read_bytes() for p in (workdir / "out").iterdir() if b"NulName" in p.read_bytes()]
    assert repaired and not any(b"\x00" in xml for xml in repaired)


def test_storable_json_and_text() -> None:
    assert state.storable_text("a\x00b\ud800c") == "a\u2400b\ufffdc"
    assert state.storable_text("plain") == "plain"
    stored = json.loads(state.storable_json({"rows": [{"k\x00": "v\x00"}], "n": 1}) or "")
    assert stored == {"rows": [{"k\u2400": "v\u2400"}], "n": 1, "_note": state.UNSTORABLE_NOTE}
    assert json.loads(state.storable_json({"ok": "fine"}) or "") == {"ok": "fine"}
