"""DataFrame rows on their way to a worker: grouped once with pandas, shipped as column blocks.

A release in a DataFrame is a run of rows (one per track). Turning every row
into a dict in the calling process, and pickling those dicts to a worker, cost
more than building the message. Here the calling process only finds where
each release's rows are (``pandas.factorize`` over the group column: one
vectorized pass) and hands the worker a slice of the frame per chunk; the
worker turns that slice into row tuples once and gives each release's tuples
to the same records conversion as ``etl run`` (``iter_release_results``).

A ``Block`` is a DataFrame whose rows the worker converts at most once: every
release of a chunk points into the same block, so pickling the chunk sends
the block once. ``pack`` cuts a chunk's releases down to one block holding
only their rows, so a worker never receives rows of other chunks.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

# A release's rows: (block, start, stop) segments, usually one; two when the
# release straddles two frames of a stream.
Segments = tuple[tuple["Block", int, int], ...]


class Block:
    """Some rows of a DataFrame in the extract column contract, converted to tuples on first use."""

    __slots__ = ("_columns", "_rows", "frame")

    def __init__(self, frame: Any) -> None:
        self.frame = frame
        self._columns: tuple[str, ...] | None = None
        self._rows: list[tuple[Any, ...]] | None = None

    def __getstate__(self) -> Any:
        return self.frame  # the rows travel as the frame's column arrays, never as tuples

    def __setstate__(self, frame: Any) -> None:
        self.__init__(frame)  # type: ignore[misc]

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def columns(self) -> tuple[str, ...]:
        if self._columns is None:
            self._columns = tuple(str(c) for c in self.frame.columns)
        return self._columns

    def rows(self) -> list[tuple[Any, ...]]:
        if self._rows is None:
            # Column by column (each one C-level tolist: Python ints, str, floats, Timestamps), then
            # zipped into rows: half the cost of itertuples, the same values.
            frame = self.frame
            self._rows = list(zip(*(frame.iloc[:, i].tolist() for i in range(frame.shape[1]))))
        return self._rows

    def slice(self, start: int, stop: int) -> Block:
        return Block(self.frame.iloc[start:stop])


def prepared(df: Any) -> Any:
    """The frame as the records conversion wants it: numeric ICPNs given back their leading zeros."""
    if "icpn" in df.columns and df["icpn"].dtype.kind in "iuf":
        # read_csv parsed the ICPN column as numbers and dropped leading zeros
        # (0000000000208 -> 208); give those back as the 13-digit EAN form.
        df = df.assign(icpn=[icpn_text(v) for v in df["icpn"].tolist()])
    return df


def icpn_text(value: Any) -> Any:
    """A numeric ICPN as digits; fewer than 12 means zeros were lost, so pad to EAN-13.

    Leading zeros do not change a GTIN (UPC-A 012345678905 and EAN-13
    0012345678905 name the same product), so padding restores an equal code.
    """
    if value is None or isinstance(value, bool) or not isinstance(value, numbers.Real):
        return value
    if math.isnan(value) or not float(value).is_integer():  # NaN: absent; a fraction: records reports it
        return value
    digits = str(int(value))
    return digits.zfill(13) if len(digits) < 12 else digits


def plain_key(value: Any) -> Any:
    """A group key as a plain Python value: NumPy scalars unboxed, an integral float (an id column with a gap) an int."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value


def runs(df: Any, group_by: str) -> tuple[list[Any], list[int], list[int]]:
    """The frame's runs of equal ``group_by`` values: (key or None for empty, start, stop) as three lists."""
    import numpy as np
    import pandas as pd

    codes, uniques = pd.factorize(df[group_by], use_na_sentinel=True)
    n = len(codes)
    if n == 0:
        return [], [], []
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    stops = np.r_[starts[1:], n]
    keys = [None if c < 0 else plain_key(uniques[c]) for c in codes[starts].tolist()]
    return keys, starts.tolist(), stops.tolist()


def grouped(df: Any, group_by: str) -> tuple[Any, list[Any], list[int], list[int], list[int]]:
    """The frame with each release's rows together (in order of first appearance), its runs, and the empty rows.

    Rows without a ``group_by`` value come first, each a run of its own (key
    None); the last list gives their row numbers in the frame as it was.
    """
    import numpy as np
    import pandas as pd

    codes, uniques = pd.factorize(df[group_by], use_na_sentinel=True)
    order = np.argsort(codes, kind="stable")  # -1 (empty) first, then groups in first-appearance order
    if len(order) and not (order[1:] > order[:-1]).all():
        df = df.take(order)
        codes = codes[order]
    bad = int((codes < 0).sum())
    empty_rows = order[:bad].tolist()
    counts = np.bincount(codes[bad:]) if len(codes) > bad else np.zeros(0, dtype=int)
    starts = (bad + np.r_[0, np.cumsum(counts)[:-1]]).tolist() if len(counts) else []
    stops = (bad + np.cumsum(counts)).tolist() if len(counts) else []
    keys = [plain_key(u) for u in uniques]
    return df, [None] * bad + keys, list(range(bad)) + starts, list(range(1, bad + 1)) + stops, empty_rows


class RowGroup:
    """The rows of one release out of a DataFrame (``segments`` into blocks); ``key`` is its ``group_by`` value."""

    __slots__ = ("key", "segments")

    def __init__(self, key: Any, segments: Segments) -> None:
        self.key = key
        self.segments = segments

    def rows(self) -> list[dict[str, Any]]:
        return as_dicts(self.segments)


def data_of(original: Any) -> Any:
    """What ``ItemError.data`` holds for an input: a DataFrame release's rows as dicts, anything else as given."""
    return original.rows() if isinstance(original, RowGroup) else original


def release_rows(segments: Segments) -> tuple[tuple[str, ...], list[Sequence[Any]] | list[dict[str, Any]]]:
    """A release's rows for ``iter_release_results``: (columns, tuples), or (), dicts when the frames' columns differ."""
    first = segments[0][0]
    if len(segments) == 1:
        block, start, stop = segments[0]
        return block.columns, block.rows()[start:stop]
    if all(b.columns == first.columns for b, _, _ in segments):
        return first.columns, [row for b, s, e in segments for row in b.rows()[s:e]]
    return (), as_dicts(segments)


def as_dicts(segments: Segments) -> list[dict[str, Any]]:
    """A release's rows as dicts (absent values None): what ``ItemError.data`` shows."""
    out = []
    for block, start, stop in segments:
        for row in block.rows()[start:stop]:
            out.append({c: (None if _absent(v) else v) for c, v in zip(block.columns, row)})
    return out


def _absent(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or type(v).__name__ in ("NAType", "NaTType")


def pack(segment_lists: list[Segments]) -> list[Segments]:
    """The same releases pointing into one block per source block, holding only their rows."""
    spans: dict[int, list[int]] = {}
    blocks: dict[int, Block] = {}
    for segments in segment_lists:
        for block, start, stop in segments:
            span = spans.setdefault(id(block), [start, stop])
            blocks[id(block)] = block
            span[0], span[1] = min(span[0], start), max(span[1], stop)
    cut = {k: (blocks[k] if (lo, hi) == (0, len(blocks[k])) else blocks[k].slice(lo, hi), lo)
           for k, (lo, hi) in spans.items()}
    return [
        tuple((cut[id(b)][0], s - cut[id(b)][1], e - cut[id(b)][1]) for b, s, e in segments)
        for segments in segment_lists
    ]
