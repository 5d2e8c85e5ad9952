"""Text helpers shared by the ERN writers: XML escaping and date/duration formats.

Every text value is escaped exactly once, by ``esc`` (element text) or
``attr`` (attribute values), right where it is written into the template.
"""
from __future__ import annotations

import datetime as dt
import re

# XML 1.0 Char production: everything else may not appear in a document, not
# even as a character reference. Lone surrogates cannot be encoded as UTF-8.
ILLEGAL_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def esc(s: str) -> str:
    """Escape element text. ``\\r`` becomes a reference so parsers keep it."""
    if "&" in s:
        s = s.replace("&", "&amp;")
    if "<" in s:
        s = s.replace("<", "&lt;")
    if ">" in s:
        s = s.replace(">", "&gt;")
    if "\r" in s:
        s = s.replace("\r", "&#13;")
    return s


def attr(s: str) -> str:
    """Escape an attribute value written between double quotes."""
    s = esc(s)
    if '"' in s:
        s = s.replace('"', "&quot;")
    if "\n" in s or "\t" in s:  # attribute-value normalisation would turn them into spaces
        s = s.replace("\n", "&#10;").replace("\t", "&#9;")
    return s


def iso_duration(seconds: float) -> str:
    """ISO 8601 duration, e.g. 205 -> PT3M25S, 3725.5 -> PT1H2M5.5S (milliseconds kept)."""
    millis = int(round(seconds * 1000))
    whole, ms = divmod(millis, 1000)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    out = "PT"
    if hours:
        out += f"{hours}H"
    if minutes or hours:
        out += f"{minutes}M"
    if ms:
        out += f"{secs}.{ms:03d}".rstrip("0") + "S"
    else:
        out += f"{secs}S"
    return out


# Two-digit fields of timestamps, looked up instead of formatted with a spec
# (int.__format__ with "02d" costs several times a list index).
_TWO = tuple(f"{i:02d}" for i in range(100))


def utc_stamp(value: dt.datetime) -> str:
    """A fixed-format UTC timestamp (seconds precision); naive values are taken as UTC."""
    if value.tzinfo is not None:
        try:
            value = value.astimezone(dt.timezone.utc)
        except OverflowError:  # year 1 or 9999 shifted out of range: keep the wall time
            pass
    v = value
    two = _TWO
    year = v.year
    return f"{year if year >= 1000 else f'{year:04d}'}-{two[v.month]}-{two[v.day]}T{two[v.hour]}:{two[v.minute]}:{two[v.second]}Z"


def image_sizes(height: int | None, width: int | None) -> str:
    """An image's pixel height and width elements, each left out when unknown (same in every ERN version)."""
    sizes = ""
    if height:
        sizes += f'<ImageHeight UnitOfMeasure="Pixel">{height}</ImageHeight>'
    if width:
        sizes += f'<ImageWidth UnitOfMeasure="Pixel">{width}</ImageWidth>'
    return sizes
