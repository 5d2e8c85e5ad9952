"""Check characters of the identifiers a store verifies: ICPN, ISNI, GRid, DPID, ISRC.

Each ``*_problem`` function takes a value that already has the right shape
(``checks`` matches the pattern first) and returns ``None`` when it is a real
identifier, else a sentence saying what is wrong, with the expected check
character, for the release's ``FieldProblem``.

The algorithms are public standards: GS1's mod-10 for barcodes (UPC-A,
EAN-13, GTIN-14), ISO 7064 MOD 11-2 for the ISNI, ISO 7064 MOD 37,36 for
the GRid and for the DDEX party id (DPID: ``PADPIDA`` + 10 characters + the
check character; the algorithm reproduces every 18-character DPID in DDEX's
own samples). An ISRC has no check character; its first two letters must be a
country code (ISO 3166-1 alpha-2) or one of the prefixes the ISRC agency
hands out beyond them.
"""
from __future__ import annotations

from ..dpid import DEMO_RECIPIENT_DPID, DEMO_SENDER_DPID, dpid_fix, dpid_problem, mod37_36_check_character
from . import avs

__all__ = [
    "DEMO_RECIPIENT_DPID", "DEMO_SENDER_DPID", "ISRC_PREFIXES", "dpid_fix", "dpid_problem", "grid_check_character", "grid_problem",
    "gs1_check_digit", "icpn_problem", "isni_check_character", "isni_problem", "isrc_problem",
]

# ISO 3166-1 alpha-2 codes (the ERN 4.3 territory list minus its regions and
# 4-letter historic codes) plus the prefixes the International ISRC Agency
# allocates outside ISO 3166 (FX, QM, QT, QZ for the US, UK, CP, DG, ZZ ...).
ISRC_PREFIXES = frozenset(
    {c for c in avs.TERRITORIES["4.3"] if len(c) == 2 and c.isalpha() and c.isupper()}
    | {"FX", "QM", "QN", "QT", "QZ", "UK", "CP", "DG", "ZZ", "XK"}
)


def gs1_check_digit(body: str) -> str:
    """The GS1 mod-10 check digit for the digits of ``body`` (all but the last of a barcode)."""
    total = 0
    # Weights 3, 1, 3, ... counted from the right of the body.
    for i, ch in enumerate(reversed(body)):
        total += int(ch) * (3 if i % 2 == 0 else 1)
    return str((10 - total % 10) % 10)


def icpn_problem(code: str) -> str | None:
    """UPC-A (12), EAN-13 (13) or GTIN-14 (14 digits): the last digit must be the GS1 check digit."""
    expected = gs1_check_digit(code[:-1])
    if code[-1] != expected:
        return f"has check digit {code[-1]}, but the GS1 check digit of {code[:-1]} is {expected}"
    return None


def isni_check_character(body15: str) -> str:
    """ISO 7064 MOD 11-2 check character of 15 digits ('0'-'9' or 'X')."""
    total = 0
    for ch in body15:
        total = (total + int(ch)) * 2
    check = (12 - total % 11) % 11
    return "X" if check == 10 else str(check)


def isni_problem(code: str) -> str | None:
    """16 characters (15 digits + check character): the last must be the MOD 11-2 check character."""
    expected = isni_check_character(code[:15])
    if code[15].upper() != expected:
        return f"has check character {code[15]}, but the ISO 7064 MOD 11-2 check character of {code[:15]} is {expected}"
    return None


def grid_check_character(body17: str) -> str:
    """ISO 7064 MOD 37,36 check character of 17 letters and digits (a GRid's, as a DPID's)."""
    return mod37_36_check_character(body17)


def grid_problem(code: str) -> str | None:
    """18 characters: the last must be the MOD 37,36 check character of the first 17."""
    expected = grid_check_character(code[:17])
    if code[17].upper() != expected:
        return f"has check character {code[17]}, but the ISO 7064 MOD 37,36 check character of {code[:17]} is {expected}"
    return None


def isrc_problem(code: str) -> str | None:
    """An ISRC's first two letters must be a country code or an ISRC agency prefix."""
    if code[:2] not in ISRC_PREFIXES:
        return f"starts with {code[:2]!r}, which is neither an ISO 3166 country code nor an ISRC agency prefix"
    return None

