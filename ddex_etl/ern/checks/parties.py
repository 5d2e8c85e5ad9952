"""Parties: artists and contributors credited on the release and its tracks, and their references."""
from __future__ import annotations

import operator
import re
from typing import Any

from ...models import Contributor

_REF_UNSAFE = re.compile(r"[^0-9A-Za-z_-]")
# Artists recur across a catalog; clean results are memoised per process
# (pure functions of their key and the ERN version).
_ARTISTS: dict[Any, tuple[str, str, bool, str, str | None]] = {}


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
