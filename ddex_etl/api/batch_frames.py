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
from .batch import ItemError, _icpn_text


class RowGroup(list):  # type: ignore[type-arg]
    """The rows of one release (dicts in the column contract); ``key`` is its ``group_by`` value."""

    def __init__(self, key: Any, rows: list[dict[str, Any]]) -> None:
        super().__init__(rows)
        self.key = key


class BadRows(list):  # type: ignore[type-arg]
    """Rows that make no release (no id, or not contiguous); ``error`` says why."""

    def __init__(self, error: ItemError, rows: list[dict[str, Any]]) -> None:
        super().__init__(rows)
        self.error = error


def is_frame(item: Any) -> bool:
    """A pandas DataFrame, without importing pandas for callers that never use it."""
    return type(item).__name__ == "DataFrame" and hasattr(item, "to_dict") and hasattr(item, "columns")


class _Grouper:
    """Cuts frames into releases, holding back the last release of each frame."""

    def __init__(self, group_by: str) -> None:
        self.group_by = group_by
        self.pending: RowGroup | None = None
        self.rows_seen = 0
        self.frames = 0

    def frame(self, df: Any) -> Iterator[RowGroup | BadRows]:
        if self.group_by not in df.columns:
            raise ConfigError(
                f"group_by: column {self.group_by!r} is not in DataFrame #{self.frames} of the stream "
                f"(columns: {', '.join(map(str, list(df.columns)[:12]))}); fix: pass group_by= the release id column"
            )
        self.frames += 1
        # NaN/NaT -> None once, vectorized, so the records code sees "absent" whatever the dtype.
        frame = df.astype(object).where(df.notna(), None)
        if "icpn" in df.columns and df["icpn"].dtype.kind in "iuf":
            frame["icpn"] = [_icpn_text(v) for v in frame["icpn"]]
        closed: set[Any] = set()  # releases already complete in this frame
        for row in frame.to_dict("records"):
            number = self.rows_seen
            self.rows_seen += 1
            key = row.get(self.group_by)
            if isinstance(key, float) and key.is_integer():
                key = int(key)  # an id column with a gap in it reads as float
            if key is None:
                yield BadRows(ItemError(
                    id=None,
                    message=(
                        f"row {number}: column {self.group_by!r} is empty, so the row belongs to no release; "
                        f"fix: give every row its release's {self.group_by}"
                    ),
                    stage="records",
                    problems=(FieldProblem(self.group_by, None, "empty", f"give every row its release's {self.group_by}"),),
                ), [row])
                continue
            if self.pending is not None and self.pending.key == key:
                self.pending.append(row)
                continue
            if self.pending is not None:
                closed.add(self.pending.key)
                yield self.pending
            if key in closed:
                yield BadRows(ItemError(
                    id=key,
                    message=(
                        f"release {key}: its rows are not contiguous (row {number} comes after another "
                        f"release's rows); fix: order the stream by {self.group_by} (ORDER BY in the query)"
                    ),
                    stage="records",
                    problems=(FieldProblem(self.group_by, key, "rows not contiguous",
                                           f"order the rows by {self.group_by}"),),
                ), [row])
                self.pending = None
                continue
            self.pending = RowGroup(key, [row])

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
