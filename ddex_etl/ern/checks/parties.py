"""Parties: the release's and its tracks' artists and contributors, and the label.

A release needs a label with a name and at least one display artist
(MainArtist, FeaturedArtist or Artist). An artist's ISNI and the label's
DPID are optional: one with a wrong check character (or shape) is left out
of the message with a warning naming the artist or label, the field and
the fix, and the release still ships. Each person is checked once per release (and clean results once
per process), declared once as a party, and referenced from every credit:

- Display artists are ordered by the catalog's sequence; ties go to
  MainArtist, then Artist, then FeaturedArtist, then by name (an artist id
  decides only between two credits equal in all of these, so output stays
  deterministic). Several MainArtists (a duet) stay MainArtists, in that
  order: DDEX lets a label name more than one main artist.
- Contributors (Composer, Lyricist, Producer, ...) are listed once per person
  with all their roles, as the release profiles require. Release-level
  contributors have no place on an ERN release, so they are credited on
  every sound recording of the release.
- A track without display artists of its own takes the release's.
"""
from __future__ import annotations

import operator
import re
from typing import Any

from ...dpid import dpid_fix, dpid_problem
from ...models import Contributor, Release
from .. import identifiers
from ..prepared import PContributor, PCredit, PParty, Prepared
from .checker import CACHE_LIMIT, Checker
from .vocabulary import DISPLAY_ROLES, Vocabulary

_ISNI = re.compile(r"[0-9]{15}[0-9X]")
_REF_UNSAFE = re.compile(r"[^0-9A-Za-z_-]")
# Artists recur across a catalog; clean results are memoised per process
# (pure functions of their key and the ERN version).
_ARTISTS: dict[Any, tuple[str, str, bool, str, str | None]] = {}
_MISSING = object()

# One credit resolved: (party ref, ERN role, is a display role), or None when invalid.
Resolved = tuple[str, str, bool] | None
# A track's credits: (display artists, contributors, display artist name).
TrackCredits = tuple[list[PCredit], list[PContributor], str]


def party_ref(prefix: str, ident: object) -> str:
    """A PartyReference (pattern P[\\d\\-_a-zA-Z]+) derived from a catalog id."""
    if type(ident) is int:
        return f"{prefix}{ident}"
    return prefix + _REF_UNSAFE.sub("_", str(ident))


def _display_name(names: list[tuple[str, str]]) -> str:
    """'A, B & C feat. D' from (name, role) pairs in display order."""
    if len(names) == 1:  # the common case: one artist, whatever the role
        return names[0][0]
    main = [n for n, r in names if r != "FeaturedArtist"]
    feat = [n for n, r in names if r == "FeaturedArtist"]

    def join(parts: list[str]) -> str:
        return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " & " + parts[-1]

    if not main:
        return join(feat)
    return join(main) + (" feat. " + join(feat) if feat else "")


# Display roles first (MainArtist, then Artist, then FeaturedArtist) when the
# catalog's sequence numbers tie; then the name. The id only separates
# credits equal in everything shown.
_ROLE_RANK = {"mainartist": 0, "artist": 1, "featuredartist": 2}


def _credit_key(c: Contributor) -> tuple[Any, ...]:
    role = c.role
    rank = _ROLE_RANK.get(role.lower(), 3) if type(role) is str else 3
    return (c.sequence, rank, c.name, role, c.artist_id)


_CREDIT_KEY = operator.attrgetter("artist_id", "name", "role", "sequence", "isni")


def _sorted_credits(credits: tuple[Contributor, ...]) -> list[tuple[int, Contributor]]:
    # Sort on data, not on input order, so a different row order from the
    # database cannot change the bytes.
    if len(credits) < 2:
        return list(enumerate(credits))
    try:
        order = sorted(range(len(credits)), key=list(map(_credit_key, credits)).__getitem__)
        return [(k, credits[k]) for k in order]
    except TypeError:  # mixed or missing types: compare as text
        pass

    def key(item: tuple[int, Contributor]) -> tuple[Any, ...]:
        c = item[1]
        seq = c.sequence if isinstance(c.sequence, int) and not isinstance(c.sequence, bool) else 0
        rank = _ROLE_RANK.get(c.role.lower(), 3) if isinstance(c.role, str) else 3
        return (seq, rank, str(c.name), str(c.role), str(c.artist_id), item[0])

    return sorted(enumerate(credits), key=key)


class Credits:
    """One release's people: each credit checked once, each person declared once.

    ``parties`` holds the artist parties in the order they were first met;
    the release's own credits (``release_artists``) come first, then each
    track's (``for_track``), which also carry the release's non-display roles.
    """

    __slots__ = (
        "_by_credits", "_by_ids", "_by_tuple", "_isnis", "_resolved", "_resolved_ids",
        "ck", "display", "display_name", "other", "parties", "voc",
    )

    def __init__(self, ck: Checker, voc: Vocabulary) -> None:
        self.ck = ck
        self.voc = voc
        self.parties: dict[str, PParty] = {}
        self._isnis: dict[str, str] = {}  # ISNI -> the party ref that has it
        self.display: list[PCredit] = []  # the release's display artists
        self.display_name = ""
        self.other: list[tuple[str, str]] = []  # (ref, role) of the release's other roles
        # (artist_id, name, role, isni) -> resolved. The same people recur on every track: check them once.
        self._resolved: dict[tuple[Any, ...], Resolved] = {}
        # The same answers by object identity: records share one Contributor per
        # line-up member, and they live as long as the release (no id is reused).
        self._resolved_ids: dict[int, Resolved] = {}
        # Tracks of a release usually share their credits: map each distinct
        # contributors tuple once (the lists are shared, never mutated).
        self._by_credits: dict[tuple[Any, ...], TrackCredits] = {}
        self._by_ids: dict[tuple[int, ...], TrackCredits] = {}
        self._by_tuple: dict[int, tuple[Any, TrackCredits]] = {}

    def resolve(self, c: Contributor, where: str, j: int) -> Resolved:
        """Resolve one credit; ``where`` and ``j`` name it (``where[j]``) in problems and warnings."""
        resolved_ids = self._resolved_ids
        done = resolved_ids.get(id(c), _MISSING)
        if done is not _MISSING:
            return done  # type: ignore[return-value]
        resolved = self._resolved
        parties = self.parties
        version = self.voc.version
        key = (c.artist_id, c.name, c.role, c.isni)
        out: Resolved
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
                    parties[ref] = PParty(ref, name, self._own_isni(isni, ref, c, where, j) if isni else None)
                out = resolved[key] = resolved_ids[id(c)] = (ref, role, is_display)
                return out
        ck = self.ck
        fresh = key is not None and party_ref("PA", c.artist_id) not in parties
        before = (len(ck.problems), len(ck.warnings))
        out = self._resolve_slow(c, f"{where}[{j}]")
        if key is not None:
            resolved[key] = resolved_ids[id(c)] = out
            if fresh and out is not None and (len(ck.problems), len(ck.warnings)) == before and len(_ARTISTS) < CACHE_LIMIT:
                party = parties[out[0]]
                _ARTISTS[(version, key)] = (*out, party.name, party.isni)
        return out

    def _resolve_slow(self, c: Contributor, where: str) -> Resolved:
        ck, parties = self.ck, self.parties
        ref = party_ref("PA", c.artist_id)
        ok = True
        if ref not in parties:
            name = ck.text(f"{where}.name", c.name, True, "set the artist's name (artists.name)")
            isni = self._isni(c, where) if c.isni is not None else None
            if isni is not None:
                isni = self._own_isni(isni, ref, c, where)
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
        found = ck.choice(f"{where}.role", role_text, self.voc.roles, "contributor role")
        return (ref, found, False) if ok and found else None

    def _own_isni(self, isni: str, ref: str, c: Contributor, where: str, j: int | None = None) -> str | None:
        """``isni``, unless another artist of the release has it: one ISNI is one person, so the later
        artist is sent without it (with a warning); two contributors with one PartyId break ERN 3's
        profiles (rules 1028-1, 1101-1) and would merge two people at the store."""
        owner = self._isnis.setdefault(isni, ref)
        if owner == ref:
            return isni
        at = where if j is None else f"{where}[{j}]"
        self.ck.warnings.append(
            f"release {self.ck.release_id}: {at}.isni: {isni!r} of artist {c.artist_id} ({c.name}) is also the ISNI of "
            f"another artist of the release ({owner[2:]}); the artist is sent without it; fix: correct artists.isni "
            "(one ISNI per person), or merge the two artists"
        )
        return None

    def _isni(self, c: Contributor, where: str) -> str | None:
        """The artist's ISNI, or None: a bad one is dropped from the message with a warning (it is optional)."""
        value = c.isni
        isni = value if type(value) is str and _ISNI.fullmatch(value) else None
        if isni is None:
            # Whitespace and control characters follow the repair setting, as for any text.
            text = self.ck.text(f"{where}.isni", value)
            if text is None:
                return None
            isni = text if _ISNI.fullmatch(text) else None
        if isni is None:
            hint = re.sub(r"[\s-]", "", text).upper()
            fix = f"correct artists.isni to 16 characters, e.g. {hint!r}" if _ISNI.fullmatch(hint) else "correct artists.isni (16 characters: 15 digits and a check character), or leave it empty"
            self.ck.warnings.append(
                f"release {self.ck.release_id}: {where}.isni: {value!r} of artist {c.artist_id} ({c.name}) is not an ISNI; "
                f"the artist is sent without it; fix: {fix}"
            )
            return None
        wrong = identifiers.isni_problem(isni)
        if wrong:
            expected = identifiers.isni_check_character(isni[:15])
            self.ck.warnings.append(
                f"release {self.ck.release_id}: {where}.isni: {isni!r} of artist {c.artist_id} ({c.name}) {wrong}; "
                f"the artist is sent without it; fix: correct artists.isni (with check character {expected}: "
                f"{isni[:15]}{expected}, if the rest is right), or leave it empty"
            )
            return None
        return isni

    def release_artists(self, release: Release) -> None:
        """The release's credits: display artists on the release; other roles go on every recording."""
        ck, parties = self.ck, self.parties
        rel_display = self.display
        rel_names: list[tuple[str, str]] = []
        rel_other = self.other
        rel_seen: set[tuple[str, str]] = set()  # (ref, role) of rel_display
        for i, c in _sorted_credits(release.artists):
            r = self.resolve(c, "artists", i)
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
        self.display_name = _display_name(rel_names) if rel_names else ""

    def for_track(self, credits: tuple[Contributor, ...], i: int) -> TrackCredits:
        """The credits of ``tracks[i]``: its display artists, its contributors and its display artist name."""
        # The same Contributor objects usually recur from track to track: look
        # them up by identity first (they live as long as the release), by value
        # second. Only hashable (clean-typed) credits are ever stored.
        by_tuple = self._by_tuple
        try:
            # Records read through a chunk share one tuple per line-up: try
            # the tuple itself before its members.
            shared = by_tuple.get(id(credits))
            if shared is not None and shared[0] is credits:
                return shared[1]
            ikey: Any = tuple(map(id, credits))
            found = self._by_ids.get(ikey)
            if found is not None:
                by_tuple[id(credits)] = (credits, found)
                return found
            ckey: Any = tuple(map(_CREDIT_KEY, credits))
            found = self._by_credits.get(ckey)
            if found is not None:
                self._by_ids[ikey] = found
                return found
        except TypeError:  # unhashable junk: no sharing
            ckey = None
        found = self._track_credits(credits, i)
        if ckey is not None:
            self._by_credits[ckey] = self._by_ids[ikey] = found
            by_tuple[id(credits)] = (credits, found)
        return found

    def _track_credits(self, credits: tuple[Contributor, ...], i: int) -> TrackCredits:
        parties, resolve, work_roles = self.parties, self.resolve, self.voc.work_roles
        artists: list[PCredit] = []
        names: list[tuple[str, str]] = []
        contributors: list[PContributor] = []
        # One entry per person (and, in ERN 3.8.2, per kind: recording or work
        # contributor), holding all their roles in credit order.
        people: dict[tuple[str, bool], PContributor] = {}
        seen: set[tuple[str, str]] = set()
        where = f"tracks[{i}].contributors"

        def contribute(ref: str, role: str) -> None:
            work = role in work_roles
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
        for ref, role in self.other:
            if (ref, role) not in seen:
                seen.add((ref, role))
                contribute(ref, role)
        if not artists:
            return self.display, contributors, self.display_name
        return artists, contributors, _display_name(names)


def check_label(ck: Checker, release: Release, p: Prepared) -> PParty | None:
    """The release's label (its name and reference on ``p``), as a party; None without a named label."""
    label = release.label
    if label is None:
        ck.problem("label", None, "the release has no label", "set releases.label_id to a label with a name")
        return None
    p.label_name = ck.text("label.name", label.name, True, "set labels.name") or ""
    p.label_ref = party_ref("PL", label.label_id)
    dpid = _label_dpid(ck, label.dpid, label.label_id)
    if p.label_name:
        return PParty(p.label_ref, p.label_name, None, dpid)
    return None


_GOOD_DPIDS: set[str] = set()  # label DPIDs seen valid in this process (a handful per catalog)


def _label_dpid(ck: Checker, value: object, label_id: object) -> str | None:
    """The label's DPID, or None. A bad one is left out with a warning: the label
    is still named, and its DPID is optional, so the release is not rejected."""
    if type(value) is str and value in _GOOD_DPIDS:
        return value
    if value is None:
        return None
    text = ck.text("label.dpid", value)
    if text is None:
        return None
    wrong = dpid_problem(text)
    if wrong is not None:
        ck.warnings.append(
            f"release {ck.release_id}: label.dpid: {text!r} of label {label_id} {wrong}; the label is sent without it; "
            f"fix: correct labels.dpid ({dpid_fix(text)}), or leave it empty"
        )
        return None
    if len(_GOOD_DPIDS) < CACHE_LIMIT:
        _GOOD_DPIDS.add(text)
    return text
