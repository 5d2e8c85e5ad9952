"""Text PostgreSQL can always store: U+0000 and lone surrogates stand in for themselves, with a note."""
from __future__ import annotations

import json
import re
from typing import Any

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
NUL_STAND_IN = "\u2400"  # SYMBOL FOR NULL
SURROGATE_STAND_IN = "\ufffd"
UNSTORABLE_NOTE = (
    "characters PostgreSQL cannot store were replaced: U+0000 by U+2400, lone surrogates by U+FFFD"
)


def storable_text(text: str | None) -> str | None:
    """``text`` with the characters PostgreSQL refuses replaced by visible stand-ins."""
    if text is None or not _UNSTORABLE.search(text):
        return text
    return _UNSTORABLE.sub(lambda m: NUL_STAND_IN if m.group(0) == "\x00" else SURROGATE_STAND_IN, text)


def storable_json(value: Any) -> str | None:
    """``value`` as JSON text that jsonb accepts, whatever strings it holds.

    When something had to be replaced, a dict gains ``"_note"`` saying what.
    """
    if value is None:
        return None
    changed = False

    def clean(v: Any) -> Any:
        nonlocal changed
        if isinstance(v, str):
            fixed = storable_text(v)
            changed = changed or fixed != v
            return fixed
        if isinstance(v, dict):
            return {clean(str(k)): clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    # Round-trip first so that default=str values (dates, Decimals) are strings too.
    cleaned = clean(json.loads(json.dumps(value, default=str)))
    if changed and isinstance(cleaned, dict):
        cleaned["_note"] = UNSTORABLE_NOTE
    return json.dumps(cleaned)


# --------------------------------------------------------------------------- rejected releases
