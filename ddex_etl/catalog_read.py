"""Table-by-table read of the reference catalog: the default extract's fast path.

The row contract (``docs/column-contract.md``, ``sql/release_rows.sql``) is one
row per track with the release's artists and deals folded into JSON text. It
lets a user point the connector at any schema, but on the reference catalog
the server spends most of a chunk building that JSON (about 0.4 ms of CPU per
twelve-track release, measured), on the same cores the builder needs.

When no rows query is configured, ``fetch_chunk`` reads the six tables of the
reference schema with the plain indexed queries under ``sql/chunk/`` (no
aggregation, no JSON), all in one REPEATABLE READ transaction so the pieces
agree, and assembles the records here. Conversions and checks are the row
contract's own (``records.release_from_parts``): both paths give equal
``Release`` records and the same refusals, which tests/test_catalog_read.py
checks on a catalog with bad values in it.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa

from . import records
from .errors import ReleaseDataError, TerminalError
from .models import Contributor, Deal, Release

CHUNK_SQL_DIR = Path(__file__).resolve().parent.parent / "sql" / "chunk"
PIECES = ("releases", "tracks", "release_artists", "artists", "deals")


@functools.lru_cache(maxsize=None)
def chunk_queries() -> dict[str, str]:
    """The six piece queries in psycopg's paramstyle, read once per process."""
    from sqlalchemy.dialects.postgresql import psycopg as pg_dialect

    out = {}
    for name in PIECES:
        path = CHUNK_SQL_DIR / f"{name}.sql"
        try:
            text = path.read_text(encoding="utf-8").strip().rstrip(";")
        except OSError as exc:
            raise TerminalError(
                f"cannot read the packaged extract query {path}: {exc.strerror or exc}; fix: reinstall ddex-etl"
            ) from exc
        out[name] = str(sa.text(text).compile(dialect=pg_dialect.dialect()))
    return out


def _later(a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None or b <= a:
        return a
    return b


def fetch_chunk(
    dbapi: psycopg.Connection[Any], release_ids: Sequence[int]
) -> tuple[list[Release], list[ReleaseDataError]]:
    """Read and assemble the releases of ``release_ids``: ``(releases, rejects)``, in release id order.

    The caller owns the transaction (see ``extract.fetch_releases``); each
    query's rows are read whole, a chunk at a time.
    """
    q = chunk_queries()
    # The ids travel as one array literal: psycopg dumps a list element by element.
    params = {"release_ids": "{" + ",".join(str(int(r)) for r in release_ids) + "}"}
    # Binary results: numbers and timestamps arrive without text parsing.
    with dbapi.cursor(binary=True) as cur:
        cur.execute(q["releases"], params)
        release_rows = cur.fetchall()
        if not release_rows:
            return [], []
        cur.execute(q["tracks"], params)
        track_rows = cur.fetchall()
        cur.execute(q["release_artists"], params)
        ra_rows = cur.fetchall()
        cur.execute(q["deals"], params)
        deal_rows = cur.fetchall()
        # credits text -> ((artist_id, role, sequence), ...), parsed once per distinct line-up
        parsed: dict[str, tuple[tuple[int, str, int], ...]] = {}
        artist_ids: set[int] = {row[1] for row in ra_rows}
        for row in track_rows:
            text = row[15]
            if text is not None and text not in parsed:
                keys = parsed[text] = _parse_credits(text)
                artist_ids.update(k[0] for k in keys)
        cur.execute(q["artists"], {"artist_ids": "{" + ",".join(map(str, sorted(artist_ids))) + "}"})
        artists = {row[0]: row for row in cur.fetchall()}

    # One record per distinct (artist, role, sequence) in the chunk: albums
    # repeat their line-up on every track. Value: (record, artist's updated_at).
    memo: dict[tuple[int, str, int], tuple[Any, Any]] = {}

    def credit(key: tuple[int, str, int]) -> tuple[Any, Any] | None:
        hit = memo.get(key)
        if hit is not None:
            return hit
        aid, role, seq = key
        artist = artists.get(aid)
        if artist is None:  # gone from artists: the row contract's inner join drops it too
            return None
        _, name, isni, upd = artist
        if name and role:
            c: Any = Contributor(aid, name, role, seq, isni or None)
        else:  # let the contract's checks name the problem
            c = {"artist_id": aid, "name": name, "role": role, "sequence": seq, "isni": isni}
        memo[key] = hit = (c, upd)
        return hit

    # credits text -> (records, latest updated_at among their artists)
    lineups: dict[str, tuple[tuple[Any, ...], Any]] = {}

    def lineup(text: str) -> tuple[tuple[Any, ...], Any]:
        out = []
        stamp = None
        for key in parsed[text]:
            hit = credit(key)
            if hit is not None:
                out.append(hit[0])
                stamp = _later(stamp, hit[1])
        lineups[text] = result = (tuple(out), stamp)
        return result

    release_artists: dict[int, tuple[list[Any], Any]] = {}
    for rid, aid, role, seq, upd in ra_rows:
        hit = credit((aid, role, seq))
        if hit is None:
            continue
        entry = release_artists.get(rid)
        if entry is None:
            entry = release_artists[rid] = ([], None)
        entry[0].append(hit[0])
        release_artists[rid] = (entry[0], _later(_later(entry[1], upd), hit[1]))

    deals: dict[int, tuple[list[Any], Any]] = {}
    for rid, deal_id, territories, model, use_types, start, end, upd in deal_rows:
        if model and _clean_codes(territories) and _clean_codes(use_types):
            d: Any = Deal(deal_id, tuple(territories), model, tuple(use_types), start, end, upd)
        else:
            d = {
                "deal_id": deal_id, "territories": territories, "commercial_model": model,
                "use_types": use_types, "start_date": start, "end_date": end, "updated_at": upd,
            }
        entry = deals.get(rid)
        if entry is None:
            deals[rid] = ([d], upd)
        else:
            entry[0].append(d)
            deals[rid] = (entry[0], _later(entry[1], upd))

    tracks_of: dict[int, list[tuple[Any, ...]]] = {}
    track_stamp: dict[int, Any] = {}
    get_lineup = lineups.get
    for row in track_rows:
        rid = row[0]
        text = row[15]
        stamp = row[14]
        if text is None:
            contributors: tuple[Any, ...] = ()
        else:
            contributors, a_stamp = get_lineup(text) or lineup(text)
            stamp = _later(stamp, a_stamp)
        t = (*row[1:14], contributors)
        lst = tracks_of.get(rid)
        if lst is None:
            tracks_of[rid] = [t]
            track_stamp[rid] = stamp
        else:
            lst.append(t)
            track_stamp[rid] = _later(track_stamp[rid], stamp)

    releases: list[Release] = []
    rejects: list[ReleaseDataError] = []
    cache: dict[Any, Any] = {}
    empty: tuple[list[Any], Any] = ([], None)
    for r in release_rows:
        rid = r[0]
        ra, ra_stamp = release_artists.get(rid, empty)
        dl, deal_stamp = deals.get(rid, empty)
        changed = _later(_later(_later(r[20], ra_stamp), deal_stamp), track_stamp.get(rid))
        head = (*r[:20], tuple(ra), tuple(dl), changed, r[21])
        try:
            releases.append(records.release_from_parts(rid, head, tracks_of.get(rid, ()), cache))
        except ReleaseDataError as exc:
            rejects.append(exc)
    return releases, rejects


def _parse_credits(text: str) -> tuple[tuple[int, str, int], ...]:
    """'12 1 MainArtist,40 2 Composer' -> ((12, 'MainArtist', 1), (40, 'Composer', 2)); see tracks.sql."""
    if "\\" not in text:
        items = text.split(",")
    else:  # a role held ',' or '\': undo tracks.sql's escaping
        items, current, escaped = [], [], False
        for ch in text:
            if escaped:
                current.append(ch)
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == ",":
                items.append("".join(current))
                current = []
            else:
                current.append(ch)
        items.append("".join(current))
    out = []
    for item in items:
        aid, seq, role = item.split(" ", 2)
        out.append((int(aid), role, int(seq)))
    return tuple(out)


def _clean_codes(v: Any) -> bool:
    if type(v) is not list:
        return False
    for x in v:
        if type(x) is not str:
            return False
    return True
