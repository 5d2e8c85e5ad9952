"""Stores' acknowledgements: DDEX ``FtpAcknowledgementMessage`` files, read back from a target.

In DDEX's release delivery choreography (SFTP batch profiles), the store
answers each message it processed with an acknowledgement file in the same
folder, named ``ACK_`` + the message's file name without its extension +
``.xml`` (``0602445790001/ACK_0602445790001.xml`` for
``0602445790001/0602445790001.xml``). Its root is ``FtpAcknowledgementMessage``
(in the ``ern-c`` / ``ern-c-sftp`` namespace of the choreography version
the store uses), holding, after a ``MessageHeader``:

* ``AcknowledgedFile`` (optionally ``ReleaseId`` and ``Date``),
* ``FileStatus``: ``FileOK`` when the message was accepted; anything else
  (``NewReleaseMessageInvalid``, ``ResourceCorrupt``, ``ResourceMissing``,
  ``MetadataMissing``, ...) says why it was not,
* ``ErrorText`` (free text for people), ``ProposedActionType`` (what the
  store asks the sender to do), ``ManualCheckRequired`` (true: someone must
  look before re-delivering), ``AffectedResource`` (resource ids).

Elements are matched by local name, so every namespace version reads the
same. A status other than ``FileOK`` counts as a rejection, an unknown one
too: a new reason must never pass for success.

``store_acks`` calls ``read_acks(target, batch_id)`` for each recipient and
records the returned ``AckRecord``\\ s per release. Parsing is hardened like
``ddex_etl.ern.validate``: no DTD, no entity expansion, no network; a file that
fails to parse is reported in ``AckReport.problems`` and the rest are read.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree

from ..errors import DeliveryError
from .paths import join, safe_relpath
from .targets import Target

ACK_PREFIX = "ACK_"
ACCEPTED_STATUS = "FileOK"
MAX_ACK_BYTES = 4 * 2**20  # an acknowledgement is a few kB; refuse to parse anything huge


class AckParseError(ValueError):
    """An acknowledgement file that is not a readable ``FtpAcknowledgementMessage``."""


@dataclass(frozen=True, slots=True)
class AckRecord:
    """One store acknowledgement of one message."""

    ack_file: str  # path of the ACK file, relative to the target
    message_file: str  # path of the acknowledged message, relative to the target
    release: str | None  # AcknowledgedFile/ReleaseId, else the message's folder name
    status: str  # FileStatus, e.g. "FileOK", "ResourceCorrupt"
    accepted: bool
    error_text: str | None = None
    proposed_action: str | None = None
    manual_check_required: bool | None = None
    affected_resources: tuple[str, ...] = ()
    sender: str | None = None  # MessageSender PartyId (the store)
    created: str | None = None  # MessageCreatedDateTime

    def describe(self) -> str:
        """One line for ``etl errors``: what the store said and what it asks for."""
        if self.accepted:
            return f"{self.message_file}: accepted"
        parts = [f"{self.message_file}: rejected ({self.status})"]
        if self.error_text:
            parts.append(self.error_text)
        if self.proposed_action:
            parts.append(f"store proposes: {self.proposed_action}")
        if self.manual_check_required:
            parts.append("manual check required before re-delivery")
        return "; ".join(parts)


@dataclass
class AckReport:
    """The acknowledgements found on a target, and the files that could not be read."""

    records: list[AckRecord] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (ack file, why)

    @property
    def rejected(self) -> list[AckRecord]:
        return [r for r in self.records if not r.accepted]

    @property
    def accepted(self) -> list[AckRecord]:
        return [r for r in self.records if r.accepted]


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
                           huge_tree=False, remove_comments=True, remove_pis=True)


def _children(elem: etree._Element, name: str) -> list[etree._Element]:
    return [c for c in elem if isinstance(c.tag, str) and etree.QName(c).localname == name]


def _first(elem: etree._Element | None, *path: str) -> etree._Element | None:
    for name in path:
        if elem is None:
            return None
        found = _children(elem, name)
        elem = found[0] if found else None
    return elem


def _value(elem: etree._Element | None) -> str | None:
    """An element's text; an AVS value of ``UserDefined`` gives its ``UserDefinedValue`` attribute instead."""
    if elem is None:
        return None
    text = "".join(elem.itertext()).strip() or None
    if text == "UserDefined":
        return elem.get("UserDefinedValue") or text
    return text


def message_file_for(ack_file: str) -> str:
    """The message an ``ACK_<name>.xml`` file acknowledges: ``<name>.xml`` in the same folder."""
    folder, _, name = ack_file.rpartition("/")
    if not name.startswith(ACK_PREFIX) or not name.lower().endswith(".xml"):
        raise AckParseError(f"{ack_file} is not named ACK_<message file name>.xml")
    stem = name[len(ACK_PREFIX):-4]
    message = stem if stem.lower().endswith(".xml") else f"{stem}.xml"
    return join(folder, message) if folder else message


def parse_ack(data: bytes, *, ack_file: str) -> AckRecord:
    """Read one acknowledgement file (its bytes and its path on the target). Raises ``AckParseError``."""
    if len(data) > MAX_ACK_BYTES:
        raise AckParseError(f"{ack_file}: {len(data):,} bytes, more than an acknowledgement holds")
    message_file = message_file_for(ack_file)
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise AckParseError(f"{ack_file}: not well-formed XML: {exc}") from None
    if root is None or etree.QName(root).localname != "FtpAcknowledgementMessage":
        name = etree.QName(root).localname if root is not None else "nothing"
        raise AckParseError(f"{ack_file}: the root element is {name}, not FtpAcknowledgementMessage")
    if any(isinstance(e, etree._Entity) for e in root.iter()):
        raise AckParseError(f"{ack_file}: holds entity references, which acknowledgements never need")
    status = _value(_first(root, "FileStatus"))
    if not status:
        raise AckParseError(f"{ack_file}: no FileStatus")
    manual = _value(_first(root, "ManualCheckRequired"))
    release = _value(_first(root, "AcknowledgedFile", "ReleaseId"))
    if release is None and "/" in message_file:
        release = message_file.rsplit("/", 2)[-2]
    affected = tuple(
        v for r in _children(root, "AffectedResource") if (v := _value(r)) is not None
    )
    return AckRecord(
        ack_file=ack_file,
        message_file=message_file,
        release=release,
        status=status,
        accepted=status == ACCEPTED_STATUS,
        error_text=_value(_first(root, "ErrorText")),
        proposed_action=_value(_first(root, "ProposedActionType")),
        manual_check_required=None if manual is None else manual.lower() in ("true", "1"),
        affected_resources=affected,
        sender=_value(_first(root, "MessageHeader", "MessageSender", "PartyId")),
        created=_value(_first(root, "MessageHeader", "MessageCreatedDateTime")),
    )


def is_ack_file(relpath: str) -> bool:
    """Whether a path on a target names an acknowledgement file."""
    name = relpath.rpartition("/")[2]
    return name.startswith(ACK_PREFIX) and name.lower().endswith(".xml")


def read_acks(target: Target, under: str = "") -> AckReport:
    """Every acknowledgement below ``under`` on the target (e.g. a batch id), parsed; sorted by path.

    Raises ``DeliveryError`` only when the target cannot be listed; an
    unreadable or malformed file goes to ``problems``.
    """
    report = AckReport()
    folder = safe_relpath(under, what="acknowledgement folder") if under else ""
    for path in sorted(p for p in target.list(folder) if is_ack_file(p)):
        try:
            report.records.append(parse_ack(target.read_bytes(path), ack_file=path))
        except AckParseError as exc:
            report.problems.append((path, str(exc)))
        except DeliveryError as exc:
            if exc.retryable:
                raise
            report.problems.append((path, str(exc)))
    return report
