"""DDEX party ids (DPIDs): the ISO 7064 MOD 37,36 check character, and the demo parties.

A DPID is ``PADPIDA`` followed by 11 letters or digits, the last being the
ISO 7064 MOD 37,36 check character of the first 17 (the GRid's algorithm; it
reproduces every 18-character DPID in DDEX's own samples). On the ground
floor because both the configuration (sender and recipient DPIDs) and the
builder (a label's DPID) check them.
"""
from __future__ import annotations

_B36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"

# The demo parties of the shipped configuration: valid DPIDs, but nobody's.
# A LiveMessage from the demo sender is refused (``ddex_etl.config``).
DEMO_SENDER_DPID = "PADPIDA0000000001O"
DEMO_RECIPIENT_DPID = "PADPIDA0000000002M"


def mod37_36_check_character(body: str) -> str:
    """ISO 7064 MOD 37,36 check character of letters and digits."""
    p = 36
    for ch in body.upper():
        s = (p + _B36.index(ch)) % 36 or 36
        p = (s * 2) % 37
    return _B36[(1 - p) % 36]


def _well_formed(code: str) -> bool:
    return len(code) == 18 and code.startswith("PADPIDA") and code.isascii() and code.isalnum()


def dpid_problem(code: str) -> str | None:
    """None for a real DPID, else what is wrong with ``code`` (a sentence for a problem or warning)."""
    if not _well_formed(code):
        return f"is not a DDEX party id: a DPID is PADPIDA followed by 11 letters or digits (18 characters), got {len(code)}"
    expected = mod37_36_check_character(code[:17])
    if code[17].upper() != expected:
        return f"has check character {code[17]}, but the ISO 7064 MOD 37,36 check character of {code[:17]} is {expected}"
    return None


def dpid_fix(code: str) -> str:
    """What to do about a bad DPID, naming the right check character when only that is wrong."""
    if _well_formed(code):
        expected = mod37_36_check_character(code[:17])
        return f"use the DPID DDEX assigned (with check character {expected}: {code[:17]}{expected}, if the rest is right)"
    return "use the 18-character DPID DDEX assigned (PADPIDA...)"
