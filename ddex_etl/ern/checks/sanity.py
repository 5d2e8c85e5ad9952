"""Warnings that stores' style guides ask for: nothing is rejected, the label is told what a store may question.

- "Various Artists" (or "Various") credited as a track's artist: stores want
  each track of a compilation credited to its real performers.
- A release marked Explicit none of whose tracks is explicit.
- A P line year after the recordings' first publication.
- An EP or a single outside its usual track count: a single has 1 to 3
  tracks; an EP 4 to 6, or fewer when one runs 10 minutes or more (the
  common store rule).

(A subscription deal granting PermanentDownload is warned about with the
other deal warnings, in ``deals``.)
"""
from __future__ import annotations

from ..prepared import Prepared
from .checker import Checker

_VARIOUS = frozenset({"various artists", "various", "va"})


def check_sanity(ck: Checker, p: Prepared) -> None:
    """Add the style-guide warnings for a prepared release (its tracks and parties are final)."""
    rid = p.release_id
    tracks = p.tracks
    if not tracks:
        return
    names = {party.ref: party.name for party in p.parties}
    credited: dict[int, bool] = {}  # id of a shared artists list -> names Various Artists
    various = []
    for t in tracks:
        hit = credited.get(id(t.artists))
        if hit is None:
            hit = credited[id(t.artists)] = any(names.get(c.ref, "").strip().casefold() in _VARIOUS for c in t.artists)
        if hit:
            various.append(t.num)
    if various:
        shown = ", ".join(map(str, various[:10])) + (" ..." if len(various) > 10 else "")
        ck.warnings.append(
            f"release {rid}: track(s) {shown} are credited to 'Various Artists': stores refuse it as a track artist; "
            "fix: credit each track's own performers (track_contributors with role MainArtist)"
        )
    if p.parental == "Explicit" and not any(t.parental == "Explicit" for t in tracks):
        ck.warnings.append(
            f"release {rid}: the release is marked Explicit but none of its tracks is; fix: mark the explicit "
            "track(s) (tracks.parental_warning = 'Explicit'), or the release NotExplicit"
        )
    published = p.first_published
    if published:
        year = int(published[:4])
        late = sorted({y for y in [p.p_year, *(t.p_year for t in tracks)] if y is not None and y > year})
        if late:
            ck.warnings.append(
                f"release {rid}: P line year {late[-1]} is after the recordings' first publication ({published}); "
                "fix: correct p_line_year (the year the recording was first published), or original_release_date"
            )
    n = len(tracks)
    if p.release_type == "Single" and n > 3:
        ck.warnings.append(
            f"release {rid}: a Single with {n} tracks: stores expect 1 to 3; fix: release it as an EP or Album, "
            "or check the tracks"
        )
    elif p.release_type == "EP" and (n > 6 or (n < 4 and not any(t.seconds >= 600 for t in tracks))):
        ck.warnings.append(
            f"release {rid}: an EP with {n} track(s): stores expect 4 to 6 (or 1 to 3 with one of 10 minutes or more); "
            "fix: release it as a Single or Album, or check the tracks"
        )
