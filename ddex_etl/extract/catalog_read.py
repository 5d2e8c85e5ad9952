"""Table-by-table read of the reference catalog: the default extract's fast path.

The row contract (``docs/column-contract.md``, ``sql/release_rows.sql``) is one
row per track with the release's artists and deals folded into JSON text. It
lets a user point the connector at any schema, but on the reference catalog
the server spends most of a chunk building that JSON (about 0.4 ms of CPU per
twelve-track release, measured), on the same cores the builder needs.

When no rows query is configured, ``fetch_chunk`` reads the reference schema
with the five plain indexed queries under ``sql/chunk/`` (no JSON; each
track's credits folded into one short text), all in one REPEATABLE READ
transaction so the pieces agree, and assembles the records here. Conversions and checks are the row
contract's own (``records.release_from_parts``): both paths give equal
``Release`` records and the same refusals, which tests/extract/test_catalog_read.py
checks on a catalog with bad values in it.
"""
from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

import psycopg
import sqlalchemy as sa

from .. import data_dir
from ..errors import ReleaseDataError, TerminalError
from ..models import Contributor, CoverImage, Deal, Label, Release, Track
from . import records

CHUNK_SQL_DIR = data_dir("sql") / "chunk"
PIECES = ("releases", "tracks", "release_artists", "artists", "deals")


@functools.lru_cache(maxsize=None)
def chunk_queries() -> dict[str, str]:
    """The piece queries (``PIECES``) in psycopg's paramstyle, read once per process."""
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
    query's rows are read whole, a chunk at a time. A release whose values
    are all clean (the common case) is assembled here directly; any other
    goes through ``records.release_from_parts``, which converts, repairs or
    refuses exactly as the row contract does.
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
        texts = {row[15] for row in track_rows}
        texts.discard(None)
        # Every credits text starts its items with the artist id (a stray match
        # inside an escaped role only fetches one artist too many).
        artist_ids = {int(x) for x in _ITEM_ID.findall(",".join(texts))}
        artist_ids.update(row[1] for row in ra_rows)
        cur.execute(q["artists"], {"artist_ids": "{" + ",".join(map(str, sorted(artist_ids))) + "}"})
        artists = {row[0]: row for row in cur.fetchall()}

    # One record per distinct (artist, role, sequence) in the chunk: albums
    # repeat their line-up on every track. Value: (record or, when a value
    # needs the contract's checks, a dict; the artist's updated_at).
    memo: dict[tuple[int, str, int], tuple[Any, Any] | None] = {}

    def credit(aid: int, role: str, seq: int) -> tuple[Any, Any] | None:
        key = (aid, role, seq)
        try:
            return memo[key]
        except KeyError:
            pass
        artist = artists.get(aid)
        if artist is None:  # gone from artists: the row contract's inner join drops it too
            memo[key] = None
            return None
        _, name, isni, upd = artist
        if name and role:
            c: Any = Contributor(aid, name, role, seq, isni or None)
        else:
            c = {"artist_id": aid, "name": name, "role": role, "sequence": seq, "isni": isni}
        memo[key] = hit = (c, upd)
        return hit

    # credits text -> (records, latest updated_at among their artists, all records clean)
    lineups: dict[str, tuple[tuple[Any, ...], Any, bool]] = {}
    for text in texts:
        out = []
        stamp = None
        clean = True
        if "\\" in text:
            keys = _parse_credits(text)
        else:
            keys = []
            for item in text.split(","):
                aid, seq, role = item.split(" ", 2)
                keys.append((int(seq), role, int(aid)))
            keys.sort()  # credit order: the server aggregates unsorted (see tracks.sql)
        for seq, role, aid in keys:
            hit = credit(aid, role, seq)
            if hit is None:
                continue
            c, upd = hit
            out.append(c)
            if type(c) is not Contributor:
                clean = False
            if upd is not None and (stamp is None or upd > stamp):
                stamp = upd
        lineups[text] = (tuple(out), stamp, clean)

    # release id -> [records, latest change, all clean]
    release_artists: dict[int, list[Any]] = {}
    for rid, aid, role, seq, upd in ra_rows:
        hit = credit(aid, role, seq)
        if hit is None:
            continue
        c, a_upd = hit
        entry = release_artists.get(rid)
        if entry is None:
            entry = release_artists[rid] = [[], None, True]
        entry[0].append(c)
        entry[1] = _later(_later(entry[1], upd), a_upd)
        if type(c) is not Contributor:
            entry[2] = False

    deals: dict[int, list[Any]] = {}
    for rid, deal_id, territories, model, use_types, start, end, upd, price_code, price, currency in deal_rows:
        entry = deals.get(rid)
        if entry is None:
            entry = deals[rid] = [[], None, True]
        if model and _clean_codes(territories) and _clean_codes(use_types):
            entry[0].append(Deal(deal_id, tuple(territories), model, tuple(use_types), start, end, upd, price_code, price, currency))
        else:
            entry[0].append({
                "deal_id": deal_id, "territories": territories, "commercial_model": model,
                "use_types": use_types, "start_date": start, "end_date": end, "updated_at": upd,
                "price_code": price_code, "wholesale_price": price, "currency": currency,
            })
            entry[2] = False
        entry[1] = _later(entry[1], upd)

    # release id -> [Track records (None once one needs the slow path), its track rows, latest change]
    tracks_of: dict[int, list[Any]] = {}
    no_credits: tuple[tuple[Any, ...], Any, bool] = ((), None, True)
    for row in track_rows:
        (rid, track_id, disc, number, isrc, title, version, duration, genre, warning,
         pyear, ptext, audio, md5, stamp, text) = row
        contributors, a_stamp, clean = no_credits if text is None else lineups[text]
        if a_stamp is not None and (stamp is None or a_stamp > stamp):
            stamp = a_stamp
        entry = tracks_of.get(rid)
        if entry is None:
            entry = tracks_of[rid] = [[], [row], stamp]
        else:
            entry[1].append(row)
            if stamp is not None and (entry[2] is None or stamp > entry[2]):
                entry[2] = stamp
        done = entry[0]
        if done is not None:
            if clean and (duration is None or duration >= 0):
                # exactly records._track's reading of clean values
                done.append(Track(
                    track_id, disc, number, isrc or None, title or None, version or None, duration, genre or None,
                    warning or None, pyear, ptext or None, audio or None, md5 or None, contributors,
                ))
            else:
                entry[0] = None

    releases: list[Release] = []
    rejects: list[ReleaseDataError] = []
    cache: dict[Any, Any] = {}
    none: list[Any] = [(), None, True]
    no_tracks: list[Any] = [[], [], None]
    for r in release_rows:
        rid = r[0]
        ra, ra_stamp, ra_clean = release_artists.get(rid, none)
        dl, deal_stamp, deals_clean = deals.get(rid, none)
        done, raw_tracks, track_stamp = tracks_of.get(rid, no_tracks)
        changed = _later(_later(_later(r[20], ra_stamp), deal_stamp), track_stamp)
        cover_file, cover_md5, cover_w, cover_h, cover_mime = r[22:27]
        if cover_file is None and cover_md5 is None and cover_w is None and cover_h is None and cover_mime is None:
            cover: CoverImage | None = None
        elif (
            type(cover_file) is str and cover_file and type(cover_md5) is str and cover_md5
            and type(cover_mime) is str and cover_mime and type(cover_w) in _INTN and type(cover_h) in _INTN
        ):
            cover = CoverImage(cover_file, cover_md5, cover_w, cover_h, cover_mime)
        else:
            cover = _UNSURE
        label_id, label_name = r[7], r[8]
        if label_id is None and label_name is None:
            label: Label | None = None
        elif label_id is not None and label_name:
            label = Label(label_id, label_name, r[9] or None)
        else:
            label = _UNSURE
        if done is not None and ra_clean and deals_clean and label is not _UNSURE and cover is not _UNSURE:
            # exactly records._release_parts' reading of clean values
            releases.append(Release(
                release_id=rid, title=r[4] or None, release_type=r[6] or None, icpn=r[1] or None,
                grid=r[2] or None, catalog_number=r[3] or None, version_title=r[5] or None, label=label,
                genre=r[10] or None, subgenre=r[11] or None, release_date=r[12], original_release_date=r[13],
                p_line_year=r[14], p_line_text=r[15] or None, c_line_year=r[16], c_line_text=r[17] or None,
                parental_warning=r[18] or None, language=r[19] or None, artists=tuple(ra), tracks=tuple(done),
                deals=tuple(dl), updated_at=changed, deleted_at=r[21], cover_image=cover,
            ))
            continue
        head = (*r[:20], tuple(ra), tuple(dl), changed, r[21], *r[22:27])
        parts = [(*t[1:14], no_credits[0] if t[15] is None else lineups[t[15]][0]) for t in raw_tracks]
        try:
            releases.append(records.release_from_parts(rid, head, parts, cache))
        except ReleaseDataError as exc:
            rejects.append(exc)
    return releases, rejects


_UNSURE: Any = object()
_INTN = (int, type(None))
_ITEM_ID = re.compile(r"(?:^|,)(-?[0-9]+) ")


def _parse_credits(text: str) -> list[tuple[int, str, int]]:
    """'40 2 Composer,12 1 MainArtist' -> [(1, 'MainArtist', 12), (2, 'Composer', 40)]: (sequence, role, artist id), sorted."""
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
        out.append((int(seq), role, int(aid)))
    out.sort()
    return out


def _clean_codes(v: Any) -> bool:
    if type(v) is not list:
        return False
    for x in v:
        if type(x) is not str:
            return False
    return True
