"""The docs show real trees: the batch drawn in docs/delivery.md and in the README is the one `etl seed` and one
`etl run` write (release folders, messages, resource names and the URIs in the message), so the next renaming of
demo media or resources breaks this test instead of the docs."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from etl_cli import etl
from lxml import etree

REPO = Path(__file__).resolve().parent.parent
DOCS = {"docs/delivery.md": (REPO / "docs" / "delivery.md").read_text(encoding="utf-8"),
        "README.md": (REPO / "README.md").read_text(encoding="utf-8")}
TOML = """
[transform]
sender_dpid = "PADPIDA2014040101Z"
sender_name = "Aurora Records"
[load]
directory = "out"
layout = "ddex-batch"
media_root = "media"
[run]
workers = 1
[[recipients]]
name = "store-a"
dpid = "PADPIDA0000000010M"
"""


def batch_trees(text: str) -> list[str]:
    """The code blocks that draw a batch (they end with its BatchComplete file)."""
    blocks, current = [], None
    for line in text.splitlines():
        if line.startswith("```"):
            if current is None:
                current = [] if line == "```" else ["<not a drawing>"]
            else:
                blocks.append("\n".join(current))
                current = None
        elif current is not None:
            current.append(line)
    return [b for b in blocks if "BatchComplete_" in b and not b.startswith("<not a drawing>")]


def drawn(block: str) -> tuple[str, str, dict[str, list[str]], set[str], str]:
    """(batch path, drawn release folder, {folder: its files}, URIs the drawing names, BatchComplete file name)."""
    lines = block.splitlines()
    batch = lines[0].split()[0].rstrip("/")
    folders: dict[str, list[str]] = {}
    current = None
    for line in lines[1:]:
        if m := re.fullmatch(r"  ([^ /]+)/(…)?.*", line):
            current = m.group(1)
            folders[current] = []
        elif (m := re.fullmatch(r"    (\S+).*", line)) and current is not None and m.group(1) != "…":
            folders[current].append(m.group(1))
    complete = next(w for w in block.split() if w.startswith("BatchComplete_"))
    uris = set(re.findall(r"<URI>([^<]+)</URI>", block)) | set(re.findall(r'"(resources/[^"]+)"', block))
    first = next(f for f, files in folders.items() if files)
    return batch, first, folders, uris, complete


def test_every_doc_draws_its_batch_the_same_way() -> None:
    found = {name: [drawn(b) for b in batch_trees(text)] for name, text in DOCS.items()}
    assert all(len(trees) == 1 for trees in found.values()), {n: len(t) for n, t in found.items()}
    (_, rel_a, folders_a, uris_a, _), (_, rel_b, folders_b, uris_b, _) = found["docs/delivery.md"][0], found["README.md"][0]
    assert (rel_a, folders_a[rel_a], uris_a) == (rel_b, folders_b[rel_b], uris_b)


@pytest.mark.parametrize("doc", sorted(DOCS))
def test_the_batch_a_doc_draws_is_the_one_seed_and_run_write(doc: str, db_url: str, tmp_path: Path) -> None:
    batch, release, folders, uris, complete = drawn(batch_trees(DOCS[doc])[0])
    env = {"ETL_DATABASE_URL": db_url}
    (tmp_path / "etl.toml").write_text(TOML, encoding="utf-8")
    seeded = etl(tmp_path, "seed", "--releases", "2", env=env)
    assert seeded.returncode == 0, seeded.stderr
    ran = etl(tmp_path, "run", "--no-progress", env=env)
    assert ran.returncode == 0, ran.stderr

    recipient_dir = tmp_path / Path(batch).parent
    [real_batch] = [p for p in recipient_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
    shape = re.sub(r"\d", "9", Path(batch).name)
    assert re.sub(r"\d", "9", real_batch.name) == shape, f"{doc}: batch folder {real_batch.name} is not like {batch}"
    assert complete.replace(Path(batch).name, real_batch.name) in os.listdir(real_batch)
    assert set(folders) <= set(os.listdir(real_batch)), f"{doc} draws release folders the run does not write"

    real = real_batch / release
    files = sorted(str(p.relative_to(real)) for p in real.rglob("*") if p.is_file())
    assert files == sorted(folders[release]), f"{doc}: the drawn release folder differs from the real one"
    message = etree.parse(str(real / f"{release}.xml"))
    real_uris = {e.text for e in message.iter() if isinstance(e.tag, str) and etree.QName(e).localname == "URI"}
    assert real_uris == uris, f"{doc}: the URIs drawn differ from the message's"


def test_what_the_quick_start_writes_is_ignored_by_git() -> None:
    """`etl seed` and `etl run` in the checkout write ./media, ./out and ./.etl: none of it shows in `git status`."""
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    for path in ("media/audio/01-01.wav", "media/covers/cover-3000.jpg", "out/1.xml", ".etl/pgdata/PG_VERSION"):
        proc = subprocess.run(["git", "-C", str(REPO), "check-ignore", "-q", path], check=False)
        assert proc.returncode == 0, f"{path} is not ignored by .gitignore"
