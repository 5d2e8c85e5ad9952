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


# --------------------------------------------------------------------------- links, names read back, pending lists

BATCH = "20260101000000000"


def _loader(directory: Path, layout: str) -> FileLoader:
    loader = FileLoader(directory, layout, BATCH if layout == "ddex-batch" else None)
    loader.prepare()
    return loader


@pytest.mark.parametrize("layout", ["flat", "ddex-batch"])
def test_a_planted_temp_link_is_never_written_through(tmp_path: Path, layout: str) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"precious")
    loader = _loader(tmp_path / "out", layout)
    folder = loader.root / "0602445123456" if layout == "ddex-batch" else loader.root
    folder.mkdir(exist_ok=True)
    name = "0602445123456.xml" if layout == "ddex-batch" else "1.xml"
    pid = os.getpid()
    # The names the loader writes in this process, today's and older versions'.
    for planted in (f".{name}.{pid}{TMP_SUFFIX}", f".{name}.0-{pid}{TMP_SUFFIX}"):
        (folder / planted).symlink_to(outside)
    with pytest.raises(OutputError, match="already exists.*nothing is written through it.*fix"):
        loader.write([_out(1, "0602445123456")])
    assert outside.read_bytes() == b"precious"
    final = folder / name
    assert not final.is_symlink() and not final.exists()
    loader.prepare()  # the planted links go (a link is removed, never what it points to)
    assert outside.read_bytes() == b"precious"
    assert [p.name for p in folder.iterdir() if TMP_SUFFIX in p.name] == []
    loader.write([_out(1, "0602445123456")])
    assert final.read_bytes() == b"<m>1</m>" and not final.is_symlink()


def test_a_link_planted_at_a_final_name_is_replaced_never_written_through(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"precious")
    loader = _loader(tmp_path / "out", "flat")
    (loader.root / "1.xml").symlink_to(outside)
    loader.write([_out(1)])
    assert outside.read_bytes() == b"precious"
    assert not (loader.root / "1.xml").is_symlink() and (loader.root / "1.xml").read_bytes() == b"<m>1</m>"


def test_a_symlinked_release_folder_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    loader = _loader(tmp_path / "out", "ddex-batch")
    (loader.root / "0602445123456").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(OutputError, match=r"0602445123456: it is a symbolic link.*fix"):
        loader.write([_out(2), _out(1, "0602445123456")])
    assert list(elsewhere.iterdir()) == []
    assert not (loader.root / "2" / "2.xml").exists()  # the chunk is all or nothing
    assert not [p for p in (tmp_path / "out").rglob("*") if TMP_SUFFIX in p.name]


def test_a_symlinked_batch_folder_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / BATCH).symlink_to(elsewhere, target_is_directory=True)
    loader = FileLoader(tmp_path / "out", "ddex-batch", BATCH)
    with pytest.raises(OutputError, match=rf"{BATCH}: it is a symbolic link"):
        loader.prepare()
    with pytest.raises(OutputError, match="symbolic link"):
        loader.write([_out(1)])
    with pytest.raises(OutputError, match="symbolic link"):
        loader.finish(resumed=True)
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("layout", ["flat", "ddex-batch"])
def test_the_output_directory_itself_may_be_a_link_the_user_made(tmp_path: Path, layout: str) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "out").symlink_to(real, target_is_directory=True)
    loader = _loader(tmp_path / "out", layout)
    loader.write([_out(1)])
    loader.finish(resumed=False)
    expected = {"1.xml"} if layout == "flat" else {f"{BATCH}/1/1.xml", f"{BATCH}/BatchComplete_{BATCH}.xml"}
    assert set(_files(real)) == expected


@pytest.mark.parametrize("bad", ["../elsewhere/esc", "..", "", "2026010100000000/", "/tmp/x", None, "2026-01-01"])
def test_a_batch_id_that_is_not_17_digits_is_refused(tmp_path: Path, bad: str | None) -> None:
    with pytest.raises(OutputError, match="is not a DDEX batch id.*fix"):
        FileLoader(tmp_path, "ddex-batch", bad)
    assert list(tmp_path.iterdir()) == []


def test_an_unsafe_identifier_is_refused_even_when_built_by_hand(tmp_path: Path) -> None:
    loader = _loader(tmp_path / "out", "ddex-batch")
    with pytest.raises(OutputError, match="not a plain file name"):
        loader.write([Output(_doc(1), "../../escape")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_clean_up_removes_temp_links_but_never_follows_a_linked_folder(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    kept = elsewhere / f".x.xml.999{TMP_SUFFIX}"
    kept.write_bytes(b"not ours")
    loader = _loader(tmp_path / "out", "ddex-batch")
    (loader.root / "linked").symlink_to(elsewhere, target_is_directory=True)
    (loader.root / f".y.xml.1-999{TMP_SUFFIX}").symlink_to(kept)
    assert loader.clean_temp_files() == 1
    assert kept.read_bytes() == b"not ours"


def _chunk_written_not_settled(loader: FileLoader, outputs: list[Output]) -> None:
    """What a worker does before the main process commits the checkpoint."""
    chunk = loader.open_chunk()
    try:
        for o in outputs:
            chunk.add(o)
        chunk.commit()
    finally:
        chunk.abort()


def test_a_chunk_never_committed_is_removed_on_the_next_start_and_a_committed_one_kept(tmp_path: Path) -> None:
    loader = FileLoader(tmp_path, "ddex-batch", BATCH, run_id=7)
    loader.prepare()
    _chunk_written_not_settled(loader, [_out(1, "0602445123456"), _out(2)])  # committed, crash before settle
    _chunk_written_not_settled(loader, [_out(3), _out(4)])  # its commit never happened
    pending = sorted(p.name for p in loader.root.iterdir() if p.name.endswith(".etl-pending"))
    assert pending == [".7-1.etl-pending", ".7-3.etl-pending"]
    asked: list[list[int]] = []

    def committed(ids: list[int]) -> set[int]:
        asked.append(list(ids))
        return {i for i in ids if i in (1, 2)}

    FileLoader(tmp_path, "ddex-batch", BATCH, run_id=7).prepare(run_id=7, committed=committed)
    assert asked == [[1, 2], [3, 4]]
    assert sorted(_files(loader.root)) == ["0602445123456/0602445123456.xml", "2/2.xml"]
    assert sorted(p.name for p in loader.root.iterdir()) == ["0602445123456", "2"]  # empty folders go too


def test_settle_drops_the_pending_list_of_a_committed_chunk(tmp_path: Path) -> None:
    loader = FileLoader(tmp_path, "ddex-batch", BATCH, run_id=3)
    loader.prepare()
    chunk = loader.open_chunk()
    chunk.add(_out(5))
    written = chunk.commit()
    assert (loader.root / ".3-5.etl-pending").read_text() == "5\t5\n"
    loader.settle(written)
    assert sorted(_files(loader.root)) == ["5/5.xml"]
