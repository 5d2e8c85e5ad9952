"""Helpers for comparing ERN messages across runs.

Two runs deliver the same content under different MessageIds and creation
times (a MessageId is never reused), so tests that compare the output of
separate runs compare the messages without their MessageHeader, and check
the headers on their own where that is the point.
"""
from __future__ import annotations

import re

_HEADER = re.compile(rb"<MessageHeader>.*?</MessageHeader>", re.S)
_FIELD = re.compile(rb"<(MessageId|MessageCreatedDateTime|MessageControlType)>([^<]*)</")


def without_header(xml: bytes) -> bytes:
    """The message with its MessageHeader removed (other bytes untouched)."""
    return _HEADER.sub(b"", xml, count=1)


def header(xml: bytes) -> dict[str, str]:
    """MessageId, MessageCreatedDateTime and MessageControlType of a message."""
    m = _HEADER.search(xml)
    assert m is not None, "no MessageHeader"
    return {k.decode(): v.decode() for k, v in _FIELD.findall(m.group(0))}
