"""Tracks and their media: identifiers, titles, lines, audio file and duration, credits, disc order.

Each track needs an ISRC (a country or agency prefix, registrant, year and
designation; not shared with another track of the release), a title, a
positive duration and a unique (disc, track) position; missing display
artists, genre, P line and parental warning are taken from the release. A
release without a genre takes its first track's; with none anywhere it is
rejected. Tracks are numbered in (disc, track) order.

This loop runs for every track of every release: clean values (the common
case) take inline fast paths and only the rest go through the checker.
"""
from __future__ import annotations

import math
import operator
import re
from decimal import Decimal

from ...models import Release, Track
from .. import identifiers
from .._text import ILLEGAL_XML, iso_duration
from ..prepared import Prepared, PTrack
from .checker import CACHE_LIMIT, MD5, Checker
from .parties import Credits
from .vocabulary import Vocabulary

_ISRC = re.compile(r"[A-Z]{2}[A-Z0-9]{3}[0-9]{7}")
_ISRC_PREFIXES = identifiers.ISRC_PREFIXES
_ISRC_MATCH = _ISRC.fullmatch
_MD5_MATCH = MD5.fullmatch
_BAD = ILLEGAL_XML.search
# Whole-second durations repeat a lot across a catalog; their text is cached.
_DURATIONS: dict[int, str] = {}
_DURATIONS_MS: dict[int, str] = {}
_POSITION = operator.attrgetter("disc_number", "track_number")


def check_tracks(ck: Checker, voc: Vocabulary, release: Release, p: Prepared, people: Credits) -> None:
    """Check and map every track onto ``p.tracks`` (and the release's genre, discs and duration)."""
    if not release.tracks:
        ck.problem("tracks", (), "the release has no tracks", "add its tracks, or send a takedown if it was withdrawn")
    tracks_in = release.tracks
    order = _track_order(ck, tracks_in)
    text, for_track = ck.text, people.for_track
    isrc_at: dict[str, int] = {}
    for i, ok in order:
        t = tracks_in[i]
        # Fast paths: clean values (the common case) skip the checker's calls.
        # "Clean" = non-empty text, nothing to strip, no XML-illegal character;
        # isprintable() is False for every character XML forbids (Cc, Cs, Cn),
        # so it clears most text without the slower regex.
        isrc = t.isrc
        if type(isrc) is not str or not _ISRC_MATCH(isrc) or isrc[:2] not in _ISRC_PREFIXES:
            isrc = _isrc(ck, t, i)
        if isrc is not None:
            # One recording, one ISRC: two tracks of a release sharing one would be
            # two resources with the same identifier, which stores refuse.
            first = isrc_at.setdefault(isrc, i)
            if first != i:
                ck.problem(
                    f"tracks[{i}].isrc", isrc, f"is also the ISRC of tracks[{first}] of this release",
                    "give each track its own recording's ISRC (or remove the repeated track)",
                )
                isrc = None
        title = t.title
        if type(title) is not str or not title or title.strip() is not title or not (title.isprintable() or _BAD(title) is None):
            title = text(f"tracks[{i}].title", title, True, "set tracks.title")
        vtitle = t.version_title
        if vtitle is not None and (type(vtitle) is not str or not vtitle or vtitle.strip() is not vtitle or not (vtitle.isprintable() or _BAD(vtitle) is None)):
            vtitle = text(f"tracks[{i}].version_title", vtitle)
        genre = t.genre
        if genre is not None and (type(genre) is not str or not genre or genre.strip() is not genre or not (genre.isprintable() or _BAD(genre) is None)):
            genre = text(f"tracks[{i}].genre", genre)
        p_text = t.p_line_text
        if p_text is not None and (type(p_text) is not str or not p_text or p_text.strip() is not p_text or not (p_text.isprintable() or _BAD(p_text) is None)):
            p_text = text(f"tracks[{i}].p_line_text", p_text)
        audio_file = t.audio_file
        if audio_file is not None and (type(audio_file) is not str or not audio_file or audio_file.strip() is not audio_file or not (audio_file.isprintable() or _BAD(audio_file) is None)):
            audio_file = text(f"tracks[{i}].audio_file", audio_file)
        md5 = t.audio_md5
        if md5 is not None and (type(md5) is not str or not _MD5_MATCH(md5)):
            md5 = ck.ident(f"tracks[{i}].audio_md5", md5, MD5, "an MD5 sum (32 hexadecimal digits)", False, "9e107d9d372bb6826bd81d3542a419d6")
        p_year = t.p_line_year
        if p_year is not None and (type(p_year) is not int or not 1000 <= p_year <= 9999):
            p_year = ck.year(f"tracks[{i}].p_line_year", p_year)
        parental = t.parental_warning
        if parental is not None:
            parental = voc.parental.get(parental) if type(parental) is str else None
            if parental is None:
                parental = ck.choice(f"tracks[{i}].parental_warning", t.parental_warning, voc.parental, "parental warning")
        secs = t.duration_seconds
        if type(secs) is int and secs > 0:
            duration = _DURATIONS.get(secs)
            if duration is None:
                duration = iso_duration(secs)
                if secs < 36000:
                    _DURATIONS[secs] = duration
        else:
            duration = _duration(ck, t, i)
        artists, contributors, display_name = for_track(t.contributors, i)
        if not ok or isrc is None or title is None or duration is None:
            continue
        p.tracks.append(
            PTrack(
                len(p.tracks) + 1,
                t.disc_number,
                t.track_number,
                isrc,
                title,
                vtitle,
                display_name,
                artists,
                contributors,
                duration,
                float(secs),  # type: ignore[arg-type]
                p_year if p_text else p.p_year if p.p_text else None,
                p_text or p.p_text,
                parental or p.parental,
                genre or p.genre or None,
                audio_file,
                md5.lower() if md5 else None,
                t.audio if audio_file else None,
            )
        )
    _from_tracks(ck, release, p)


def _track_order(ck: Checker, tracks_in: tuple[Track, ...]) -> list[tuple[int, bool]]:
    """(index, position ok) of each track in (disc, track) order; a bad or repeated position is a problem."""
    pos_list = list(map(_POSITION, tracks_in))
    if len(set(pos_list)) == len(pos_list) and all(
        type(d) is int and type(n) is int and d > 0 and n > 0 for d, n in pos_list
    ):
        # Fast path: whole positive numbers, all distinct.
        return [(i, True) for i in sorted(range(len(pos_list)), key=pos_list.__getitem__)]
    positions: dict[tuple[int, int], int] = {}
    staged: list[tuple[tuple[int, int, str, int], int, bool]] = []
    for i, t in enumerate(tracks_in):
        where = f"tracks[{i}]"
        ok = True
        for attr_name in ("disc_number", "track_number"):
            v = getattr(t, attr_name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                ck.problem(f"{where}.{attr_name}", v, f"must be a whole number of 1 or more (track {t.track_id})", f"set tracks.{attr_name}")
                ok = False
        if ok:
            pos = (t.disc_number, t.track_number)
            if pos in positions:
                ck.problem(
                    f"{where}.track_number",
                    t.track_number,
                    f"duplicate position disc {pos[0]} track {pos[1]} (track {t.track_id}; also tracks[{positions[pos]}])",
                    "give each track of a disc its own track_number",
                )
                ok = False
            else:
                positions[pos] = i
        staged.append(((t.disc_number, t.track_number, str(t.track_id), i) if ok else (0, 0, "", i), i, ok))
    return [(i, ok) for _, i, ok in sorted(staged, key=lambda x: x[0])]


def _isrc(ck: Checker, t: Track, i: int) -> str | None:
    """The slow path of a track's ISRC: shape, then prefix."""
    isrc = ck.ident(f"tracks[{i}].isrc", t.isrc, _ISRC, "an ISRC (CC XXX YY NNNNN, 12 characters)", True, "USS1Z9900001")
    if isrc is not None:
        wrong = identifiers.isrc_problem(isrc)
        if wrong:
            ck.problem(f"tracks[{i}].isrc", t.isrc, f"{wrong} (track {t.track_id})", "correct tracks.isrc: it starts with the registrant's country code, e.g. GB, US, JP")
            isrc = None
    return isrc


def _duration(ck: Checker, t: Track, i: int) -> str | None:
    """The slow path of a track's duration (anything but a positive whole number of seconds)."""
    secs = t.duration_seconds
    duration = None
    if isinstance(secs, Decimal):
        secs = float(secs)
    if isinstance(secs, bool) or not isinstance(secs, (int, float)) or not math.isfinite(secs) or secs < 0.0005:
        ck.problem(
            f"tracks[{i}].duration_seconds",
            t.duration_seconds,
            f"must be a positive number of seconds (track {t.track_id})",
            "set tracks.duration_seconds to the recording's length",
        )
    else:
        millis = int(round(secs * 1000))
        duration = _DURATIONS_MS.get(millis)
        if duration is None:
            duration = iso_duration(secs)
            if len(_DURATIONS_MS) < CACHE_LIMIT:
                _DURATIONS_MS[millis] = duration
    return duration


def _from_tracks(ck: Checker, release: Release, p: Prepared) -> None:
    """What the release takes from its tracks: a genre when it has none, its discs, its duration."""
    if not p.genre:
        p.genre = next((t.genre for t in p.tracks if t.genre), "")
        if not p.genre and not any(pr.field.endswith("genre") for pr in ck.problems):
            ck.problem("genre", release.genre, "the release has no genre (ERN requires one)", "set releases.genre (or tracks.genre)")
    for t in p.tracks:
        if t.genre is None:
            t.genre = p.genre
    discs: dict[int, list[PTrack]] = {}
    for t in p.tracks:
        discs.setdefault(t.disc, []).append(t)
    p.discs = sorted(discs.items())
    if p.tracks:
        total = 0.0
        for t in p.tracks:  # in track order, as sum() would add them
            total += t.seconds
        p.duration = iso_duration(total)
