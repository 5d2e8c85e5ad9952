"""Loaders: atomic files in both layouts, the table upsert, output faults."""
from __future__ import annotations

import hashlib
import os
import resource
from pathlib import Path

import pytest
import sqlalchemy as sa

from ddex_etl import state
from ddex_etl.db import make_engine
from ddex_etl.errors import OutputError
from ddex_etl.load import (
    TMP_SUFFIX,
    FileLoader,
    Output,
    TableLoader,
    new_batch_id,
    release_identifier,
)
from ddex_etl.models import Document
import datetime as dt


def _doc(release_id: int, body: bytes | None = None) -> Document:
    xml = body if body is not None else f"<m>{release_id}</m>".encode()
    return Document(release_id, "4.3", f"M{release_id}", xml, hashlib.sha256(xml).hexdigest())


def _out(release_id: int, icpn: str | None = None, body: bytes | None = None) -> Output:
    return Output(_doc(release_id, body), release_identifier(release_id, icpn))


@pytest.mark.parametrize(
    ("release_id", "icpn", "grid", "expected"),
    [
        (1, "0602445123456", None, "0602445123456"),
        (2, None, "A10302B0001234567A", "A10302B0001234567A"),
        (3, None, None, "3"),
        (4, "  0602445123456 ", None, "0602445123456"),
        (5, "../../etc/passwd", None, "5"),  # never a path outside the batch
        (6, "", "", "6"),
    ],
)
def test_release_identifier(release_id: int, icpn: str | None, grid: str | None, expected: str) -> None:
    assert release_identifier(release_id, icpn, grid) == expected


def test_batch_id_is_creation_time_to_the_millisecond() -> None:
    when = dt.datetime(2026, 3, 4, 5, 6, 7, 89_123, tzinfo=dt.timezone.utc)
    assert new_batch_id(when) == "20260304050607089"
    assert len(new_batch_id()) == 17


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_flat_layout_writes_one_file_per_release(tmp_path: Path) -> None:
    loader = FileLoader(tmp_path / "out", "flat")
    loader.prepare()
    written = loader.write([_out(1), _out(2, "0602445123456")])
    assert [w.where for w in written] == ["1.xml", "2.xml"]
    assert _files(tmp_path / "out") == {"1.xml": b"<m>1</m>", "2.xml": b"<m>2</m>"}
    loader.finish(resumed=False)  # flat: nothing more
    assert len(_files(tmp_path / "out")) == 2


def test_ddex_batch_layout_and_batch_complete_last(tmp_path: Path) -> None:
    loader = FileLoader(tmp_path, "ddex-batch", "20260101000000000")
    loader.prepare()
    loader.write([_out(1, "0602445123456"), _out(2)])
    root = tmp_path / "20260101000000000"
    assert not (root / "BatchComplete_20260101000000000.xml").exists()
    assert _files(root) == {"0602445123456/0602445123456.xml": b"<m>1</m>", "2/2.xml": b"<m>2</m>"}
    loader.finish(resumed=False)
    marker = root / "BatchComplete_20260101000000000.xml"
    assert marker.is_file() and marker.stat().st_size == 0


def test_rewriting_a_chunk_replaces_files_in_place(tmp_path: Path) -> None:
    loader = FileLoader(tmp_path, "flat")
    loader.prepare()
    loader.write([_out(1, body=b"old")])
    loader.write([_out(1, body=b"new")])
    assert _files(tmp_path) == {"1.xml": b"new"}


@pytest.mark.parametrize("layout", ["flat", "ddex-batch"])
def test_prepare_removes_temp_files_a_crash_left(tmp_path: Path, layout: str) -> None:
    loader = FileLoader(tmp_path, layout, "20260101000000000" if layout == "ddex-batch" else None)
    loader.prepare()
    loader.write([_out(1)])
    folder = loader.root / "1" if layout == "ddex-batch" else loader.root
    (folder / f".2.xml.999{TMP_SUFFIX}").write_bytes(b"<half")
    (loader.root / f".3.xml.999{TMP_SUFFIX}").write_bytes(b"<ha")
    (tmp_path / "unrelated.txt").write_text("kept")
    loader.prepare()
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(TMP_SUFFIX)]
    assert (tmp_path / "unrelated.txt").exists()


def test_resumed_batch_drops_empty_release_folders_before_completing(tmp_path: Path) -> None:
    loader = FileLoader(tmp_path, "ddex-batch", "20260101000000000")
    loader.prepare()
    loader.write([_out(1)])
    (loader.root / "left_by_a_crash").mkdir()
    loader.finish(resumed=True)
    assert sorted(p.name for p in loader.root.iterdir()) == ["1", "BatchComplete_20260101000000000.xml"]


def test_missing_output_parent_is_an_output_error(tmp_path: Path) -> None:
    loader = FileLoader(tmp_path / "no" / "such" / "dir", "flat")
    with pytest.raises(OutputError, match="does not exist.*fix"):
        loader.prepare()


def test_output_directory_that_is_a_file_is_an_output_error(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("")
    with pytest.raises(OutputError, match="not a directory"):
        FileLoader(tmp_path / "out", "flat").prepare()


def test_file_size_limit_fails_cleanly_without_temp_files(tmp_path: Path) -> None:
    loader = FileLoader(tmp_path, "flat")
    loader.prepare()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
    try:
        with pytest.raises(OutputError, match="file size.*fix"):
            loader.write([_out(1), _out(2, body=b"x" * 10_000)])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    names = os.listdir(tmp_path)
    assert not [n for n in names if n.endswith(TMP_SUFFIX)]
    assert "2.xml" not in names  # never a partial file under its final name


def test_table_loader_upserts_one_row_per_release(db_url: str) -> None:
    engine = make_engine(db_url, pool_size=2)
    try:
        state.upgrade(engine, "ddex_etl")
        for table in ("documents", "custom_out"):
            loader = TableLoader("ddex_etl", table)
            loader.prepare(engine)
            with engine.begin() as conn:
                loader.write([_out(1, body=b"a"), _out(2)], conn=conn, run_id=1)
            with engine.begin() as conn:
                loader.write([_out(1, body=b"b")], conn=conn, run_id=2)
            with engine.connect() as conn:
                rows = conn.execute(
                    sa.text(f"SELECT release_id, document, run_id, checksum FROM ddex_etl.{table} ORDER BY 1")
                ).all()
            assert [(r[0], bytes(r[1]), r[2]) for r in rows] == [(1, b"b", 2), (2, b"<m>2</m>", 1)]
            assert rows[0][3] == hashlib.sha256(b"b").hexdigest()
    finally:
        engine.dispose()


def test_table_loader_rolls_back_with_the_transaction(db_url: str) -> None:
    engine = make_engine(db_url, pool_size=2)
    try:
        state.upgrade(engine, "ddex_etl")
        loader = TableLoader("ddex_etl")
        with pytest.raises(RuntimeError), engine.begin() as conn:
            loader.write([_out(1)], conn=conn, run_id=1)
            raise RuntimeError("crash before the checkpoint commits")
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM ddex_etl.documents")).scalar() == 0
    finally:
        engine.dispose()
