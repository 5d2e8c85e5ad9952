"""The ERN builder: one release record in, one DDEX message (bytes) out.

Pure and deterministic: no database, no files, no clock, no randomness. The
same records and the same ``BuildContext`` give the same bytes in any process.

The message header says what DDEX means by it:

- ``MessageCreatedDateTime`` is when the message was created: ``ctx.created``
  (a run's frozen start time, so a resumed run writes the same bytes). A
  build without it (the library API) dates the message by the release's
  latest ``updated_at``, else ``ctx.default_created``.
- ``MessageThreadId`` is ``<sender DPID>-<release id>``. ``MessageId`` is
  never reused for another delivery: with ``ctx.delivery_id`` it is
  ``<thread>-<delivery id>``. The pipeline passes ``run<run id>-<uuid>``, the
  uuid drawn once when the run is created and kept in its run row, so a new
  run, a ``--force`` redelivery, another recipient's job, a run after the
  state schema was dropped and recreated, on a second machine or from a
  restored backup all get new ids, and a resumed run the same ones. Without
  a delivery id (the library API), it derives from the creation time and the
  content, recipient and control type included: two equal ids are the same
  message.

"Same input, same bytes" means: the same release records and the same
``BuildContext``, the delivery id and creation time included. Within one run
(or its resumes) a release is always written the same; two runs never write
the same MessageId, even for the same content (``Document.body_checksum``
tells that the content is unchanged).
- ``MessageControlType`` is ``ctx.message_control`` (``LiveMessage``, or
  ``TestMessage`` for a store's test channel).
- ``Document.body_checksum`` hashes the message without its header, so "is
  this the same content we delivered last time?" ignores ids and dates.

``build`` writes ERN 4.3 (default), 4.2 or 3.8.2 from the same records with
string templates (one escape per value), several times faster than building
an lxml tree node by node (``benchmarks/bench_build.py`` prints the rate).
Validity comes from construction plus the checks in ``ddex_etl.ern.checks``,
and is proven by property tests against the official XSDs and DDEX's
release-profile rules (``tests/ern/test_ern_property.py``, ``tests/ern/test_profile.py``).

Takedowns (``build_takedown``) follow DDEX's guidance for every version: the
latest ``NewReleaseMessage`` carries the complete set of active deals and
replaces all earlier ones, and a release without a deal for a territory and
use is not available there ("no deal = no deal"). So a takedown is a full
``NewReleaseMessage`` whose deals are the catalog's own, cut to end the day
before the takedown date (DDEX dates are inclusive: a deal that ends on the
takedown day would keep the release on sale that whole day); a deal that
had not started by then is left out, and when none remains the message has
no ``DealList``. No deal is invented. ERN 3.8.2 gets the same form: its
``UpdateIndicator`` and ``TakeDown`` flags are deprecated by DDEX and
forbidden by the ERN 3 business profile (rules 2337-1, 2338-1). We do not
use ``PurgeReleaseMessage``: DDEX reserves it for releases whose metadata is
corrupt, and it would also remove the release's history at the store.

``Document.kind`` is ``"NewReleaseMessage"`` for ``build`` and ``"TakeDown"``
for ``build_takedown``.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from ..dpid import DEMO_RECIPIENT_DPID, DEMO_SENDER_DPID, dpid_fix, dpid_problem
from ..errors import ConfigError, ReleaseDataError
from ..models import Document, Party, Release
from . import ern4, ern382
from ._text import ILLEGAL_XML, esc, utc_stamp
from .checks import prepare
from .prepared import PDeal, Prepared

if TYPE_CHECKING:  # the builder itself never imports the configuration layer
    from ..config import TransformConfig

__all__ = ["BuildContext", "ERN_VERSIONS", "MESSAGE_CONTROL_TYPES", "build", "build_takedown", "context_from_config"]

ERN_VERSIONS = ("4.3", "4.2", "3.8.2")
MESSAGE_CONTROL_TYPES = ("LiveMessage", "TestMessage")
_DELIVERY_ID = re.compile(r"[0-9A-Za-z_.:-]{1,64}")
_LANG = re.compile(r"[a-zA-Z]{2,3}(-[a-zA-Z]+){0,1}(-[a-zA-Z]{2}|-[0-9]{3}){0,1}(-[a-zA-Z][a-zA-Z0-9]{4}[a-zA-Z0-9]*){0,1}")
_DPID = re.compile(r"PADPIDA[a-zA-Z0-9]+")
_DEFAULT_CREATED = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
_XML_DECL = '<?xml version="1.0" encoding="UTF-8"?>\n'


@dataclass(frozen=True)
class BuildContext:
    """Everything besides the release that shapes the message (from ``[transform]``)."""

    ern_version: str = "4.3"
    sender: Party = field(default_factory=lambda: Party(DEMO_SENDER_DPID, "Demo Label Group"))
    recipient: Party = field(default_factory=lambda: Party(DEMO_RECIPIENT_DPID, "Demo Store"))
    language: str = "en"
    # Strip XML-illegal control characters and surrounding whitespace with a
    # warning, instead of rejecting the release.
    repair: bool = True
    default_created: dt.datetime = _DEFAULT_CREATED  # only when the release has no updated_at
    message_control: str = "LiveMessage"  # MessageControlType: LiveMessage or TestMessage
    # Per delivery (a run): what makes MessageId unique, and the creation time.
    delivery_id: str | None = None
    created: dt.datetime | None = None
    # ERN 3.8.2: declare the DDEX business profiles the deals follow
    # (BusinessProfileVersionId); only for a store that asks for them.
    business_profiles: bool = False
    # The C line of a release that has none (every version); None: such a release is rejected.
    default_c_line: str | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.message_control not in MESSAGE_CONTROL_TYPES:
            problems.append(f"message_control: must be one of {', '.join(MESSAGE_CONTROL_TYPES)}, got {self.message_control!r}")
        if self.delivery_id is not None and not (isinstance(self.delivery_id, str) and _DELIVERY_ID.fullmatch(self.delivery_id)):
            problems.append(f"delivery_id: {self.delivery_id!r} must be 1 to 64 letters, digits or _.:-")
        if self.created is not None and not isinstance(self.created, dt.datetime):
            problems.append(f"created: {self.created!r} must be a datetime")
        if self.default_c_line is not None and (
            not isinstance(self.default_c_line, str) or not self.default_c_line.strip()
            or self.default_c_line != self.default_c_line.strip() or ILLEGAL_XML.search(self.default_c_line)
        ):
            problems.append(f"default_c_line: {self.default_c_line!r} must be non-empty text without surrounding spaces or control characters")
        if self.ern_version not in ERN_VERSIONS:
            problems.append(f"ern_version: must be one of {', '.join(ERN_VERSIONS)}, got {self.ern_version!r}")
        if not _LANG.fullmatch(self.language or ""):
            problems.append(f"language: {self.language!r} is not an RFC 5646 language code such as 'en' or 'ja-Jpan'")
        for role in ("sender", "recipient"):
            party = getattr(self, role)
            if not isinstance(party, Party) or not isinstance(party.dpid, str) or not _DPID.fullmatch(party.dpid):
                problems.append(f"{role}: {party!r} needs a DDEX party id (PADPIDA...)")
            elif (wrong := dpid_problem(party.dpid)) is not None:
                problems.append(f"{role}: DPID {party.dpid!r} {wrong}; fix: {dpid_fix(party.dpid)}")
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

    def for_delivery(self, delivery_id: str, created: dt.datetime) -> BuildContext:
        """This context for one delivery (a run): its id and its frozen creation time."""
        return replace(self, delivery_id=delivery_id, created=created)


def context_from_config(tc: TransformConfig) -> BuildContext:
    """A ``BuildContext`` from the ``[transform]`` section of the configuration."""
    return BuildContext(
        ern_version=tc.ern_version,
        sender=Party(tc.sender_dpid, tc.sender_name),
        recipient=Party(tc.recipient_dpid, tc.recipient_name),
        language=tc.language,
        repair=tc.repair,
        message_control=tc.message_control_type,
        business_profiles=tc.business_profiles,
        default_c_line=tc.default_c_line,
    )


def _messaging_party(tag: str, party: Party) -> str:
    return f"<{tag}><PartyId>{party.dpid}</PartyId><PartyName><FullName>{esc(party.name)}</FullName></PartyName></{tag}>"


# The parts of a message that depend only on the context (sender and
# recipient, the control type), per context values. A process sees a handful
# of contexts; the cap only guards against misuse.
_FRAMES: dict[tuple[str, ...], tuple[str, str]] = {}
_FRAME_LIMIT = 64


def _frame(ctx: BuildContext) -> tuple[str, str]:
    """(sender + recipient elements, what the body checksum adds for the header's meaning)."""
    sender, recipient = ctx.sender, ctx.recipient
    key = (sender.dpid, sender.name, recipient.dpid, recipient.name, ctx.message_control)
    hit = _FRAMES.get(key)
    if hit is None:
        parties = _messaging_party("MessageSender", sender) + _messaging_party("MessageRecipient", recipient)
        hit = (parties, f"{recipient.dpid}|{ctx.message_control}|")
        if len(_FRAMES) < _FRAME_LIMIT:
            _FRAMES[key] = hit
    return hit


def _root(p: Prepared, ctx: BuildContext) -> str:
    if ctx.ern_version == "3.8.2":
        release_profile, business = ern382.profiles(p)
        return _XML_DECL + ern382.root_open(ctx.language, release_profile, business if ctx.business_profiles else None)
    return _XML_DECL + ern4.root_open(ctx.ern_version, ctx.language)


def _assemble(p: Prepared, ctx: BuildContext, parts: list[str], kind: str) -> Document:
    version = ctx.ern_version
    parties, meaning = _frame(ctx)
    root = _root(p, ctx)
    # Encoding part by part is faster than encoding one joined string: most
    # parts are ASCII (a plain copy) and only the ones holding non-ASCII text
    # pay for UTF-8 conversion.
    body = b"".join(map(str.encode, parts))
    # The content without the header: ids and dates aside, what was delivered.
    digest = hashlib.sha256(f"{meaning}{kind}|".encode())
    digest.update(root.encode())
    digest.update(body)
    body_checksum = digest.hexdigest()
    created = p.created
    rid = p.release_id if type(p.release_id) is int else ILLEGAL_XML.sub("", str(p.release_id))  # ids are ints; be safe anyway
    thread = f"{ctx.sender.dpid}-{rid}"
    if ctx.delivery_id is not None:
        message_id = f"{thread}-{ctx.delivery_id}"
    else:
        message_id = f"{thread}-{created[:19].replace('-', '').replace(':', '')}-{body_checksum[:16]}"
    header = (
        f"{root}<MessageHeader><MessageThreadId>{esc(thread)}</MessageThreadId><MessageId>{esc(message_id)}</MessageId>"
        f"{parties}<MessageCreatedDateTime>{created}</MessageCreatedDateTime>"
        f"<MessageControlType>{ctx.message_control}</MessageControlType></MessageHeader>"
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
        body_checksum=body_checksum,
    )


def build(release: Release, ctx: BuildContext = BuildContext()) -> Document:
    """Build one ``NewReleaseMessage`` for ``release`` in ``ctx.ern_version``.

    Raises ``ReleaseDataError`` listing every problem (field, value, problem,
    fix) when the data cannot make a store-ready message. Repairs made (with
    ``ctx.repair``) and deal warnings are listed in ``Document.warnings``.
    """
    p, ck = prepare(release, ctx.ern_version, ctx.repair, ctx.default_created, created=ctx.created, default_c_line=ctx.default_c_line)
    if ck.problems:
        raise ReleaseDataError(release.release_id, ck.problems)
    if ctx.ern_version == "3.8.2":
        if ctx.business_profiles:
            _no_prices_for_streaming_profiles(p, ck.warnings)
        parts = ern382.body(p, ctx.sender.dpid)
    else:
        parts = ern4.body(p, ctx.sender.dpid)
    doc = _assemble(p, ctx, parts, "NewReleaseMessage")
    if ck.warnings:
        doc = _with_warnings(doc, ck.warnings)
    return doc


def _no_prices_for_streaming_profiles(p: Prepared, warnings: list[str]) -> None:
    """ERN 3.8.2 with declared business profiles: a streaming service's profile forbids any
    PriceInformation in the message (rule 2301-1 and its siblings), so prices are left out, said once."""
    if not any(d.price is not None or d.price_code is not None for d in p.deals):
        return
    business = ern382.profiles(p)[1] or ""
    if "StreamingService" not in business:
        return
    p.deals = [replace(d, price_code=None, price=None, currency=None) for d in p.deals]
    warnings.append(
        f"release {p.release_id}: its download prices are left out: the message declares a streaming business "
        "profile, which forbids PriceInformation (ERN 3.8.2 Business Profile 1.4, rule 2301-1); fix: none needed, "
        "or set business_profiles = false for this recipient to send them"
    )


def _with_warnings(doc: Document, warnings: list[str]) -> Document:
    return replace(doc, warnings=tuple(warnings))


def _day_before(iso_day: str) -> str:
    return (dt.date.fromisoformat(iso_day) - dt.timedelta(days=1)).isoformat()


def build_takedown(release: Release, ctx: BuildContext = BuildContext()) -> Document:
    """Build a takedown for ``release`` (see the module docstring for the form and why).

    The takedown date is ``release.deleted_at`` (else the message's creation
    date): from that day on, no deal of the message is live. The release
    still needs its tracks, identifiers and cover; deals are optional.
    """
    p, ck = prepare(
        release, ctx.ern_version, ctx.repair, ctx.default_created, need_deals=False, created=ctx.created, default_c_line=ctx.default_c_line
    )
    if ck.problems:
        raise ReleaseDataError(release.release_id, ck.problems)
    day = p.deleted or p.created[:10]
    last = _day_before(day)  # the last day on sale
    ended: list[PDeal] = []
    for d in p.deals:
        start = d.start or p.release_date
        if start is None or start > last:
            continue  # never live before the takedown: cancelled, so not sent
        end = d.end if d.end and d.end <= last else last
        ended.append(replace(d, start=start, end=end))
    p.deals = ended
    if ctx.ern_version == "3.8.2":
        if ctx.business_profiles:
            _no_prices_for_streaming_profiles(p, ck.warnings)
        parts = ern382.body(p, ctx.sender.dpid)
    else:
        parts = ern4.body(p, ctx.sender.dpid)
    doc = _assemble(p, ctx, parts, "TakeDown")
    if ck.warnings:
        doc = _with_warnings(doc, ck.warnings)
    return doc
