"""Release fields: what the message says about the release itself, and when the message was made.

Required: title, release type, ICPN (UPC-A, EAN-13 or GTIN-14 with a right
GS1 check digit): a bad one rejects the release. The GRid is optional: a bad
one (shape or check character) is left out with a warning naming the
expected character. ERN 3.8.2's release profiles also want a P
line and a C line on every release; a missing C line is filled in every
version alike (``check_c_line``).
"""
from __future__ import annotations

import datetime as dt
import operator
import re

from ...models import Release
from .. import identifiers
from .._text import utc_stamp
from ..prepared import Prepared
from .checker import Checker
from .vocabulary import Vocabulary

_ICPN = re.compile(r"[0-9]{12,14}")
_GRID = re.compile(r"[A-Z0-9]{18}")
_LANG = re.compile(r"[a-zA-Z]{2,3}(-[a-zA-Z]+){0,1}(-[a-zA-Z]{2}|-[0-9]{3}){0,1}(-[a-zA-Z][a-zA-Z0-9]{4}[a-zA-Z0-9]*){0,1}")

def check_identity(ck: Checker, voc: Vocabulary, release: Release, p: Prepared) -> None:
    """Title, version title, release type, ICPN, GRid, language of the titles, catalog number."""
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
    p.grid = _grid(ck, release.grid) if release.grid is not None else None
    if release.language is not None:
        lang = ck.text("language", release.language)
        if lang is not None and not _LANG.fullmatch(lang):
            ck.problem("language", release.language, "is not an RFC 5646 language code", "set releases.language to a code such as 'en', 'ja' or 'pt-BR'")
            lang = None
        p.language = lang
    p.catalog_number = ck.text("catalog_number", release.catalog_number)


def _grid(ck: Checker, value: object) -> str | None:
    """The release's GRid, or None: optional, so a bad one is left out with a warning (the ICPN identifies the release)."""
    if type(value) is str and _GRID.fullmatch(value):
        grid = value
    else:
        # Whitespace and control characters follow the repair setting, as for any text.
        text = ck.text("grid", value)
        if text is None:
            return None
        if not _GRID.fullmatch(text):
            ck.warnings.append(
                f"release {ck.release_id}: grid: {value!r} is not a GRid (18 letters and digits); the release is sent "
                "without it; fix: correct releases.grid, e.g. A10302B0001234567I, or leave it empty"
            )
            return None
        grid = text
    wrong = identifiers.grid_problem(grid)
    if wrong:
        expected = identifiers.grid_check_character(grid[:17])
        ck.warnings.append(
            f"release {ck.release_id}: grid: {grid!r} {wrong}; the release is sent without it; fix: correct releases.grid "
            f"(with check character {expected}: {grid[:17]}{expected}, if the rest is right), or leave it empty"
        )
        return None
    return grid


def check_details(ck: Checker, voc: Vocabulary, release: Release, p: Prepared) -> None:
    """Genre, P and C lines, release dates, parental warning."""
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


def check_c_line(ck: Checker, release: Release, p: Prepared, default: str | None) -> None:
    """Every version: a release without a C line gets the default one, with a warning.

    One policy whatever the ERN version, so the same releases ship everywhere:
    ERN 3.8.2's release profiles need a C line on every release (a Fatal
    Error without one) and stores show it beside the P line. The default is
    ``default`` (``transform.default_c_line``) when configured, else the
    label's: "<year> <label name>", the year being the C line's, else the
    release date's. A release with neither a C line, a default nor a label
    is rejected (the label check says so already).
    """
    if p.c_text or any(pr.field == "c_line_text" for pr in ck.problems):
        return
    if default is not None:
        p.c_text = default
        source = "transform.default_c_line"
    elif p.label_name:
        year = p.c_year or (int(p.release_date[:4]) if p.release_date else None)
        p.c_text = f"{year} {p.label_name}" if year else p.label_name
        source = "the label (no transform.default_c_line is configured)"
    else:
        return
    ck.warnings.append(
        f"release {ck.release_id}: c_line_text: the release has no C line; sent {p.c_text!r} from {source}; "
        "fix: set releases.c_line_text (or transform.default_c_line)"
    )


def check_ern3_lines(ck: Checker, release: Release, p: Prepared) -> None:
    """ERN 3.8.2: a P line on every release (after the tracks, which may carry the P line)."""
    # ERN 3's release profiles want a P line and a C line on every release,
    # track releases included (rule 1017-1 and its C line twin); the C line
    # is check_c_line's, for every version.
    missing = [t.number for t in p.tracks if not t.p_text]
    if missing and not any(pr.field.endswith("p_line_text") for pr in ck.problems):
        ck.problem("p_line_text", release.p_line_text, f"is missing for {len(missing)} track(s) (ERN 3.8.2's release profiles need a P line on every release)", "set releases.p_line_text (or tracks.p_line_text)")


def date_message(ck: Checker, release: Release, p: Prepared, created: dt.datetime | None, default_created: dt.datetime) -> None:
    """When the message was created, and the takedown date, if the release was taken down."""
    p.created = utc_stamp(created or latest_change(release) or default_created)
    if release.deleted_at is not None:
        p.deleted = ck.date("deleted_at", release.deleted_at)


_UPDATED = operator.attrgetter("updated_at")


def latest_change(release: Release) -> dt.datetime | None:
    """The latest updated_at over the release, its tracks and its deals."""
    stamps = [s for s in (release.updated_at, *map(_UPDATED, release.tracks), *map(_UPDATED, release.deals)) if isinstance(s, dt.datetime)]
    if not stamps:
        return None
    try:  # all aware (or all naive): datetimes compare across time zones directly
        return max(stamps)
    except TypeError:  # a mix of naive and aware: naive ones are UTC
        return max(stamps, key=lambda s: s if s.tzinfo is not None else s.replace(tzinfo=dt.timezone.utc))
