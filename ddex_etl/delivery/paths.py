"""Relative paths that can never leave the folder or prefix they are joined to.

Every path a target or the resource copier receives goes through
``safe_relpath`` first. Catalog data (release identifiers, audio file names)
ends up in these paths, so the checks are strict: forward slashes only, no
empty, ``.`` or ``..`` segments, no absolute paths, no control characters and
no backslashes (which some SFTP servers and Windows shares treat as
separators).
"""
from __future__ import annotations

import re
import unicodedata

from ..errors import DeliveryTerminalError

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_SEGMENT = 255  # the usual file-name limit (ext4, most SFTP servers)


class UnsafePathError(DeliveryTerminalError):
    """A relative path would leave its folder, or holds characters no target accepts."""


def safe_relpath(relpath: str, *, what: str = "path") -> str:
    """``relpath`` as a clean relative POSIX path, or ``UnsafePathError`` saying why not.

    ``what`` names the path in the message (e.g. ``"tracks[2].audio_file"``).
    """
    problem = _problem(relpath)
    if problem:
        raise UnsafePathError(
            f"{what} {relpath!r} is refused: {problem}; fix: use a relative path made of plain names "
            "separated by '/', without '..', a leading '/' or control characters"
        )
    return relpath


def _problem(relpath: object) -> str | None:
    if not isinstance(relpath, str):
        return f"it is a {type(relpath).__name__}, not text"
    if not relpath:
        return "it is empty"
    if relpath.startswith("/") or re.match(r"^[A-Za-z]:", relpath):
        return "it is absolute"
    if "\\" in relpath:
        return "it holds a backslash"
    if _CONTROL.search(relpath):
        return "it holds a control character"
    if "://" in relpath:
        return "it is a URL"
    for segment in relpath.split("/"):
        if segment in ("", ".", ".."):
            return "it holds an empty, '.' or '..' segment"
        if len(segment.encode("utf-8")) > MAX_SEGMENT:
            return f"a segment is longer than {MAX_SEGMENT} bytes"
        if unicodedata.normalize("NFKC", segment) in (".", ".."):
            return "a segment reads as '.' or '..' once normalised"
    return None


def is_safe_relpath(relpath: object) -> bool:
    """True when ``safe_relpath`` would accept ``relpath``."""
    return _problem(relpath) is None


def join(*parts: str) -> str:
    """Join already-checked relative parts with '/', skipping empty ones."""
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


DEFAULT_BATCH_NAMING = "{batch_id}"
# Every name the choreography has given a batch folder: plain, then with each priority indicator (1.6+).
KNOWN_BATCH_NAMINGS = ("{batch_id}", "N_{batch_id}", "P_{batch_id}", "M_{batch_id}")


def batch_folder(naming: str, batch_id: str) -> str:
    """The batch's folder on a target: ``naming`` (e.g. ``"N_{batch_id}"``) with the batch id in it, checked."""
    if naming.count("{batch_id}") != 1:
        raise DeliveryTerminalError(f"batch folder naming {naming!r} must hold {{batch_id}} exactly once")
    return safe_relpath(naming.replace("{batch_id}", batch_id), what="batch folder")
