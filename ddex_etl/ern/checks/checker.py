"""The field checker: one release's problems and repair warnings, and the checks every field goes through.

``Checker.text`` / ``ident`` / ``choice`` / ``year`` / ``date`` each return a
clean value or ``None``; a bad value adds a ``FieldProblem`` naming the field,
the value and the fix (all of a release's problems are collected, not raised
at the first). With ``repair`` on, XML-illegal control characters and
surrounding whitespace are removed with a warning instead. Clean values return
at the top of each check; the message-building paths run only for the rest.
"""
from __future__ import annotations

import datetime as dt
import difflib
import re
from decimal import Decimal
from typing import Any

from ...errors import FieldProblem
from .._text import ILLEGAL_XML

# Bounded so a worker's memory stays flat however large the catalog: at 100k
# entries the artist cache alone grew a worker by ~45 MB on a 200k-release run.
# Every memo of the checks (clean artists, deal terms, durations, dates) is capped at this.
CACHE_LIMIT = 10_000
# ISO text of dates: release and deal dates repeat across a catalog, and
# date.isoformat() goes through a printf-style formatter each time.
ISO_DATES: dict[dt.date, str] = {}
# An MD5 sum, as audio files and cover images carry.
MD5 = re.compile(r"[0-9a-fA-F]{32}")
_BAD = ILLEGAL_XML.search


class Checker:
    """Collects problems and repair warnings for one release."""

    __slots__ = ("release_id", "repair", "problems", "warnings")

    def __init__(self, release_id: Any, repair: bool) -> None:
        self.release_id = release_id
        self.repair = repair
        self.problems: list[FieldProblem] = []
        self.warnings: list[str] = []

    def problem(self, field_: str, value: object, problem: str, fix: str) -> None:
        self.problems.append(FieldProblem(field_, value, problem, fix))

    def text(self, field_: str, value: object, required: bool = False, fix: str = "") -> str | None:
        """A clean text value, or None (absent). Required-and-absent is a problem."""
        if type(value) is str and value and value.strip() is value and (value.isprintable() or _BAD(value) is None):
            return value  # the common case: nothing to check further
        if value is None:
            if required:
                self.problem(field_, value, "is missing", fix or f"set {field_}")
            return None
        if not isinstance(value, str):
            if isinstance(value, (int, Decimal)) and not isinstance(value, bool):
                value = str(value)
            else:
                self.problem(field_, value, f"must be text, not {type(value).__name__}", fix or f"set {field_} to text")
                return None
        s = value
        if ILLEGAL_XML.search(s):
            if self.repair:
                s = ILLEGAL_XML.sub("", s)
                self.warnings.append(
                    f"release {self.release_id}: {field_}: removed XML-illegal control characters from {value!r}"
                )
            else:
                self.problem(
                    field_,
                    value,
                    "contains characters XML 1.0 forbids (control characters, U+FFFE/U+FFFF or lone surrogates)",
                    "remove them in the catalog, or set transform.repair = true to strip them with a warning",
                )
                return None
        stripped = s.strip()
        if stripped != s:
            if self.repair or not stripped:
                if stripped:
                    self.warnings.append(
                        f"release {self.release_id}: {field_}: removed surrounding whitespace from {value!r}"
                    )
                s = stripped
            else:
                self.problem(
                    field_,
                    value,
                    "has leading or trailing whitespace",
                    "trim it in the catalog, or set transform.repair = true to trim it with a warning",
                )
                return None
        if not s:
            if required:
                self.problem(field_, value, "is empty", fix or f"set {field_} to a non-empty value")
            return None
        return s

    def ident(self, field_: str, value: object, pattern: re.Pattern[str], what: str, required: bool, example: str) -> str | None:
        if type(value) is str and pattern.fullmatch(value):
            return value
        if value is None and not required:
            return None  # what text() would say, without building its fix hint
        s = self.text(field_, value, required, fix=f"set {field_} to {what}, e.g. {example}")
        if s is None:
            return None
        if not pattern.fullmatch(s):
            hint = re.sub(r"[\s-]", "", s).upper()
            suggestion = f" (did you mean {hint!r}?)" if pattern.fullmatch(hint) else ""
            self.problem(field_, value, f"is not {what}", f"correct it to {what}, e.g. {example}{suggestion}")
            return None
        return s

    def choice(self, field_: str, value: object, table: dict[str, str], what: str) -> str | None:
        if type(value) is str:
            hit = table.get(value)
            if hit is not None:
                return hit
        s = self.text(field_, value, required=True, fix=f"set {field_} to a DDEX {what}")
        if s is None:
            return None
        found = table.get(s.lower())
        if found is None:
            allowed = sorted(set(table.values()))
            close = difflib.get_close_matches(s, allowed, n=3, cutoff=0.6)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            listing = ", ".join(allowed) if len(allowed) <= 25 else ", ".join(allowed[:25]) + f", ... ({len(allowed)} values)"
            self.problem(field_, value, f"is not a {what} in this ERN version", f"{hint}use one of: {listing}")
        return found

    def year(self, field_: str, value: object) -> int | None:
        if value is None or (type(value) is int and 1000 <= value <= 9999):
            return value
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, Decimal, float)) or not (1000 <= value <= 9999):
            self.problem(field_, value, "is not a four-digit year", f"set {field_} to a year such as 2024, or leave it empty")
            return None
        if value != int(value):
            self.problem(field_, value, "is not a whole year", f"set {field_} to a year such as 2024")
            return None
        return int(value)

    def date(self, field_: str, value: object) -> str | None:
        if value is None:
            return None
        if type(value) is dt.date and value.year >= 1000:
            text = ISO_DATES.get(value)
            if text is None:
                text = value.isoformat()
                if len(ISO_DATES) < CACHE_LIMIT:
                    ISO_DATES[value] = text
            return text
        if isinstance(value, dt.datetime):
            value = value.date()
        if isinstance(value, str):
            try:
                value = dt.date.fromisoformat(value.strip())
            except ValueError:
                self.problem(field_, value, "is not a date", f"set {field_} to a date (YYYY-MM-DD)")
                return None
        if not isinstance(value, dt.date):
            self.problem(field_, value, "is not a date", f"set {field_} to a date (YYYY-MM-DD)")
            return None
        if value.year < 1000:
            self.problem(field_, value, "is before year 1000", f"correct {field_}")
            return None
        return value.isoformat()
