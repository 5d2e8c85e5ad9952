"""Releases out of a stream of DataFrames (``read_sql(..., chunksize=)``, ``read_csv(..., chunksize=)``).

pandas streams a query or a file as DataFrames of N rows each, in the extract
column contract (one row per track, the release's columns repeated). A chunk
boundary falls wherever the N-th row is, so a release can straddle two
chunks: the rows of the release at the end of a chunk are held back until the
next chunk shows a different id (or the stream ends). The rows of one release
must be contiguous in the stream (``ORDER BY release_id`` in the query): a
release whose rows come back after another release's would become two
releases, so within one chunk that is refused with a message.

Memory: one chunk's rows plus one release held back, whatever the stream's
length.
"""
from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import Any

from ..errors import ConfigError, FieldProblem
from .batch import ItemError
from .frame_rows import Block, RowGroup, prepared, runs


class BadRows(RowGroup):
    """Rows that make no release (no id, or not contiguous); ``error`` says why."""

    __slots__ = ("error",)

    def __init__(self, error: ItemError, group: RowGroup) -> None:
        super().__init__(group.key, group.segments)
        self.error = error


def is_frame(item: Any) -> bool:
    """A pandas DataFrame, without importing pandas for callers that never use it."""
    return type(item).__name__ == "DataFrame" and hasattr(item, "to_dict") and hasattr(item, "columns")


class _Grouper:
    """Cuts frames into releases, holding back the last release of each frame.

    Each frame is looked at once, vectorized (``frame_rows.runs``); its rows
    stay in the frame until a worker converts them.
    """

    def __init__(self, group_by: str) -> None:
        self.group_by = group_by
        self.pending: RowGroup | None = None
        self.rows_seen = 0
        self.frames = 0

    def _bad(self, block: Block, row: int, key: Any, message: str, problem: FieldProblem) -> BadRows:
        error = ItemError(id=key, message=message, stage="records", problems=(problem,))
        return BadRows(error, RowGroup(key, ((block, row, row + 1),)))

    def frame(self, df: Any) -> Iterator[RowGroup]:
        if self.group_by not in df.columns:
            raise ConfigError(
                f"group_by: column {self.group_by!r} is not in DataFrame #{self.frames} of the stream "
                f"(columns: {', '.join(map(str, list(df.columns)[:12]))}); fix: pass group_by= the release id column"
            )
        self.frames += 1
        block = Block(prepared(df))
        first_row, self.rows_seen = self.rows_seen, self.rows_seen + len(df)
        by = self.group_by
        closed: set[Any] = set()  # releases already complete in this frame
        for key, start, stop in zip(*runs(block.frame, by)):
            if key is None:
                for row in range(start, stop):
                    yield self._bad(block, row, None, (
                        f"row {first_row + row}: column {by!r} is empty, so the row belongs to no release; "
                        f"fix: give every row its release's {by}"
                    ), FieldProblem(by, None, "empty", f"give every row its release's {by}"))
                continue
            if self.pending is not None and self.pending.key == key:
                self.pending.segments += ((block, start, stop),)
                continue
            if self.pending is not None:
                closed.add(self.pending.key)
                yield self.pending
                self.pending = None
            if key in closed:
                for row in range(start, stop):
                    yield self._bad(block, row, key, (
                        f"release {key}: its rows are not contiguous (row {first_row + row} comes after another "
                        f"release's rows); fix: order the stream by {by} (ORDER BY in the query)"
                    ), FieldProblem(by, key, "rows not contiguous", f"order the rows by {by}"))
                continue
            self.pending = RowGroup(key, ((block, start, stop),))

    def end(self) -> Iterator[RowGroup]:
        if self.pending is not None:
            done, self.pending = self.pending, None
            yield done


def expand_frames(source: Iterable[Any], group_by: str) -> Iterator[Any]:
    """``source`` with every DataFrame in it replaced by its releases (other items pass through)."""
    if is_frame(source):
        source = [source]  # iterating a DataFrame would give its column names
    grouper = _Grouper(group_by)
    for item in source:
        if is_frame(item):
            yield from grouper.frame(item)
        else:
            yield from grouper.end()
            yield item
    yield from grouper.end()


async def aexpand_frames(source: AsyncIterable[Any], group_by: str) -> AsyncIterator[Any]:
    """``expand_frames`` for an async source."""
    grouper = _Grouper(group_by)
    async for item in source:
        if is_frame(item):
            for release in grouper.frame(item):
                yield release
        else:
            for release in grouper.end():
                yield release
            yield item
    for release in grouper.end():
        yield release
