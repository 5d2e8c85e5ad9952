"""Check and normalise one release into plain, version-mapped values.

This is where "bad data never yields an invalid document" is enforced: every
value the writers put into XML passes through here first. Each problem is
collected (not raised at the first one) so one ``ReleaseDataError`` lists all
of them, each naming the field, the value and the fix. With ``repair`` on,
XML-illegal control characters and surrounding whitespace are removed and a
warning is recorded instead.

Rules worth knowing (they decide what is rejected):

- Required: title, release type, ICPN (UPC-A, EAN-13 or GTIN-14 with a right
  GS1 check digit), a label with a name, at least one display artist
  (MainArtist/FeaturedArtist/Artist), a genre on the release or on a track,
  a front cover image (file, MD5, MIME type), at least one track, and (for
  ``build``) one deal. GRid and ISNI check characters are verified too
  (``ddex_etl.ern.identifiers``); a wrong one names the expected character.
- Each track needs an ISRC (a country or agency prefix, registrant, year and
  designation; not shared with another track of the release), a title, a positive duration and a unique (disc, track)
  position; missing display artists, genre, P line and parental warning are
  taken from the release.
- Display artists are ordered by the catalog's sequence; ties go to
  MainArtist, then Artist, then FeaturedArtist, then by name (an artist id
  decides only between two credits equal in all of these, so output stays
  deterministic). Several MainArtists (a duet) stay MainArtists, in that
  order: DDEX lets a label name more than one main artist.
- Contributors (Composer, Lyricist, Producer, ...) are listed once per
  person with all their roles, as the release profiles require. Release-level
  contributors have no place on an ERN release, so they are credited on
  every sound recording of the release.
- Deals that start before the release date, and deals that overlap another
  deal with the same commercial model, use type and territory, are warned
  about (``Document.warnings``), not rejected.
- Each deal needs territories, a commercial model, use types and a start date
  (the release date is used when the deal has none); the end may not precede
  the start.
- Catalog values are matched case-insensitively against the chosen version's
  allowed values, plus a few catalog spellings (``Compilation`` is an
  ``Album`` marked as a multi-artist compilation; ``Producer`` is
  ``StudioProducer`` in ERN 4).

Speed matters here (the builder must do thousands of releases per second per
core), so clean values take inline fast paths and the checker's slower,
message-building paths run only for values that need them. Clean artist and
deal-term results and the ISO text of dates are memoised per process (each
cache capped at ``checker.CACHE_LIMIT`` entries); they are pure functions of their
inputs, so the output does not depend on what was built before.
"""
from __future__ import annotations

import datetime as dt
import math
import operator
import re
from decimal import Decimal
from typing import Any

from ...models import Contributor, Release
from .. import identifiers
from .._text import ILLEGAL_XML, iso_duration, utc_stamp
from ..prepared import PContributor, PCredit, PDeal, PParty, Prepared, PTrack
from .checker import CACHE_LIMIT, ISO_DATES, MD5, Checker
from .cover import check_cover
from .deals import _DEAL_TERMS, _deal_order, _deal_sanity, _deal_terms
from .parties import _ARTISTS, _CREDIT_KEY, _display_name, _sorted_credits, party_ref
from .release import latest_change
from .vocabulary import DISPLAY_ROLES, VOCABULARIES

_ISRC = re.compile(r"^[A-Z]{2}[A-Z0-9]{3}[0-9]{7}$")
_ICPN = re.compile(r"^[0-9]{12,14}$")
_GRID = re.compile(r"^[A-Z0-9]{18}$")
_ISNI = re.compile(r"^[0-9]{15}[0-9X]$")
_DPID = re.compile(r"^PADPIDA[a-zA-Z0-9]+$")
_LANG = re.compile(r"^[a-zA-Z]{2,3}(-[a-zA-Z]+){0,1}(-[a-zA-Z]{2}|-[0-9]{3}){0,1}(-[a-zA-Z][a-zA-Z0-9]{4}[a-zA-Z0-9]*){0,1}$")
_ISRC_PREFIXES = identifiers.ISRC_PREFIXES

_ISRC_MATCH = _ISRC.match
_MD5_MATCH = MD5.match
_BAD = ILLEGAL_XML.search
# Whole-second durations repeat a lot across a catalog; their text is cached.
_DURATIONS: dict[int, str] = {}
_DURATIONS_MS: dict[int, str] = {}
_MISSING = object()
_POSITION = operator.attrgetter("disc_number", "track_number")


def prepare(
    release: Release,
    version: str,
    repair: bool,
    default_created: dt.datetime,
    need_deals: bool = True,
    created: dt.datetime | None = None,
) -> tuple[Prepared, Checker]:
    """Check and map one release; the caller raises if ``checker.problems``.

    ``created`` is the message's creation time (a run's frozen start); without
    it the release's latest change dates the message, else ``default_created``.
    """
    voc = VOCABULARIES[version]
    ck = Checker(release.release_id, repair)
    p = Prepared(release_id=release.release_id, version=version)

    p.title = ck.text("title", release.title, True, "set releases.title") or ""
    p.subtitle = ck.text("version_title", release.version_title)
    rtype = ck.choice("release_type", release.release_type, voc.release_types, "release type")
    p.release_type = rtype or ""
    p.compilation = isinstance(release.release_type, str) and release.release_type.strip().lower() == "compilation"
    p.icpn = ck.ident("icpn", release.icpn, _ICPN, "an ICPN (UPC/EAN: 12 to 14 digits)", True, "0602445790005") or ""
    if p.icpn:
        wrong = identifiers.icpn_problem(p.icpn)
        if wrong:
            expected = identifiers.gs1_check_digit(p.icpn[:-1])
            ck.problem("icpn", release.icpn, wrong, f"correct the barcode in releases.icpn (with check digit {expected}: {p.icpn[:-1]}{expected}, if the other digits are right)")
            p.icpn = ""
    p.grid = ck.ident("grid", release.grid, _GRID, "a GRid (18 letters and digits)", False, "A10302B0001234567X")
    if p.grid:
        wrong = identifiers.grid_problem(p.grid)
        if wrong:
            expected = identifiers.grid_check_character(p.grid[:17])
            ck.problem("grid", release.grid, wrong, f"correct releases.grid (with check character {expected}: {p.grid[:17]}{expected}, if the rest is right), or leave it empty")
            p.grid = None
    if release.language is not None:
        lang = ck.text("language", release.language)
        if lang is not None and not _LANG.match(lang):
            ck.problem("language", release.language, "is not an RFC 5646 language code", "set releases.language to a code such as 'en', 'ja' or 'pt-BR'")
            lang = None
        p.language = lang
    p.catalog_number = ck.text("catalog_number", release.catalog_number)

    parties: dict[str, PParty] = {}
    # (artist_id, name, role, isni) -> (party ref, ERN role, is display role) or
    # None when invalid. The same people recur on every track: check them once.
    resolved: dict[tuple[Any, ...], tuple[str, str, bool] | None] = {}
    # The same answers by object identity: records share one Contributor per
    # line-up member, and they live as long as ``release`` (no id is reused).
    resolved_ids: dict[int, tuple[str, str, bool] | None] = {}

    def resolve(c: Contributor, where: str, j: int) -> tuple[str, str, bool] | None:
        """Resolve one credit; ``where`` and ``j`` name it (``where[j]``) in problems and warnings."""
        done = resolved_ids.get(id(c), _MISSING)
        if done is not _MISSING:
            return done  # type: ignore[return-value]
        key = (c.artist_id, c.name, c.role, c.isni)
        try:
            done = resolved.get(key, _MISSING)
        except TypeError:  # unhashable junk in a field: take the slow path every time
            key = None  # type: ignore[assignment]
        else:
            if done is not _MISSING:
                resolved_ids[id(c)] = done  # type: ignore[assignment]
                return done  # type: ignore[return-value]
            hit = _ARTISTS.get((version, key))
            if hit is not None:
                ref, role, is_display, name, isni = hit
                if ref not in parties:
                    parties[ref] = PParty(ref, name, isni)
                out = resolved[key] = resolved_ids[id(c)] = (ref, role, is_display)
                return out
        fresh = key is not None and party_ref("PA", c.artist_id) not in parties
        before = (len(ck.problems), len(ck.warnings))
        out = _resolve_slow(c, f"{where}[{j}]")
        if key is not None:
            resolved[key] = resolved_ids[id(c)] = out
            if fresh and out is not None and (len(ck.problems), len(ck.warnings)) == before and len(_ARTISTS) < CACHE_LIMIT:
                party = parties[out[0]]
                _ARTISTS[(version, key)] = (*out, party.name, party.isni)
        return out

    def _resolve_slow(c: Contributor, where: str) -> tuple[str, str, bool] | None:
        ref = party_ref("PA", c.artist_id)
        ok = True
        if ref not in parties:
            name = ck.text(f"{where}.name", c.name, True, "set the artist's name (artists.name)")
            isni = ck.ident(f"{where}.isni", c.isni, _ISNI, "an ISNI (16 characters)", False, "0000000121032683")
            if isni:
                wrong = identifiers.isni_problem(isni)
                if wrong:
                    expected = identifiers.isni_check_character(isni[:15])
                    ck.problem(f"{where}.isni", c.isni, f"{wrong} (artist {c.artist_id})", f"correct artists.isni (with check character {expected}: {isni[:15]}{expected}, if the rest is right), or leave it empty")
                    isni = None
            if name is None:
                ok = False
            else:
                parties[ref] = PParty(ref, name, isni)
        role_text = ck.text(f"{where}.role", c.role, True, "set the role, e.g. MainArtist or Composer")
        if role_text is None:
            return None
        disp = DISPLAY_ROLES.get(role_text.lower())
        if disp is not None:
            return (ref, disp, True) if ok else None
        found = ck.choice(f"{where}.role", role_text, voc.roles, "contributor role")
        return (ref, found, False) if ok and found else None

    # Release artists: display artists on the release; other roles on every recording.
    rel_display: list[PCredit] = []
    rel_names: list[tuple[str, str]] = []
    rel_other: list[tuple[str, str]] = []
    rel_seen: set[tuple[str, str]] = set()  # (ref, role) of rel_display
    for i, c in _sorted_credits(release.artists):
        r = resolve(c, "artists", i)
        if r is None:
            continue
        ref, role, is_display = r
        if is_display:
            if (ref, role) not in rel_seen:
                rel_seen.add((ref, role))
                rel_display.append(PCredit(ref, role, len(rel_display) + 1))
                rel_names.append((parties[ref].name, role))
        elif (ref, role) not in rel_other:
            rel_other.append((ref, role))
    if not rel_display and not any(pr.field.startswith("artists") for pr in ck.problems):
        ck.problem(
            "artists",
            [c.role for c in release.artists],
            "the release has no display artist (MainArtist, FeaturedArtist or Artist)",
            "add a release_artists row with role MainArtist (e.g. 'Various Artists' for a compilation)",
        )
    p.artists = rel_display
    p.display_name = _display_name(rel_names) if rel_names else ""

    # Label
    label = release.label
    if label is None:
        ck.problem("label", None, "the release has no label", "set releases.label_id to a label with a name")
    else:
        p.label_name = ck.text("label.name", label.name, True, "set labels.name") or ""
        p.label_ref = party_ref("PL", label.label_id)
        dpid = ck.ident("label.dpid", label.dpid, _DPID, "a DDEX party id", False, "PADPIDA2014021301W")
        if p.label_name:
            label_party = PParty(p.label_ref, p.label_name, None, dpid)
    p.genre = ck.text("genre", release.genre) or ""
    p.subgenre = ck.text("subgenre", release.subgenre)
    p.p_year = ck.year("p_line_year", release.p_line_year)
    p.p_text = ck.text("p_line_text", release.p_line_text)
    p.c_year = ck.year("c_line_year", release.c_line_year)
    p.c_text = ck.text("c_line_text", release.c_line_text)
    p.release_date = ck.date("release_date", release.release_date)
    p.original_release_date = ck.date("original_release_date", release.original_release_date)
    if release.parental_warning is not None:
        p.parental = ck.choice("parental_warning", release.parental_warning, voc.parental, "parental warning")

    # Tracks
    if not release.tracks:
        ck.problem("tracks", (), "the release has no tracks", "add its tracks, or send a takedown if it was withdrawn")
    tracks_in = release.tracks
    pos_list = list(map(_POSITION, tracks_in))
    order: list[tuple[int, bool]]
    if len(set(pos_list)) == len(pos_list) and all(
        type(d) is int and type(n) is int and d > 0 and n > 0 for d, n in pos_list
    ):
        # Fast path: whole positive numbers, all distinct.
        order = [(i, True) for i in sorted(range(len(pos_list)), key=pos_list.__getitem__)]
    else:
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
        order = [(i, ok) for _, i, ok in sorted(staged, key=lambda x: x[0])]

    # Tracks of a release usually share their credits: map each distinct
    # contributors tuple once (the lists are shared, never mutated).
    by_credits: dict[tuple[Any, ...], tuple[list[PCredit], list[PContributor], str]] = {}
    by_ids: dict[tuple[int, ...], tuple[list[PCredit], list[PContributor], str]] = {}
    by_tuple: dict[int, tuple[Any, tuple[list[PCredit], list[PContributor], str]]] = {}

    def _track_credits(credits: tuple[Contributor, ...], i: int) -> tuple[list[PCredit], list[PContributor], str]:
        artists: list[PCredit] = []
        names: list[tuple[str, str]] = []
        contributors: list[PContributor] = []
        # One entry per person (and, in ERN 3.8.2, per kind: recording or work
        # contributor), holding all their roles in credit order.
        people: dict[tuple[str, bool], PContributor] = {}
        seen: set[tuple[str, str]] = set()
        where = f"tracks[{i}].contributors"

        def contribute(ref: str, role: str) -> None:
            work = role in voc.work_roles
            entry = people.get((ref, work))
            if entry is None:
                entry = people[(ref, work)] = PContributor(ref, [role], len(contributors) + 1, work)
                contributors.append(entry)
            else:
                entry.roles.append(role)

        for j, c in _sorted_credits(credits):
            r = resolve(c, where, j)
            if r is None:
                continue
            ref, role, is_display = r
            if (ref, role) in seen:
                continue
            seen.add((ref, role))
            if is_display:
                artists.append(PCredit(ref, role, len(artists) + 1))
                names.append((parties[ref].name, role))
            else:
                contribute(ref, role)
        for ref, role in rel_other:
            if (ref, role) not in seen:
                seen.add((ref, role))
                contribute(ref, role)
        if not artists:
            return rel_display, contributors, p.display_name
        return artists, contributors, _display_name(names)

    text = ck.text
    isrc_at: dict[str, int] = {}
    for i, ok in order:
        t = tracks_in[i]
        # Fast paths: clean values (the common case) skip the checker's calls.
        # "Clean" = non-empty text, nothing to strip, no XML-illegal character;
        # isprintable() is False for every character XML forbids (Cc, Cs, Cn),
        # so it clears most text without the slower regex.
        isrc = t.isrc
        if type(isrc) is not str or not _ISRC_MATCH(isrc) or isrc[:2] not in _ISRC_PREFIXES:
            isrc = ck.ident(f"tracks[{i}].isrc", isrc, _ISRC, "an ISRC (CC XXX YY NNNNN, 12 characters)", True, "USS1Z9900001")
            if isrc is not None:
                wrong = identifiers.isrc_problem(isrc)
                if wrong:
                    ck.problem(f"tracks[{i}].isrc", t.isrc, f"{wrong} (track {t.track_id})", "correct tracks.isrc: it starts with the registrant's country code, e.g. GB, US, JP")
                    isrc = None
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
        duration = None
        if type(secs) is int and secs > 0:
            duration = _DURATIONS.get(secs)
            if duration is None:
                duration = iso_duration(secs)
                if secs < 36000:
                    _DURATIONS[secs] = duration
        else:
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

        # The same Contributor objects usually recur from track to track: look
        # them up by identity first (they live as long as ``release``), by value
        # second. Only hashable (clean-typed) credits are ever stored.
        credits = t.contributors
        try:
            # Records read through a chunk share one tuple per line-up: try
            # the tuple itself before its members.
            shared = by_tuple.get(id(credits))
            if shared is not None and shared[0] is credits:
                shared = shared[1]
            else:
                ikey: Any = tuple(map(id, credits))
                shared = by_ids.get(ikey)
                if shared is not None:
                    by_tuple[id(credits)] = (credits, shared)
            if shared is None:
                ckey: Any = tuple(map(_CREDIT_KEY, credits))
                shared = by_credits.get(ckey)
                if shared is not None:
                    by_ids[ikey] = shared
        except TypeError:  # unhashable junk: no sharing
            ckey = shared = None
        if shared is None:
            shared = _track_credits(credits, i)
            if ckey is not None:
                by_credits[ckey] = by_ids[ikey] = shared
                by_tuple[id(credits)] = (credits, shared)
        artists, contributors, display_name = shared
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
            )
        )

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

    if version == "3.8.2":
        # ERN 3's release profiles want a P line and a C line on every release,
        # track releases included (rule 1017-1 and its C line twin).
        if not p.c_text and not any(pr.field == "c_line_text" for pr in ck.problems):
            ck.problem("c_line_text", release.c_line_text, "is missing (ERN 3.8.2's release profiles need a C line on every release)", "set releases.c_line_text, e.g. '2024 Aurora Records'")
        missing = [t.number for t in p.tracks if not t.p_text]
        if missing and not any(pr.field.endswith("p_line_text") for pr in ck.problems):
            ck.problem("p_line_text", release.p_line_text, f"is missing for {len(missing)} track(s) (ERN 3.8.2's release profiles need a P line on every release)", "set releases.p_line_text (or tracks.p_line_text)")

    # Deals
    if need_deals and not release.deals:
        ck.problem("deals", (), "the release has no deals", "add at least one deal (territories, commercial model, use types), or send a takedown")
    deals_in = release.deals
    for i, d in sorted(enumerate(deals_in), key=_deal_order) if len(deals_in) > 1 else enumerate(deals_in):
        where = f"deals[{i}]"
        try:
            terms_key: Any = (version, d.territories, d.commercial_model, d.use_types)
            terms = _DEAL_TERMS.get(terms_key)
        except TypeError:  # unhashable junk
            terms_key, terms = None, None
        if terms is None:
            before = (len(ck.problems), len(ck.warnings))
            terms = _deal_terms(ck, voc, d, where)
            if terms_key is not None and (len(ck.problems), len(ck.warnings)) == before and len(_DEAL_TERMS) < CACHE_LIMIT:
                _DEAL_TERMS[terms_key] = terms  # clean terms only: the shared lists are never mutated
        terrs, models, uses = terms
        start = ISO_DATES.get(d.start_date) if type(d.start_date) is dt.date else None  # type: ignore[arg-type]
        if start is None:
            start = ck.date(f"{where}.start_date", d.start_date)
        end = None if d.end_date is None else ck.date(f"{where}.end_date", d.end_date)
        if start is None and d.start_date is None:
            start = p.release_date
            if start is None:
                ck.problem(f"{where}.start_date", None, f"deal {d.deal_id} has no start date and the release has no release date", "set deals.start_date or releases.release_date")
        if start and end and end < start:
            ck.problem(f"{where}.end_date", d.end_date, f"deal {d.deal_id} ends before it starts ({start})", "correct deals.end_date or deals.start_date")
        p.deals.append(PDeal(d.deal_id, terrs, models, uses, start, end))

    if p.deals:
        _deal_sanity(ck, p)
    p.cover = check_cover(ck, release)
    # The recordings were first published with the original release, or (not
    # being a compilation of earlier recordings) with this one.
    p.first_published = p.original_release_date or (None if p.compilation else p.release_date)

    p.parties = list(parties.values())
    if label is not None and p.label_name:
        p.parties.append(label_party)
    p.created = utc_stamp(created or latest_change(release) or default_created)
    if release.deleted_at is not None:
        p.deleted = ck.date("deleted_at", release.deleted_at)
    return p, ck
