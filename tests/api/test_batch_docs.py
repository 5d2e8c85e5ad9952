"""Every Python example of the Python API docs (and the README's Python API section) runs as written."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "python-api.md"
README = REPO / "README.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks(markdown: str) -> list[str]:
    return BLOCK.findall(markdown)


def readme_section(text: str, title: str = "## Python API") -> str:
    """The text of one ``## `` section of the README, up to the next one."""
    start = text.find(f"\n{title}\n")
    if start < 0:
        return ""
    rest = text[start + len(title) + 2 :]
    following = re.search(r"^## ", rest, re.M)
    return rest[: following.start()] if following else rest


@pytest.fixture()
def workdir(tmp_path: Path, db_url: str, schema_dir: Path) -> Path:
    """What the examples expect in the current folder: releases.csv and ddex-schemas/."""
    from ddex_etl.db import make_engine
    from ddex_etl.demo.seed import SQL_DIR, seed_catalog

    engine = make_engine(db_url)
    try:
        seed_catalog(engine, releases=30, seed=3)
        query = sa.text((SQL_DIR / "release_rows.sql").read_text(encoding="utf-8"))
        with engine.connect() as conn:
            ids = list(conn.execute(sa.text("SELECT release_id FROM releases ORDER BY 1")).scalars())
            pd.read_sql(query, conn, params={"release_ids": ids}).to_csv(tmp_path / "releases.csv", index=False)
    finally:
        engine.dispose()
    (tmp_path / "ddex-schemas").symlink_to(schema_dir, target_is_directory=True)
    return tmp_path


def run_examples(blocks: list[str], workdir: Path) -> subprocess.CompletedProcess[str]:
    """Run the blocks in order as one script, as a user would paste them into a file."""
    script = workdir / "examples.py"
    script.write_text("\n\n".join(blocks), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-W", "error", str(script)], cwd=workdir, env=env,
        capture_output=True, text=True, timeout=300, check=False,
    )


def test_the_python_api_doc_examples_run(workdir: Path) -> None:
    blocks = python_blocks(DOC.read_text(encoding="utf-8"))
    assert len(blocks) >= 6
    done = run_examples(blocks, workdir)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "; 0 refused" in done.stdout and "refused:" not in done.stdout  # the demo CSV builds cleanly
    assert len(list((workdir / "out" / "messages").iterdir())) == 1000


def test_the_readme_python_api_examples_run(workdir: Path) -> None:
    if not README.is_file():
        pytest.skip("no README.md yet")
    section = readme_section(README.read_text(encoding="utf-8"))
    blocks = python_blocks(section)
    if not blocks:
        pytest.skip("the README's Python API section has no examples yet")
    done = run_examples(blocks, workdir)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.mark.parametrize(
    "markdown, expected",
    [
        ("text\n```python\nx = 1\n```\nmore\n```python\ny = 2\n```\n", ["x = 1\n", "y = 2\n"]),
        ("```bash\netl run\n```\n```\nplain\n```\n", []),
    ],
)
def test_python_blocks_are_found(markdown: str, expected: list[str]) -> None:
    assert python_blocks(markdown) == expected
