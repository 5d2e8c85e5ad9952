"""Keep passwords out of everything we print or store.

Two mechanisms, because neither alone is enough:

* ``mask_url`` parses a database URL (SQLAlchemy's parser, the one that
  connects) and renders it with the password and any ``password=`` query
  parameter hidden. Parsing, unlike a pattern over the text, knows where the
  password ends whatever it holds (spaces, tabs, ``#``, ``:``, ``/``, ``%``
  escapes). One repair on top: a password holding an unencoded ``@`` is
  split by every URL parser (libpq's too) at its first ``@``, leaving the
  rest in the host; everything up to the host's last ``@`` is folded back
  into the password before rendering.
* ``mask_text`` cleans free text (log lines, error messages, the state
  tables' error columns). A URL inside prose has no reliable end once its
  password holds a space, so the passwords this process knows about (the
  configured URL's, ``PGPASSWORD``; see ``remember_password``) are replaced
  verbatim first, in their plain and percent-encoded forms; then every
  URL-looking token is masked with ``mask_url``.
"""
from __future__ import annotations

import os
import re
from urllib.parse import quote, quote_plus

HIDDEN = "***"
# Passwords shorter than this are only masked inside URLs: replacing a
# two-letter password everywhere would garble ordinary words in messages.
_MIN_VERBATIM = 4
_URL_IN_TEXT = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")
_known: set[str] = set()


def remember_password(password: str | None) -> None:
    """Make ``mask_text`` hide ``password`` wherever it appears (this process and forked children)."""
    if not password or len(password) < _MIN_VERBATIM:
        return
    for form in (password, quote(password, safe=""), quote_plus(password, safe="")):
        _known.add(form)


def remember_url_password(url: str | None) -> None:
    """``remember_password`` for the password of a database URL (URL or query parameter)."""
    if not url:
        return
    parsed = _parse(url)
    if parsed is None:
        return
    remember_password(parsed.password)
    for key, value in parsed.query.items():
        if key.lower() == "password":
            for v in value if isinstance(value, tuple) else (value,):
                remember_password(v)


remember_password(os.environ.get("PGPASSWORD"))


def _parse(url: str):  # type: ignore[no-untyped-def]
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:  # not a URL SQLAlchemy understands
        return None
    if parsed.password is not None and url.count("@") > 1:
        # An unencoded "@" in the password: the parser stopped the password at
        # its first "@" and read the rest as host, database or query. The host
        # really starts after the last "@"; everything between the user's ":"
        # and it is the password. (An "@" in a query value makes this hide too
        # much, never too little.)
        scheme, _, rest = url.partition("://")
        userinfo, _, authority = rest.rpartition("@")
        try:
            tail = make_url(f"{scheme}://{authority}")
        except Exception:
            return None
        parsed = tail.set(username=parsed.username, password=userinfo.partition(":")[2])
    return parsed


def mask_url(url: str | None) -> str:
    """The URL with any password (user info or ``password=`` parameter) replaced by ``***``."""
    if not url:
        return "(embedded PostgreSQL)"
    parsed = _parse(url)
    if parsed is None:
        scheme, sep, _ = url.partition("://")
        return f"{scheme}://{HIDDEN}" if sep else HIDDEN
    query = {
        key: (HIDDEN if key.lower() == "password" else value) for key, value in parsed.query.items()
    }
    rendered = parsed.set(query=query).render_as_string(hide_password=True)
    # The renderer percent-encodes the query's "***"; show it like the password's.
    return rendered.replace("%2A%2A%2A", HIDDEN)


def mask_text(text: str | None) -> str | None:
    """``text`` with every known password and every URL's password replaced by ``***``."""
    if text is None:
        return None
    for secret in sorted(_known, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, HIDDEN)
    return _URL_IN_TEXT.sub(_mask_match, text)


def _mask_match(match: re.Match[str]) -> str:
    # Prose punctuation right after a URL ("...@host/db: refused") is not part of it.
    token = match.group(0)
    url = token.rstrip(".,;:!?)]}")
    return mask_url(url) + token[len(url):]
