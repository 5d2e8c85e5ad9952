"""Rows and dicts -> frozen ``Release`` records (shared by extract and the batch API).

The extract column contract (``docs/column-contract.md``) is one row per
track with the release's columns repeated, rows of one release contiguous.
``releases_from_rows`` groups such rows; ``release_from_dict`` converts one
release given as a nested dict.

Values arrive in whatever shape the source gives: psycopg hands over Python
types (and JSON as lists, or as text when the extract asks for it), a CSV read
with pandas gives strings, NumPy numbers and NaN. Everything is converted
here, once. Absent is ``None``, NaN or ``''``. A value that cannot be
converted never crashes the caller: the release is refused with a
``ReleaseDataError`` naming the release, the field, the value and the fix, so
the caller rejects that release and carries on.

This is the extract's hot path (one call per track row), so the common case,
values already of the right type, costs one ``type(...) is`` test per field.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import operator
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any

from ..errors import FieldProblem, ReleaseDataError, TerminalError
from ..models import Contributor, CoverImage, Deal, Label, Release, Track

# The contract's columns, in the order the default rows query returns them.
RELEASE_COLUMNS: tuple[str, ...] = (
    "release_id", "icpn", "grid", "catalog_number", "title", "version_title", "release_type", "label_id",
    "label_name", "label_dpid", "genre", "subgenre", "release_date", "original_release_date", "p_line_year",
    "p_line_text", "c_line_year", "c_line_text", "parental_warning", "language", "release_artists", "deals",
    "changed_at", "deleted_at", "cover_file", "cover_md5", "cover_width", "cover_height", "cover_mime_type",
)
TRACK_COLUMNS: tuple[str, ...] = (
    "track_id", "disc_number", "track_number", "isrc", "track_title", "track_version_title", "duration_seconds",
    "track_genre", "track_parental_warning", "track_p_line_year", "track_p_line_text", "audio_file", "audio_md5",
    "track_contributors",
)
CONTRACT_COLUMNS: tuple[str, ...] = RELEASE_COLUMNS + TRACK_COLUMNS
_NR = len(RELEASE_COLUMNS)
# Only this must be present; a query may leave out the others (they read as absent).
REQUIRED_COLUMNS = ("release_id",)


class RowOrderError(TerminalError):
    """Rows of one release were not contiguous: the query's ORDER BY is wrong."""


# ---------------------------------------------------------------------------
# Value converters. Each returns the converted value, or appends a
# FieldProblem and returns None. ``where`` is the dotted field path.


def _absent(v: Any) -> bool:
    return v is None or v == "" or (type(v) is float and v != v) or _is_na(v)


def _is_na(v: Any) -> bool:
    # pandas.NA / NaT without importing pandas: both refuse bool() or compare unequal to themselves.
    name = type(v).__name__
    return name in ("NAType", "NaTType")


def _text(v: Any, where: str, problems: list[FieldProblem]) -> str | None:
    if type(v) is str:
        return v or None
    if _absent(v):
        return None
    if isinstance(v, str):
        return str(v) or None
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float) and v.is_integer():
        return str(int(v))  # pandas reads a numeric code column as float when it has gaps
    if isinstance(v, (int, float, Decimal)) or _is_number(v):
        return str(v)
    problems.append(FieldProblem(where, _short(v), f"expected text, got {type(v).__name__}", "give a string"))
    return None


def _is_number(v: Any) -> bool:
    try:
        operator.index(v)
        return True
    except TypeError:
        return isinstance(v, float)


def _int(v: Any, where: str, problems: list[FieldProblem]) -> int | None:
    if type(v) is int:
        return v
    if _absent(v):
        return None
    if isinstance(v, bool):
        problems.append(FieldProblem(where, v, "expected a whole number, got a boolean", "give an integer"))
        return None
    try:
        return operator.index(v)  # int subclasses, NumPy integers
    except TypeError:
        pass
    if isinstance(v, (float, Decimal)):
        if math.isfinite(v) and v == int(v):
            return int(v)
    elif isinstance(v, str):
        s = v.strip()
        try:
            return int(s)
        except ValueError:
            try:
                f = float(s)
                if f.is_integer():
                    return int(f)
            except ValueError:
                pass
    problems.append(FieldProblem(where, _short(v), "not a whole number", "give an integer such as 3"))
    return None


_CLOCK = re.compile(r"(?:(\d+):)?(\d+):(\d+(?:\.\d+)?)")
_ISO_DURATION = re.compile(r"PT(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?")


def _seconds(v: Any, where: str, problems: list[FieldProblem]) -> int | float | None:
    """A duration in seconds: a number, '237', '3:57', '1:02:03' or ISO 'PT3M57S'."""
    if type(v) is int and v >= 0:
        return v
    if _absent(v):
        return None
    number: float | None = None
    if isinstance(v, bool):
        number = None
    elif isinstance(v, (int, float, Decimal)) or _is_number(v):
        number = float(v)
    elif isinstance(v, str):
        s = v.strip()
        try:
            number = float(s)
        except ValueError:
            m = _CLOCK.fullmatch(s) or None
            if m:
                number = int(m.group(1) or 0) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
            else:
                m = _ISO_DURATION.fullmatch(s.upper())
                if m and any(m.groups()):
                    h, mi, se = (float(g or 0) for g in m.groups())
                    number = h * 3600 + mi * 60 + se
    if number is None or not math.isfinite(number) or number < 0:
        problems.append(
            FieldProblem(where, _short(v), "not a duration", "give seconds (237), mm:ss (3:57) or ISO 8601 (PT3M57S)")
        )
        return None
    return int(number) if number.is_integer() else number


def _date(v: Any, where: str, problems: list[FieldProblem]) -> dt.date | None:
    if type(v) is dt.date:
        return v
    if _absent(v):
        return None
    if isinstance(v, dt.datetime):
        return v.date()
    if isinstance(v, dt.date):
        return dt.date(v.year, v.month, v.day)
    if isinstance(v, str):
        s = v.strip()
        try:
            return dt.date.fromisoformat(s[:10])
        except ValueError:
            pass
    problems.append(FieldProblem(where, _short(v), "not a date", "give an ISO date such as 2024-03-01"))
    return None


def _datetime(v: Any, where: str, problems: list[FieldProblem]) -> dt.datetime | None:
    if type(v) is dt.datetime:
        return v
    if _absent(v):
        return None
    if isinstance(v, dt.datetime):
        to_py = getattr(v, "to_pydatetime", None)  # a pandas Timestamp: hand on a plain datetime
        return to_py() if to_py is not None else v
    if isinstance(v, dt.date):
        return dt.datetime(v.year, v.month, v.day, tzinfo=dt.timezone.utc)
    if isinstance(v, str):
        try:
            return dt.datetime.fromisoformat(v.strip())
        except ValueError:
            pass
    problems.append(
        FieldProblem(where, _short(v), "not a timestamp", "give an ISO timestamp such as 2024-03-01T12:00:00+00:00")
    )
    return None


def _json_list(v: Any, where: str, problems: list[FieldProblem]) -> list[Any] | None:
    """A JSON array column: a list already, or JSON text (a CSV, or the extract's raw JSON)."""
    if type(v) is list:
        return v
    if _absent(v):
        return None
    if isinstance(v, (list, tuple)):
        return list(v)
    if isinstance(v, (bytes, bytearray)):
        v = v.decode("utf-8", "replace")
    if isinstance(v, str):
        try:
            parsed = json.loads(v)
        except ValueError as exc:
            problems.append(FieldProblem(where, _short(v), f"not valid JSON ({exc.msg})", "give a JSON array"))
            return None
        if parsed is None:
            return None
        if isinstance(parsed, list):
            return parsed
        v = parsed
    problems.append(FieldProblem(where, _short(v), "expected a JSON array", "give a JSON array of objects"))
    return None


def _codes(v: Any, where: str, problems: list[FieldProblem]) -> tuple[str, ...]:
    """Territory codes or use types: a list, a Postgres array literal, or 'US,GB' / 'US GB'."""
    if type(v) is list:
        for x in v:
            if type(x) is not str:
                break
        else:
            return tuple(v)
    elif _absent(v):
        return ()
    elif isinstance(v, str):
        return tuple(x for x in re.split(r"[\s,;{}\[\]\"]+", v) if x)
    if isinstance(v, (list, tuple)):
        out = []
        for i, x in enumerate(v):
            s = _text(x, f"{where}[{i}]", problems)
            if s is not None:
                out.append(s.strip())
        return tuple(out)
    problems.append(FieldProblem(where, _short(v), "expected a list of codes", 'give a list such as ["US", "GB"]'))
    return ()


def _short(v: Any) -> Any:
    """A value as it goes into a message: long text cut, so one bad blob does not flood the log."""
    if isinstance(v, str) and len(v) > 120:
        return v[:117] + "..."
    return v


# ---------------------------------------------------------------------------
# Nested objects


_CONTRIBUTOR_KEY = operator.itemgetter("artist_id", "name", "role", "sequence", "isni")


def _contributors(
    v: Any, where: str, problems: list[FieldProblem], cache: dict[Any, Any] | None = None
) -> tuple[Contributor, ...]:
    """A JSON array of {artist_id, name, isni, role, sequence} as Contributor records.

    ``cache`` (per grouping call) maps a JSON text to its tuple and an
    element's values to its record: the same line-up repeats on every track
    of an album, so most arrays and most artists are converted once.
    """
    if type(v) is tuple:
        # Records already (a table-by-table read): pass them through when all are.
        for c in v:
            if type(c) is not Contributor:
                break
        else:
            return v
    if type(v) is str and cache is not None:
        hit = cache.get(v)
        if hit is not None:
            return hit  # type: ignore[no-any-return]
        try:
            items = json.loads(v) if v else None
        except ValueError:
            items = _json_list(v, where, problems)  # records the problem
    else:
        items = _json_list(v, where, problems)
    if not items:
        if items is not None and not isinstance(items, list):
            _json_list(items, where, problems)
        return ()
    if type(items) is not list:
        _json_list(items, where, problems)
        return ()
    out = []
    before = len(problems)
    memo = cache if cache is not None else {}
    for i, item in enumerate(items):
        # Fast path: a well-formed element, converted once per distinct value
        # (one C call builds the lookup key; types are checked on first sight).
        if type(item) is dict and len(item) == 5:
            try:
                key = _CONTRIBUTOR_KEY(item)
            except KeyError:
                key = None
            if key is not None:
                c = memo.get(key)
                if c is None:
                    aid, name, role, seq, isni = key
                    if (
                        type(aid) is int and type(name) is str and name and type(role) is str and role
                        and type(seq) is int and (isni is None or (type(isni) is str and isni))
                    ):
                        c = memo[key] = Contributor(aid, name, role, seq, isni)
                if c is not None:
                    out.append(c)
                    continue
        c = _contributor(item, f"{where}[{i}]", i, problems)
        if c is not None:
            out.append(c)
    result = tuple(out)
    if cache is not None and type(v) is str and len(problems) == before:
        if len(cache) > 50000:  # bounded: a catalog has far more distinct line-ups than one chunk
            cache.clear()
        cache[v] = result
    return result


def _contributor(item: Any, where: str, position: int, problems: list[FieldProblem]) -> Contributor | None:
    if isinstance(item, Contributor):
        return item
    if not isinstance(item, Mapping):
        problems.append(
            FieldProblem(where, _short(item), "expected an object", "give {artist_id, name, role, sequence, isni}")
        )
        return None
    before = len(problems)
    artist_id = _int(item.get("artist_id"), f"{where}.artist_id", problems)
    name = _text(item.get("name"), f"{where}.name", problems)
    role = _text(item.get("role"), f"{where}.role", problems)
    sequence = _int(item.get("sequence"), f"{where}.sequence", problems)
    isni = _text(item.get("isni"), f"{where}.isni", problems)
    if artist_id is None and len(problems) == before:
        problems.append(FieldProblem(f"{where}.artist_id", None, "missing", "give every artist its id"))
    if name is None and len(problems) == before:
        problems.append(FieldProblem(f"{where}.name", None, "missing", "give every artist a name"))
    if role is None and len(problems) == before:
        problems.append(
            FieldProblem(f"{where}.role", None, "missing", "give a role such as MainArtist, FeaturedArtist, Composer")
        )
    if len(problems) != before:
        return None
    return Contributor(artist_id, name, role, position + 1 if sequence is None else sequence, isni)  # type: ignore[arg-type]


def _deals(v: Any, where: str, problems: list[FieldProblem]) -> tuple[Deal, ...]:
    items = _json_list(v, where, problems)
    if not items:
        return ()
    out = []
    for i, item in enumerate(items):
        w = f"{where}[{i}]"
        if isinstance(item, Deal):
            out.append(item)
            continue
        if not isinstance(item, Mapping):
            problems.append(FieldProblem(w, _short(item), "expected an object", "give {deal_id, territories, ...}"))
            continue
        deal_id = _int(item.get("deal_id"), f"{w}.deal_id", problems)
        out.append(
            Deal(
                deal_id=i + 1 if deal_id is None else deal_id,
                territories=_codes(item.get("territories"), f"{w}.territories", problems),
                commercial_model=_text(item.get("commercial_model"), f"{w}.commercial_model", problems),
                use_types=_codes(item.get("use_types"), f"{w}.use_types", problems),
                start_date=_date(item.get("start_date"), f"{w}.start_date", problems),
                end_date=_date(item.get("end_date"), f"{w}.end_date", problems),
                updated_at=_datetime(item.get("updated_at"), f"{w}.updated_at", problems),
                # Optional prices: checked by the builder, which names the deal.
                price_code=_text(item.get("price_code"), f"{w}.price_code", problems),
                wholesale_price=_price(item.get("wholesale_price")),
                currency=_text(item.get("currency"), f"{w}.currency", problems),
            )
        )
    return tuple(out)


def _price(v: Any) -> Any:
    """A wholesale price as given (number or text; the builder checks it), or None."""
    if _absent(v) or (isinstance(v, str) and not v.strip()):
        return None
    if isinstance(v, float):
        return str(v)  # its shortest text: 0.69, not 0.68999999999999994671
    return v


def _label(label_id: Any, name: Any, dpid: Any, problems: list[FieldProblem]) -> Label | None:
    lid = _int(label_id, "label_id", problems)
    lname = _text(name, "label_name", problems)
    ldpid = _text(dpid, "label_dpid", problems)
    if lid is None and lname is None:
        return None
    if lid is None:
        problems.append(FieldProblem("label_id", label_id, "missing while the label has a name", "give the label's id"))
        return None
    if lname is None:
        problems.append(FieldProblem("label_name", name, "missing while the release has a label", "give the label's name"))
        return None
    return Label(lid, lname, ldpid)


def cover_image(file: Any, md5: Any, width: Any, height: Any, mime: Any, problems: list[FieldProblem]) -> CoverImage | None:
    """The front cover from its five columns; None when they are all absent."""
    values = (
        _text(file, "cover_file", problems),
        _text(md5, "cover_md5", problems),
        _int(width, "cover_width", problems),
        _int(height, "cover_height", problems),
        _text(mime, "cover_mime_type", problems),
    )
    if all(v is None for v in values):
        return None
    return CoverImage(*values)


# ---------------------------------------------------------------------------
# Release and track from canonical tuples (RELEASE_COLUMNS / TRACK_COLUMNS order)


def _release_parts(r: Sequence[Any], problems: list[FieldProblem]) -> dict[str, Any]:
    return {
        "title": _text(r[4], "title", problems),
        "release_type": _text(r[6], "release_type", problems),
        "icpn": _text(r[1], "icpn", problems),
        "grid": _text(r[2], "grid", problems),
        "catalog_number": _text(r[3], "catalog_number", problems),
        "version_title": _text(r[5], "version_title", problems),
        "label": _label(r[7], r[8], r[9], problems),
        "genre": _text(r[10], "genre", problems),
        "subgenre": _text(r[11], "subgenre", problems),
        "release_date": _date(r[12], "release_date", problems),
        "original_release_date": _date(r[13], "original_release_date", problems),
        "p_line_year": _int(r[14], "p_line_year", problems),
        "p_line_text": _text(r[15], "p_line_text", problems),
        "c_line_year": _int(r[16], "c_line_year", problems),
        "c_line_text": _text(r[17], "c_line_text", problems),
        "parental_warning": _text(r[18], "parental_warning", problems),
        "language": _text(r[19], "language", problems),
        "artists": _contributors(r[20], "release_artists", problems),
        "deals": _deals(r[21], "deals", problems),
        "updated_at": _datetime(r[22], "changed_at", problems),
        "deleted_at": _datetime(r[23], "deleted_at", problems),
        "cover_image": cover_image(r[24], r[25], r[26], r[27], r[28], problems),
    }


_STRN = frozenset({str, type(None)})
_INTN = frozenset({int, type(None)})


def _track(
    t: Sequence[Any], index: int, problems: list[FieldProblem], cache: dict[Any, Any] | None
) -> Track | None:
    track_id, disc, number, isrc, title, version, duration, genre, warning, pyear, ptext, audio, md5, contribs = t
    # Fast path: the values a PostgreSQL query returns are already right.
    if (
        type(track_id) is int and type(disc) is int and type(number) is int
        and (duration is None or (type(duration) is int and duration >= 0)) and type(pyear) in _INTN and type(isrc) in _STRN and type(title) in _STRN
        and type(version) in _STRN and type(genre) in _STRN and type(warning) in _STRN and type(ptext) in _STRN
        and type(audio) in _STRN and type(md5) in _STRN
    ):
        return Track(
            track_id, disc, number, isrc or None, title or None, version or None, duration, genre or None,
            warning or None, pyear, ptext or None, audio or None, md5 or None,
            _contributors(contribs, f"tracks[{index}].contributors", problems, cache),
        )
    w = f"tracks[{index}]"
    before = len(problems)
    tid = _int(track_id, f"{w}.track_id", problems)
    if tid is None and len(problems) == before:
        problems.append(FieldProblem(f"{w}.track_id", track_id, "missing", "give every track its id"))
    before_number = len(problems)
    d = _int(disc, f"{w}.disc_number", problems)
    n = _int(number, f"{w}.track_number", problems)
    if n is None and len(problems) == before_number:
        problems.append(FieldProblem(f"{w}.track_number", number, "missing", "give every track its position"))
    track = Track(
        track_id=tid if tid is not None else 0,
        disc_number=1 if d is None else d,
        track_number=n if n is not None else 0,
        isrc=_text(isrc, f"{w}.isrc", problems),
        title=_text(title, f"{w}.title", problems),
        version_title=_text(version, f"{w}.version_title", problems),
        duration_seconds=_seconds(duration, f"{w}.duration_seconds", problems),
        genre=_text(genre, f"{w}.genre", problems),
        parental_warning=_text(warning, f"{w}.parental_warning", problems),
        p_line_year=_int(pyear, f"{w}.p_line_year", problems),
        p_line_text=_text(ptext, f"{w}.p_line_text", problems),
        audio_file=_text(audio, f"{w}.audio_file", problems),
        audio_md5=_text(md5, f"{w}.audio_md5", problems),
        contributors=_contributors(contribs, f"{w}.contributors", problems, cache),
    )
    return track if len(problems) == before else None


def _release_id(v: Any) -> tuple[Any, FieldProblem | None]:
    problems: list[FieldProblem] = []
    rid = _int(v, "release_id", problems)
    if problems:
        return v, problems[0]
    if rid is None:
        return None, FieldProblem("release_id", v, "missing", "give every row its release's id")
    return rid, None


def _make_release(rid: Any, rows: list[Sequence[Any]], cache: dict[Any, Any]) -> Release:
    """One release from its rows (canonical order); raises ReleaseDataError listing every problem."""
    return _assemble(rid, rows[0], [row[_NR:] for row in rows], cache, rows)


def release_from_parts(
    rid: int, release_row: Sequence[Any], track_rows: Sequence[Sequence[Any]], cache: dict[Any, Any]
) -> Release:
    """One release from its release columns and its track columns, already apart.

    ``release_row`` holds RELEASE_COLUMNS' values and each of ``track_rows``
    TRACK_COLUMNS' values, with the JSON columns (release_artists, deals,
    track_contributors) given as tuples of ``Contributor`` / ``Deal`` records,
    or of dicts where a value needs checking. The same conversions and checks
    as the row contract apply, so a table-by-table read of the reference
    catalog yields exactly the records (and refusals) its rows query would.
    Raises ``ReleaseDataError``; ``cache`` is shared across one chunk.
    """
    return _assemble(rid, release_row, track_rows, cache, None)


def _plain(v: Any) -> Any:
    """Records inside a raw row as dicts, so a refusal's input stays JSON-able."""
    if type(v) is tuple and v and not isinstance(v[0], str):
        return [dataclasses.asdict(x) if dataclasses.is_dataclass(x) else x for x in v]
    return v


def _assemble(
    rid: Any,
    release_row: Sequence[Any],
    track_rows: Sequence[Sequence[Any]],
    cache: dict[Any, Any],
    rows: list[Sequence[Any]] | None,
) -> Release:
    problems: list[FieldProblem] = []
    parts = _release_parts(release_row, problems)
    tracks = []
    position = 0  # the track's place among the release's rows: what tracks[i] in a message means
    for t in track_rows:
        if type(t[0]) is not int and _absent(t[0]) and _absent(t[2]) and _absent(t[3]) and _absent(t[4]):
            continue  # a release without tracks: one row, track columns NULL
        track = _track(t, position, problems, cache)
        position += 1
        if track is not None:
            tracks.append(track)
    if problems:
        err = ReleaseDataError(rid, problems)
        if rows is None:
            head = [_plain(v) for v in release_row]
            rows = [head + [_plain(v) for v in t] for t in track_rows] or [head]
        err.rows = [dict(zip(CONTRACT_COLUMNS, row)) for row in rows]  # type: ignore[attr-defined]
        raise err
    return Release(release_id=rid, tracks=tuple(tracks), **parts)


# ---------------------------------------------------------------------------
# Public API


def iter_release_results(
    rows: Iterable[Sequence[Any]] | Iterable[Mapping[str, Any]],
    columns: Sequence[str] | None = None,
) -> Iterator[Release | ReleaseDataError]:
    """Group contiguous rows by release id; yield a ``Release`` or the ``ReleaseDataError`` refusing it.

    ``rows`` are mappings (column name -> value), or sequences whose column
    names ``columns`` gives (a cursor's description). A release whose rows
    reappear after another release's raises ``RowOrderError``: the query must
    order by release id.
    """
    it = iter(rows)
    canon = _canonicalizer(columns)
    cache: dict[Any, Any] = {}
    seen: set[Any] = set()
    group: list[Sequence[Any]] = []
    current: Any = _NOTHING
    current_problem: FieldProblem | None = None
    for raw in it:
        if canon is None:
            canon = _canonicalizer(None, raw)
        row = canon(raw)
        key = row[0]
        if type(key) is int:
            if key == current:
                group.append(row)
                continue
            rid, problem = key, None
        else:
            rid, problem = _release_id(key)
            if group and problem is None and rid == current:
                group.append(row)
                continue
        if group:
            yield _finish(current, current_problem, group, cache)
        if problem is None and rid is not None:
            if rid in seen:
                raise RowOrderError(
                    f"release {rid}: its rows are not contiguous (they reappear after other releases' rows); "
                    "fix: end the rows query with ORDER BY release_id, disc_number, track_number"
                )
            seen.add(rid)
        current, current_problem, group = rid, problem, [row]
    if group:
        yield _finish(current, current_problem, group, cache)


_NOTHING = object()


def _finish(
    rid: Any, problem: FieldProblem | None, group: list[Sequence[Any]], cache: dict[Any, Any]
) -> Release | ReleaseDataError:
    if problem is not None:
        err = ReleaseDataError(rid, [problem])
        err.rows = [dict(zip(CONTRACT_COLUMNS, row)) for row in group]  # type: ignore[attr-defined]
        return err
    try:
        return _make_release(rid, group, cache)
    except ReleaseDataError as exc:
        return exc


def releases_from_rows(
    rows: Iterable[Sequence[Any]] | Iterable[Mapping[str, Any]],
    columns: Sequence[str] | None = None,
) -> Iterator[Release]:
    """Group contiguous rows (one per track, release columns repeated) into ``Release`` records.

    Raises ``ReleaseDataError`` (release id, field, value, fix) at the first
    release whose values cannot be converted, after yielding the releases
    before it; use ``iter_release_results`` to collect refusals and go on.
    """
    for result in iter_release_results(rows, columns):
        if isinstance(result, ReleaseDataError):
            raise result
        yield result


def _canonicalizer(
    columns: Sequence[str] | None, first: Any = None
) -> Callable[[Any], Sequence[Any]] | None:
    """A function turning one input row into a tuple in CONTRACT_COLUMNS order."""
    if columns is None:
        if first is None:
            return None
        if isinstance(first, Mapping):
            _check_columns(list(first.keys()))

            def from_mapping(row: Any) -> Sequence[Any]:
                get = row.get
                return tuple([get(c) for c in CONTRACT_COLUMNS])

            return from_mapping
        raise TerminalError(
            "rows given as sequences need their column names; fix: pass columns=[...] (e.g. the cursor description)"
        )
    names = list(columns)
    _check_columns(names)
    if tuple(names) == CONTRACT_COLUMNS:
        return lambda row: row  # the default query: no reordering at all
    index = {n: i for i, n in enumerate(names)}
    positions = [index.get(c) for c in CONTRACT_COLUMNS]
    if all(p is not None for p in positions):
        pick = operator.itemgetter(*positions)  # type: ignore[arg-type]
        return pick  # type: ignore[no-any-return]
    return lambda row: tuple([row[p] if p is not None else None for p in positions])


def _check_columns(names: list[str]) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise TerminalError(
            f"the rows lack the column(s) {', '.join(missing)}; got {', '.join(names) or 'none'}; "
            "fix: return every column of the extract contract (docs/column-contract.md)"
        )


# -- one release as a nested dict

_TRACK_KEYS: tuple[tuple[str, ...], ...] = tuple(
    (c, c.removeprefix("track_")) if c.startswith("track_") and c not in ("track_id", "track_number") else (c,)
    for c in TRACK_COLUMNS
)
_TRACK_KEYS = _TRACK_KEYS[:-1] + (("track_contributors", "contributors", "artists"),)


def _first(d: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    for k in keys:
        if k in d:
            v = d[k]
            if isinstance(v, (list, tuple)) or not _absent(v):
                return v
    return None


def release_from_dict(d: Mapping[str, Any]) -> Release:
    """One release from a nested dict.

    Keys are the contract's release columns (``label`` may be a dict
    ``{label_id, name, dpid}`` instead of ``label_id``/``label_name``/``label_dpid``;
    ``cover_image`` a dict ``{file, md5, width, height, mime_type}`` instead of
    the ``cover_*`` columns;
    ``artists`` is accepted for ``release_artists``, ``updated_at`` for
    ``changed_at``) plus ``tracks``: a list of dicts keyed by the track columns
    with or without the ``track_`` prefix (``title`` or ``track_title``,
    ``contributors`` or ``track_contributors``). JSON-valued keys may be lists
    or JSON text. Raises ``ReleaseDataError`` listing every value that cannot
    be converted.
    """
    if isinstance(d, Release):
        return d
    if not isinstance(d, Mapping):
        raise ReleaseDataError(None, [FieldProblem("release", _short(d), "expected a dict", "give a dict per release")])
    rid, problem = _release_id(d.get("release_id"))
    if problem is not None:
        raise ReleaseDataError(rid, [problem])
    label = d.get("label")
    label_id, label_name, label_dpid = d.get("label_id"), d.get("label_name"), d.get("label_dpid")
    if isinstance(label, Label):
        label_id, label_name, label_dpid = label.label_id, label.name, label.dpid
    elif isinstance(label, Mapping):
        label_id = label.get("label_id", label_id)
        label_name = label.get("name", label.get("label_name", label_name))
        label_dpid = label.get("dpid", label.get("label_dpid", label_dpid))
    elif isinstance(label, str) and label_name is None:
        label_name = label
    values = {c: d.get(c) for c in RELEASE_COLUMNS}
    values.update(label_id=label_id, label_name=label_name, label_dpid=label_dpid)
    if values["release_artists"] is None:
        values["release_artists"] = d.get("artists")
    if values["changed_at"] is None:
        values["changed_at"] = d.get("updated_at")
    cover = d.get("cover_image", d.get("cover"))
    if isinstance(cover, CoverImage):
        cover = dataclasses.asdict(cover)
    if isinstance(cover, Mapping):  # {file, md5, width, height, mime_type}
        for key in ("file", "md5", "width", "height", "mime_type"):
            if values[f"cover_{key}"] is None:
                values[f"cover_{key}"] = cover.get(key)
    problems: list[FieldProblem] = []
    release_row = tuple(values[c] for c in RELEASE_COLUMNS)
    parts = _release_parts(release_row, problems)
    tracks_in = d.get("tracks")
    if isinstance(tracks_in, str):
        tracks_in = _json_list(tracks_in, "tracks", problems)
    tracks = []
    if tracks_in is not None and not (isinstance(tracks_in, float) and tracks_in != tracks_in):
        if not isinstance(tracks_in, (list, tuple)):
            problems.append(FieldProblem("tracks", _short(tracks_in), "expected a list", "give a list of track dicts"))
            tracks_in = []
        for i, item in enumerate(tracks_in):
            if isinstance(item, Track):
                tracks.append(item)
                continue
            if not isinstance(item, Mapping):
                problems.append(FieldProblem(f"tracks[{i}]", _short(item), "expected a dict", "give a dict per track"))
                continue
            t = tuple(_first(item, keys) for keys in _TRACK_KEYS)
            track = _track(t, i, problems, None)
            if track is not None:
                tracks.append(track)
    if problems:
        raise ReleaseDataError(rid, problems)
    return Release(release_id=rid, tracks=tuple(tracks), **parts)
