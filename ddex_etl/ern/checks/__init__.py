"""Check and normalise one release into plain, version-mapped values (``prepare``).

This is where "bad data never yields an invalid document" is enforced: every
value the writers put into XML passes through here first. Each problem is
collected (not raised at the first one) so one ``ReleaseDataError`` lists all
of them, each naming the field, the value and the fix. With ``repair`` on,
XML-illegal control characters and surrounding whitespace are removed and a
warning is recorded instead.

One module per concern, each stating the rules that decide what is rejected:

- ``release``: title, release type, ICPN, GRid, language, genre, P and C
  lines, dates, parental warning; when the message was created.
- ``parties``: release and track artists, contributors and their roles, the label.
- ``tracks``: ISRCs, titles, positions, audio files, durations, each track's credits.
- ``deals``: territories, commercial models, use types, dates; warnings about
  deals a store would question.
- ``cover``: the front cover image.
- ``sanity``: warnings stores' style guides ask for (Various Artists on a
  track, Explicit without an explicit track, a late P line, track counts).
- ``vocabulary``: catalog spellings -> each ERN version's allowed values.
- ``checker``: the field checks they all use (text, identifiers, choices, years, dates).

The result, ``ddex_etl.ern.prepared.Prepared``, is what the writers read.

Speed matters here (the builder must do thousands of releases per second per
core), so clean values take inline fast paths and the checker's slower,
message-building paths run only for values that need them. Clean artist and
deal-term results and the ISO text of dates are memoised per process (each
cache capped at ``checker.CACHE_LIMIT`` entries); they are pure functions of
their inputs, so the output does not depend on what was built before.
"""
from __future__ import annotations

import datetime as dt

from ...models import Release
from ..prepared import Prepared
from .checker import Checker
from .cover import check_cover
from .deals import check_deals
from .parties import Credits, check_label
from .release import check_c_line, check_details, check_ern3_lines, check_identity, date_message
from .sanity import check_sanity
from .tracks import check_tracks
from .vocabulary import VOCABULARIES

__all__ = ["Checker", "Prepared", "prepare"]


def prepare(
    release: Release,
    version: str,
    repair: bool,
    default_created: dt.datetime,
    need_deals: bool = True,
    created: dt.datetime | None = None,
    default_c_line: str | None = None,
) -> tuple[Prepared, Checker]:
    """Check and map one release; the caller raises if ``checker.problems``.

    ``created`` is the message's creation time (a run's frozen start); without
    it the release's latest change dates the message, else ``default_created``.
    """
    # The order of the steps is the order of the problems in a rejection.
    voc = VOCABULARIES[version]
    ck = Checker(release.release_id, repair)
    p = Prepared(release_id=release.release_id, version=version)
    check_identity(ck, voc, release, p)
    people = Credits(ck, voc)
    people.release_artists(release)
    p.artists, p.display_name = people.display, people.display_name
    label = check_label(ck, release, p)
    check_details(ck, voc, release, p)
    check_c_line(ck, release, p, default_c_line)
    check_tracks(ck, voc, release, p, people)
    if version == "3.8.2":
        check_ern3_lines(ck, release, p)
    check_deals(ck, voc, release, p, need_deals)
    p.cover = check_cover(ck, release)
    # The recordings were first published with the original release, or (not
    # being a compilation of earlier recordings) with this one.
    p.first_published = p.original_release_date or (None if p.compilation else p.release_date)
    p.parties = list(people.parties.values())
    if label is not None:
        p.parties.append(label)
    date_message(ck, release, p, created, default_created)
    if not ck.problems:
        check_sanity(ck, p)
    return p, ck
