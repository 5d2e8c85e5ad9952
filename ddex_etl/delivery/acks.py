"""Stores' acknowledgements, read back from a target: both kinds DDEX's SFTP choreography has used.

**Legacy** (ERN choreography up to 1.6): ``FtpAcknowledgementMessage``, one per
message, in the message's own folder, named ``ACK_`` + the message's file name
without its extension + ``.xml`` (``0602445790001/ACK_0602445790001.xml``).
After a ``MessageHeader`` it holds ``AcknowledgedFile`` (optionally
``ReleaseId``), ``FileStatus`` (``FileOK`` when accepted; otherwise why not:
``NewReleaseMessageInvalid``, ``ResourceCorrupt``, ``ResourceMissing``, ...),
``ErrorText``, ``ProposedActionType``, ``ManualCheckRequired`` and
``AffectedResource``.

**Current** (ERN choreography 1.7 and 1.8, namespace ``ern-c-sftp``): an
``AcknowledgementMessage`` (1.7 called it ``ErnAcknowledgementStatusMessage``),
named ``ACK_<date and time>_<ReleaseId>.xml`` and placed in an
``acknowledgements/`` folder. After the ``MessageHeader`` it holds one
``ReleaseStatus`` per release: ``ReleaseId`` (GRid, ICPN, ISRC or a proprietary
id), the release's own status (a ``SupplyChainStatus``:
``SuccessfullyIngestedByReleaseDistributor``,
``ProcessingErrorAtReleaseDistributor``, ... or ``UserDefined``), the same
``ErrorText`` / ``ProposedActionType`` / ``ManualCheckRequired`` /
``AffectedResource`` as above, and ``Acknowledgement`` elements naming each
message (``MessageType``, ``BatchId``, ``MessageId``) with its
``MessageStatus`` (``Status`` and ``Information``). A file with several
``ReleaseStatus`` elements gives one record per release.

Elements are matched by local name, so every namespace version reads the
same. Only the statuses in ``ACCEPTED`` count as acceptance, and those in
``PENDING`` (the store received the message and has not decided yet) as
"not decided": anything else, an unknown value too, is a rejection, so a new
reason can never pass for success. A release accepted as a whole but whose
message status is not ``FileOK`` is a rejection with that message status.

Where they are looked for (``find_ack_files``): in the batch folder, its
``acknowledgements/`` folder, and each release folder (and its
``acknowledgements/``) — never ``resources/``: one listing per folder, so the
cost does not grow with the media a batch holds. Release folders the caller
already holds a final acknowledgement for are not listed again.

Safety: a file's size is checked in the listing before a byte is read, and
at most ``MAX_ACK_BYTES`` are ever read (``Target.read_head``), so a 1 GB
file on the store costs one listing entry, not 1 GB of memory. Parsing is
hardened like ``ddex_etl.ern.validate``: no DTD, no entity expansion, no
network. A file that cannot be read goes to ``AckReport.problems`` and the
rest are read.
"""
from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field

from lxml import etree

from ..errors import DeliveryError, printable
from .paths import join, safe_relpath
from .targets import Folder, RemoteObject, Target

ACK_PREFIX = "ACK_"
ACK_FOLDER = "acknowledgements"  # where choreography 1.7+ stores put their acknowledgements
RESOURCES_FOLDER = "resources"
MAX_ACK_BYTES = 4 * 2**20  # an acknowledgement is a few kB; refuse to read anything huge

LEGACY_ROOT = "FtpAcknowledgementMessage"
CURRENT_ROOTS = ("AcknowledgementMessage", "ErnAcknowledgementStatusMessage")

#: Statuses that mean the store took the message or the release.
ACCEPTED = frozenset({
    "FileOK",  # FileStatus, and a message's MessageStatus/Status
    "SuccessfullyIngestedByReleaseDistributor", "ReleaseMadeAvailableToConsumers",  # a release's SupplyChainStatus
})
#: Statuses that say the store has the message but has not decided yet: not a rejection, and not final.
PENDING = frozenset({
    "ReleaseReceivedByReleaseDistributor", "DeliveredToReleaseDistributor", "InDeliveryToReleaseDistributor",
    "ValidMessageReceived", "ValidMessageQueuedForProcessing",
})
ACCEPTED_STATUS = "FileOK"  # kept for callers of the legacy kind

# ACK_<17-digit date and time>_<ReleaseId>.xml (choreography 1.7+)
_TIMED_NAME = re.compile(r"ACK_([0-9]{17})_(.+)\.xml", re.IGNORECASE)
# The ReleaseId children, in the order a release folder is most likely named after them (load.release_identifier).
_RELEASE_ID_KINDS = ("ICPN", "GRid", "ProprietaryId", "CatalogNumber", "ISRC")


class AckParseError(ValueError):
    """An acknowledgement file that is not a readable acknowledgement message of either kind."""


@dataclass(frozen=True, slots=True)
class AckRecord:
    """One store acknowledgement of one message (or, for the current kind, of one release)."""

    ack_file: str  # path of the ACK file, relative to the target
    message_file: str  # path of the acknowledged message, relative to the target
    release: str | None  # the release folder it answers for, else the store's ReleaseId
    status: str  # e.g. "FileOK", "ResourceCorrupt", "ProcessingErrorAtReleaseDistributor"
    accepted: bool  # not a rejection (accepted, or received and not decided yet)
    error_text: str | None = None
    proposed_action: str | None = None
    manual_check_required: bool | None = None
    affected_resources: tuple[str, ...] = ()
    sender: str | None = None  # MessageSender PartyId (the store)
    created: str | None = None  # MessageCreatedDateTime
    kind: str = LEGACY_ROOT  # the root element: FtpAcknowledgementMessage or AcknowledgementMessage
    release_ids: tuple[str, ...] = ()  # every ReleaseId value the store gave (GRid, ICPN, ...)
    batch: str | None = None  # Acknowledgement/BatchId, when the store names the batch
    message_id: str | None = None  # Acknowledgement/MessageId: the acknowledged message's MessageId

    @property
    def final(self) -> bool:
        """The store decided (accepted or rejected); False while it only says it received the message."""
        return self.status not in PENDING

    def describe(self) -> str:
        """One line for ``etl errors``: what the store said and what it asks for (store text made printable)."""
        if self.accepted:
            return printable(f"{self.message_file}: " + ("accepted" if self.final else f"received ({self.status})"))
        parts = [f"{self.message_file}: rejected ({self.status})"]
        if self.error_text:
            parts.append(self.error_text)
        if self.proposed_action:
            parts.append(f"store proposes: {self.proposed_action}")
        if self.manual_check_required:
            parts.append("manual check required before re-delivery")
        return printable("; ".join(parts))


@dataclass
class AckReport:
    """The acknowledgements found on a target, the files that could not be read, and what it cost."""

    records: list[AckRecord] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (ack file, why)
    found: bool = True  # False: the batch folder is not on the target
    release_folders: tuple[str, ...] = ()  # the batch's release folders, as listed
    listings: int = 0  # listing requests made

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


def _flag(elem: etree._Element | None) -> bool | None:
    v = _value(elem)
    return None if v is None else v.lower() in ("true", "1")


def is_ack_name(name: str) -> bool:
    """Whether a file name is an acknowledgement's (``ACK_*.xml``)."""
    return name.startswith(ACK_PREFIX) and name.lower().endswith(".xml")


def is_ack_file(relpath: str) -> bool:
    """Whether a path on a target names an acknowledgement file."""
    return is_ack_name(relpath.rpartition("/")[2])


def message_file_for(ack_file: str) -> str:
    """The message a legacy ``ACK_<name>.xml`` file acknowledges: ``<name>.xml`` in the same folder."""
    folder, _, name = ack_file.rpartition("/")
    if not is_ack_name(name):
        raise AckParseError(f"{ack_file} is not named ACK_<message file name>.xml")
    stem = name[len(ACK_PREFIX):-4]
    message = stem if stem.lower().endswith(".xml") else f"{stem}.xml"
    return join(folder, message) if folder else message


def _name_release(ack_file: str) -> str | None:
    """The release an ACK file's name gives: ``ACK_<time>_<ReleaseId>.xml`` or ``ACK_<ReleaseId>.xml``."""
    name = ack_file.rpartition("/")[2]
    m = _TIMED_NAME.fullmatch(name)
    if m:
        return m.group(2)
    return name[len(ACK_PREFIX):-4] if is_ack_name(name) else None


def _folder_of(ack_file: str) -> list[str]:
    """The folder an ACK file answers from: where it lies, less a trailing ``acknowledgements/``."""
    parts = ack_file.split("/")[:-1]
    return parts[:-1] if parts and parts[-1] == ACK_FOLDER else parts


def _release_folder(ack_file: str, batch_folder: str | None) -> str | None:
    """The release folder (path) an ACK file lies in, when its place says so; None for a batch-level file."""
    parts = _folder_of(ack_file)
    if batch_folder is None:
        return "/".join(parts) or None
    base = batch_folder.split("/") if batch_folder else []
    if parts[: len(base)] == base and len(parts) == len(base) + 1:
        return "/".join(parts)
    return None


def parse_acks(data: bytes, *, ack_file: str, batch_folder: str | None = None,
               release_folders: Collection[str] = ()) -> list[AckRecord]:
    """Read one acknowledgement file of either kind (its bytes and its path on the target). Raises ``AckParseError``.

    ``batch_folder`` (the batch's folder on the target) and ``release_folders``
    (the folders it holds) let a current-kind acknowledgement in the batch's
    ``acknowledgements/`` folder be tied to the release folder it answers for.
    """
    if len(data) > MAX_ACK_BYTES:
        raise AckParseError(f"{ack_file}: {len(data):,} bytes, more than an acknowledgement holds")
    if not is_ack_file(ack_file):
        raise AckParseError(f"{ack_file} is not named ACK_<message file name>.xml")
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise AckParseError(f"{ack_file}: not well-formed XML: {exc}") from None
    if root is None:
        raise AckParseError(f"{ack_file}: the root element is nothing, not an acknowledgement message")
    if any(isinstance(e, etree._Entity) for e in root.iter()):
        raise AckParseError(f"{ack_file}: holds entity references, which acknowledgements never need")
    name = etree.QName(root).localname
    header = {
        "sender": _value(_first(root, "MessageHeader", "MessageSender", "PartyId")),
        "created": _value(_first(root, "MessageHeader", "MessageCreatedDateTime")),
    }
    if name == LEGACY_ROOT:
        return [_legacy(root, ack_file, header)]
    if name in CURRENT_ROOTS:
        return _current(root, name, ack_file, header, batch_folder, release_folders)
    raise AckParseError(
        f"{ack_file}: the root element is {name}, not FtpAcknowledgementMessage or AcknowledgementMessage"
    )


def parse_ack(data: bytes, *, ack_file: str) -> AckRecord:
    """Read an acknowledgement file that answers for one message or release (``parse_acks`` for several)."""
    records = parse_acks(data, ack_file=ack_file)
    if len(records) != 1:
        raise AckParseError(f"{ack_file}: holds {len(records)} release statuses; read it with parse_acks")
    return records[0]


def _legacy(root: etree._Element, ack_file: str, header: dict[str, str | None]) -> AckRecord:
    status = _value(_first(root, "FileStatus"))
    if not status:
        raise AckParseError(f"{ack_file}: no FileStatus")
    folder = "/".join(_folder_of(ack_file))
    message_file = join(folder, message_file_for(ack_file).rpartition("/")[2])
    release = _value(_first(root, "AcknowledgedFile", "ReleaseId"))
    ids = tuple(v for v in (release,) if v)
    if release is None and folder:
        release = folder.rpartition("/")[2]
    return AckRecord(
        ack_file=ack_file, message_file=message_file, release=release, status=status,
        accepted=status in ACCEPTED or status in PENDING,
        error_text=_value(_first(root, "ErrorText")), proposed_action=_value(_first(root, "ProposedActionType")),
        manual_check_required=_flag(_first(root, "ManualCheckRequired")),
        affected_resources=tuple(v for r in _children(root, "AffectedResource") if (v := _value(r)) is not None),
        kind=LEGACY_ROOT, release_ids=ids, **header,
    )


def _release_ids(elem: etree._Element | None) -> tuple[str, ...]:
    if elem is None:
        return ()
    out: list[str] = []
    for kind in _RELEASE_ID_KINDS:
        out += [v for c in _children(elem, kind) if (v := _value(c))]
    out += [v for c in elem if isinstance(c.tag, str) and (v := _value(c)) and v not in out]
    return tuple(dict.fromkeys(out))


def _status_of(status_parent: etree._Element) -> str | None:
    for name in ("ReleaseStatus", "AcknowledgementStatus", "FileStatus", "Status"):
        v = _value(_first(status_parent, name))
        if v:
            return v
    return None


def _current(root: etree._Element, kind: str, ack_file: str, header: dict[str, str | None],
             batch_folder: str | None, release_folders: Collection[str]) -> list[AckRecord]:
    statuses = _children(root, "ReleaseStatus") or [root]
    placed = _release_folder(ack_file, batch_folder)
    out: list[AckRecord] = []
    for rs in statuses:
        acks = _children(rs, "Acknowledgement")
        status = _status_of(rs) if rs is not root else None
        messages = [(a, ms) for a in acks for ms in _children(a, "MessageStatus")]
        message_statuses = [(a, ms, _status_of(ms)) for a, ms in messages]
        if status is None and not message_statuses:
            raise AckParseError(f"{ack_file}: no ReleaseStatus and no MessageStatus")
        info = None
        # A release taken as a whole with one of its messages refused is a rejection, with that message's status.
        for _a, ms, s in message_statuses:
            if s is None:
                raise AckParseError(f"{ack_file}: a MessageStatus without a Status")
            if status is None or (status in ACCEPTED | PENDING and s not in ACCEPTED | PENDING):
                status, info = s, _value(_first(ms, "Information"))
        assert status is not None
        ids = _release_ids(_first(rs, "ReleaseId"))
        first_ack = acks[0] if acks else None
        named = [n for n in (*ids, _name_release(ack_file)) if n]
        if placed is not None and (batch_folder is not None or placed.rpartition("/")[2] in named):
            release: str | None = placed.rpartition("/")[2]  # the folder it lies in answers for itself
            message_file = join(placed, f"{release}.xml")
        else:
            release = next((i for i in named if i in release_folders), None) or (named[0] if named else None)
            if release is None:
                raise AckParseError(f"{ack_file}: names no release (no ReleaseId) and lies in no release folder")
            message_file = join(batch_folder or "", release, f"{release}.xml")
        error_text = _value(_first(rs, "ErrorText")) if rs is not root else _value(_first(root, "ErrorText"))
        out.append(AckRecord(
            ack_file=ack_file if len(statuses) == 1 else f"{ack_file}#{release or len(out)}",
            message_file=message_file, release=release, status=status,
            accepted=status in ACCEPTED or status in PENDING,
            error_text=error_text or info,
            proposed_action=_value(_first(rs, "ProposedActionType")),
            manual_check_required=_flag(_first(rs, "ManualCheckRequired")),
            affected_resources=tuple(v for r in _children(rs, "AffectedResource") for v in _release_ids(r) or
                                     ((_value(r),) if _value(r) else ())),
            kind=kind, release_ids=ids,
            batch=_value(_first(first_ack, "BatchId")) if first_ack is not None else None,
            message_id=_value(_first(first_ack, "MessageId")) if first_ack is not None else None,
            **header,
        ))
    return out


@dataclass
class _FoundReport(AckReport):
    files: dict[str, RemoteObject] = field(default_factory=dict)

    def add(self, folder: str, files: dict[str, RemoteObject]) -> None:
        for name, obj in files.items():
            if is_ack_name(name):
                self.files[join(folder, name) if folder else name] = obj

    def list(self, target: Target, folder: str) -> Folder:
        self.listings += 1
        return target.list_folder(folder)


def find_ack_files(target: Target, batch_folder: str, *, settled: Collection[str] = (), deep: bool = True) -> _FoundReport:
    """The acknowledgement files of one batch folder, without reading them (``records`` stays empty).

    Lists the batch folder, its ``acknowledgements/`` folder when there is
    one, and each release folder not in ``settled`` (and its
    ``acknowledgements/``): at most 2 + 2 x releases listings, whatever the
    release folders' ``resources/`` hold (``deep=False``: the batch folder
    and its ``acknowledgements/`` only). ``files`` (path -> size) is what was
    found.
    """
    report = _FoundReport()
    top = target.list_folder(batch_folder)
    report.listings += 1
    if not top.exists:
        report.found = False
        return report
    report.add(batch_folder, top.files)
    report.release_folders = tuple(f for f in top.folders if f not in (ACK_FOLDER, RESOURCES_FOLDER)
                                   and not f.startswith("."))
    if ACK_FOLDER in top.folders:
        report.add(join(batch_folder, ACK_FOLDER), report.list(target, join(batch_folder, ACK_FOLDER)).files)
    for release in report.release_folders if deep else ():
        if release in settled:
            continue
        folder = join(batch_folder, release)
        listed = report.list(target, folder)
        report.add(folder, listed.files)
        if ACK_FOLDER in listed.folders:
            report.add(join(folder, ACK_FOLDER), report.list(target, join(folder, ACK_FOLDER)).files)
    return report


def read_ack_file(target: Target, path: str, size: int | None) -> bytes:
    """An acknowledgement's bytes: its listed ``size`` checked first, then that many bytes read, never more.

    Without a listed size, at most ``MAX_ACK_BYTES`` + 1 bytes are read. Raises
    ``AckParseError`` naming the file and the target when it is larger (its
    size in the listing, or what the read found). Reading exactly the listed
    size saves the round trip that would only find the end of the file.
    """
    where = target.describe()
    if size is not None and size > MAX_ACK_BYTES:
        raise AckParseError(
            f"{path} on {where} is {size:,} bytes, more than an acknowledgement holds ({MAX_ACK_BYTES:,} at most); "
            "it was not read; fix: ask the store what it is, and remove it or have it replaced"
        )
    data = target.read_head(path, MAX_ACK_BYTES + 1 if size is None else size)
    if len(data) > MAX_ACK_BYTES:
        raise AckParseError(
            f"{path} on {where} holds more than {MAX_ACK_BYTES:,} bytes; reading stopped there; "
            "fix: ask the store what it is, and remove it or have it replaced"
        )
    return data


def read_acks(target: Target, under: str = "", *, settled: Collection[str] = (),
              skip: Collection[str] = ()) -> AckReport:
    """Every acknowledgement of the batch folder ``under`` on the target, parsed; sorted by path.

    ``settled``: release folders not to list again (their acknowledgement is
    known); ``skip``: ACK file paths not to read again. Raises
    ``DeliveryError`` only when the target cannot be listed; an unreadable,
    oversized or malformed file goes to ``problems``.
    """
    folder = safe_relpath(under, what="acknowledgement folder") if under else ""
    found = find_ack_files(target, folder, settled=settled)
    report = AckReport(found=found.found, release_folders=found.release_folders, listings=found.listings)
    for path in sorted(found.files):
        if path in skip:
            continue
        try:
            data = read_ack_file(target, path, found.files[path].size)
            report.records.extend(parse_acks(data, ack_file=path, batch_folder=folder,
                                             release_folders=found.release_folders))
        except AckParseError as exc:
            report.problems.append((path, str(exc)))
        except DeliveryError as exc:
            if exc.retryable:
                raise
            report.problems.append((path, str(exc)))
    return report
