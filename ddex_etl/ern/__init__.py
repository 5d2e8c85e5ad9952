"""The ERN builder: one release record in, one DDEX message (bytes) out.

Pure and deterministic: no database, no files, no clock, no randomness. The
same records and the same ``BuildContext`` give the same bytes in any process:

- ``MessageCreatedDateTime`` is the release's latest ``updated_at`` (over the
  release, its tracks and deals; UTC, ``YYYY-MM-DDThh:mm:ssZ``), or
  ``ctx.default_created`` when there is none.
- ``MessageThreadId`` is ``<sender DPID>-<release id>``; ``MessageId`` adds the
  creation time and a CRC-32 of the message body and header fields, so it
  changes whenever the content does (``Document.checksum`` is the SHA-256).

``build`` writes ERN 4.3 (default), 4.2 or 3.8.2 from the same records with
string templates (one escape per value), several times faster than building
an lxml tree node by node (``benchmarks/bench_build.py`` prints the rate).
Validity comes from construction plus the checks in ``ddex_etl.ern.checks``,
and is proven by property tests against the official XSDs
(``tests/test_ern_property.py``).

Takedowns (``build_takedown``), by version:

- ERN 3.8.2: a ``NewReleaseMessage`` with ``UpdateIndicator`` =
  ``UpdateMessage`` whose deals carry ``<TakeDown>true</TakeDown>`` for the
  release and every track release (ERN 3's own takedown flag, in the choice
  with ``Usage``), valid from the takedown date.
- ERN 4.3 / 4.2: ``DealTerms`` has no takedown flag in ERN 4; a release is
  taken down by an update whose deals have ended. We send a full
  ``NewReleaseMessage`` in which every deal's ``ValidityPeriod`` ends on the
  takedown date (``deleted_at``, else the latest change); a release without
  deals gets one Worldwide deal that ends that day. We do not use
  ``PurgeReleaseMessage``: DDEX reserves it for withdrawing metadata sent in
  error, and it would also remove the release's history at the store.

``Document.kind`` is ``"NewReleaseMessage"`` for ``build`` and ``"TakeDown"``
for ``build_takedown``.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import re
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import ConfigError, ReleaseDataError
from ..models import Document, Party, Release
from . import ern4, ern382
from ._text import ILLEGAL_XML, esc
from .checks import PDeal, Prepared, prepare

if TYPE_CHECKING:  # the builder itself never imports the configuration layer
    from ..config import TransformConfig

__all__ = ["BuildContext", "ERN_VERSIONS", "build", "build_takedown", "context_from_config"]

ERN_VERSIONS = ("4.3", "4.2", "3.8.2")
_LANG = re.compile(r"^[a-zA-Z]{2,3}(-[a-zA-Z]+){0,1}(-[a-zA-Z]{2}|-[0-9]{3}){0,1}(-[a-zA-Z][a-zA-Z0-9]{4}[a-zA-Z0-9]*){0,1}$")
_DPID = re.compile(r"^PADPIDA[a-zA-Z0-9]+$")
_DEFAULT_CREATED = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
_XML_DECL = '<?xml version="1.0" encoding="UTF-8"?>\n'


@dataclass(frozen=True)
class BuildContext:
    """Everything besides the release that shapes the message (from ``[transform]``)."""

    ern_version: str = "4.3"
    sender: Party = field(default_factory=lambda: Party("PADPIDA0000000001X", "Demo Label Group"))
    recipient: Party = field(default_factory=lambda: Party("PADPIDA0000000002X", "Demo Store"))
    language: str = "en"
    # Strip XML-illegal control characters and surrounding whitespace with a
    # warning, instead of rejecting the release.
    repair: bool = True
    default_created: dt.datetime = _DEFAULT_CREATED  # only when the release has no updated_at

    def __post_init__(self) -> None:
        problems = []
        if self.ern_version not in ERN_VERSIONS:
            problems.append(f"ern_version: must be one of {', '.join(ERN_VERSIONS)}, got {self.ern_version!r}")
        if not _LANG.match(self.language or ""):
            problems.append(f"language: {self.language!r} is not an RFC 5646 language code such as 'en' or 'ja-Jpan'")
        for role in ("sender", "recipient"):
            party = getattr(self, role)
            if not isinstance(party, Party) or not _DPID.match(party.dpid or ""):
                problems.append(f"{role}: {party!r} needs a DDEX party id (PADPIDA...)")
            elif (
                not isinstance(party.name, str)
                or not party.name.strip()
                or party.name != party.name.strip()
                or ILLEGAL_XML.search(party.name)
            ):
                problems.append(
                    f"{role}: name {party.name!r} must be non-empty text without surrounding spaces or control characters"
                )
        if problems:
            raise ConfigError(problems)


def context_from_config(tc: TransformConfig) -> BuildContext:
    """A ``BuildContext`` from the ``[transform]`` section of the configuration."""
    return BuildContext(
        ern_version=tc.ern_version,
        sender=Party(tc.sender_dpid, tc.sender_name),
        recipient=Party(tc.recipient_dpid, tc.recipient_name),
        language=tc.language,
        repair=tc.repair,
    )


def _messaging_party(tag: str, party: Party) -> str:
    return f"<{tag}><PartyId>{party.dpid}</PartyId><PartyName><FullName>{esc(party.name)}</FullName></PartyName></{tag}>"


# The parts of a message that depend only on the context (root start tag,
# sender and recipient), per (version, language, sender, recipient). A
# process sees a handful of contexts; the cap only guards against misuse.
_FRAMES: dict[tuple[str, ...], tuple[str, str, str]] = {}
_FRAME_LIMIT = 64


def _frame(ctx: BuildContext) -> tuple[str, str, str]:
    """(XML declaration + root start tag, sender + recipient elements, recipient DPID)."""
    sender, recipient = ctx.sender, ctx.recipient
    key = (ctx.ern_version, ctx.language, sender.dpid, sender.name, recipient.dpid, recipient.name)
    hit = _FRAMES.get(key)
    if hit is None:
        version = ctx.ern_version
        root = ern382.root_open(ctx.language) if version == "3.8.2" else ern4.root_open(version, ctx.language)
        parties = _messaging_party("MessageSender", sender) + _messaging_party("MessageRecipient", recipient)
        hit = (_XML_DECL + root, parties, recipient.dpid)
        if len(_FRAMES) < _FRAME_LIMIT:
            _FRAMES[key] = hit
    return hit


def _assemble(p: Prepared, ctx: BuildContext, parts: list[str], kind: str, root_attr_extra: str = "") -> Document:
    version = ctx.ern_version
    start, parties, recipient_dpid = _frame(ctx)
    # Encoding part by part is faster than encoding one joined string: most
    # parts are ASCII (a plain copy) and only the ones holding non-ASCII text
    # pay for UTF-8 conversion. The id hashes the same bytes.
    body = b"".join(map(str.encode, parts))
    # The id must change whenever the message does; CRC-32 over the body plus
    # the header fields is enough for that (the checksum below is the SHA-256).
    created = p.created
    crc = zlib.crc32(body, zlib.crc32(f"{version}|{kind}|{recipient_dpid}|{created}".encode()))
    rid = p.release_id if type(p.release_id) is int else ILLEGAL_XML.sub("", str(p.release_id))  # ids are ints; be safe anyway
    thread = f"{ctx.sender.dpid}-{rid}"
    message_id = f"{thread}-{created[:19].replace('-', '').replace(':', '')}-{crc:08x}"
    header = (
        f"{start}<MessageHeader><MessageThreadId>{esc(thread)}</MessageThreadId><MessageId>{esc(message_id)}</MessageId>"
        f"{parties}<MessageCreatedDateTime>{created}</MessageCreatedDateTime></MessageHeader>{root_attr_extra}"
    )
    # One join copies the body once (two concatenations would copy it twice).
    xml = b"".join((header.encode(), body, b"</ern:NewReleaseMessage>\n"))
    return Document(
        release_id=p.release_id,
        ern_version=version,
        message_id=message_id,
        xml=xml,
        checksum=hashlib.sha256(xml).hexdigest(),
        kind=kind,
    )


def build(release: Release, ctx: BuildContext = BuildContext()) -> Document:
    """Build one ``NewReleaseMessage`` for ``release`` in ``ctx.ern_version``.

    Raises ``ReleaseDataError`` listing every problem (field, value, problem,
    fix) when the data cannot make a schema-valid message. Repairs made (with
    ``ctx.repair``) are listed in ``Document.warnings``.
    """
    p, ck = prepare(release, ctx.ern_version, ctx.repair, ctx.default_created)
    if ck.problems:
        raise ReleaseDataError(release.release_id, ck.problems)
    if ctx.ern_version == "3.8.2":
        parts = ern382.body(p, ctx.sender.dpid)
    else:
        parts = ern4.body(p, ctx.sender.dpid)
    doc = _assemble(p, ctx, parts, "NewReleaseMessage")
    if ck.warnings:
        doc = _with_warnings(doc, ck.warnings)
    return doc


def _with_warnings(doc: Document, warnings: list[str]) -> Document:
    return Document(doc.release_id, doc.ern_version, doc.message_id, doc.xml, doc.checksum, doc.kind, tuple(warnings))


def build_takedown(release: Release, ctx: BuildContext = BuildContext()) -> Document:
    """Build a takedown for ``release`` (see the module docstring for the form per version).

    The takedown date is ``release.deleted_at`` (else the latest change, else
    ``ctx.default_created``). The release still needs its tracks and
    identifiers; deals are optional.
    """
    p, ck = prepare(release, ctx.ern_version, ctx.repair, ctx.default_created, need_deals=False)
    if ck.problems:
        raise ReleaseDataError(release.release_id, ck.problems)
    day = p.deleted or p.created[:10]
    if not p.deals:
        p.deals = [PDeal(None, ["Worldwide"], [], [], p.release_date or day, None)]
    ended: list[PDeal] = []
    for d in p.deals:
        start = d.start or p.release_date or day
        if start > day:
            start = day
        end = d.end if d.end and d.end < day else day
        ended.append(PDeal(d.deal_id, d.territories, d.models, d.use_types, start, end))
    p.deals = ended
    if ctx.ern_version == "3.8.2":
        for d in p.deals:
            d.start = day  # TakeDown applies from this date
        parts = ern382.body(p, ctx.sender.dpid, takedown=True)
        doc = _assemble(p, ctx, parts, "TakeDown", root_attr_extra="<UpdateIndicator>UpdateMessage</UpdateIndicator>")
    else:
        parts = ern4.body(p, ctx.sender.dpid)
        doc = _assemble(p, ctx, parts, "TakeDown")
    if ck.warnings:
        doc = _with_warnings(doc, ck.warnings)
    return doc


