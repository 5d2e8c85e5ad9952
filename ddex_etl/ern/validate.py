"""Validate ERN documents against DDEX's XSDs, which the user downloads once.

``schema_dir`` is the folder that holds ``ern/43``, ``ern/42`` and ``ern/382``
(each with its ``release-notification.xsd``). The ERN version of a document
is read from its root namespace.

Parsing is hardened: no DTD loading, no entity expansion, no network, so a
document with an external entity (XXE) cannot read local files and a
"billion laughs" document cannot exhaust memory. Such documents are reported
as invalid, with the parser's message.
"""
from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from ..errors import ConfigError

NAMESPACES = {
    "http://ddex.net/xml/ern/43": "4.3",
    "http://ddex.net/xml/ern/42": "4.2",
    "http://ddex.net/xml/ern/382": "3.8.2",
}
_FOLDERS = {"4.3": "43", "4.2": "42", "3.8.2": "382"}
_SCHEMAS: dict[tuple[str, str], etree.XMLSchema] = {}
_LOCK = threading.Lock()
_SCHEMA_LOCKS: dict[int, threading.Lock] = {}  # cached schemas live as long as the process


@dataclass(frozen=True)
class ValidationIssue:
    """One problem in a document: its line (0 when unknown) and the message."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass(frozen=True)
class FileReport:
    """What ``validate_paths`` found for one file."""

    path: Path
    ern_version: str | None
    issues: tuple[ValidationIssue, ...] = field(default=())
    ok: bool = True


def _parser() -> etree.XMLParser:
    # resolve_entities=False keeps entity references unexpanded (no XXE, no
    # billion laughs); no_network and load_dtd=False stop any fetch;
    # huge_tree=False keeps libxml2's own size limits on.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=False,
    )


def load_schema(schema_dir: Path, ern_version: str) -> etree.XMLSchema:
    """The compiled XSD for one ERN version, cached per (folder, version).

    Raises ``ConfigError`` naming the missing file and the fix.
    """
    if ern_version not in _FOLDERS:
        raise ConfigError(f"ERN version {ern_version!r} is not supported; use one of {', '.join(_FOLDERS)}")
    xsd = Path(schema_dir) / "ern" / _FOLDERS[ern_version] / "release-notification.xsd"
    key = (str(Path(schema_dir).resolve()), ern_version)
    with _LOCK:
        cached = _SCHEMAS.get(key)
        if cached is not None:
            return cached
        if not xsd.is_file():
            raise ConfigError(
                f"schema {xsd} not found; fix: download DDEX's ERN {ern_version} XSDs into "
                f"{Path(schema_dir) / 'ern' / _FOLDERS[ern_version]} (release-notification.xsd and its AVS file), "
                "or point transform.schema_dir at the folder that holds ern/43, ern/42 and ern/382"
            )
        try:
            # The XSDs are trusted local files, but parse them without network access too.
            doc = etree.parse(str(xsd), etree.XMLParser(no_network=True, resolve_entities=False))
            schema = etree.XMLSchema(doc)
        except (etree.XMLSchemaParseError, etree.XMLSyntaxError) as exc:
            raise ConfigError(f"schema {xsd} could not be loaded: {exc}") from None
        _SCHEMAS[key] = schema
        return schema


def detect_version(xml: bytes) -> str | None:
    """The ERN version named by the document's root namespace, or None."""
    try:
        for _event, elem in etree.iterparse(
            _BytesSource(xml), events=("start",), resolve_entities=False, no_network=True, load_dtd=False
        ):
            return NAMESPACES.get(etree.QName(elem).namespace or "")
    except etree.XMLSyntaxError:
        return None
    return None


class _BytesSource:
    """A tiny file-like object for iterparse (avoids copying into BytesIO)."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            n = len(self._data) - self._pos
        out = self._data[self._pos : self._pos + n]
        self._pos += len(out)
        return out


def validate_bytes(xml: bytes, schema_dir: Path, ern_version: str | None = None) -> list[ValidationIssue]:
    """Every problem found in one document; an empty list means valid.

    ``ern_version`` None means: read it from the root namespace.
    """
    try:
        doc = etree.fromstring(xml, _parser()).getroottree()
    except etree.XMLSyntaxError as exc:
        return [ValidationIssue(exc.lineno or 0, f"not well-formed XML: {exc.msg}")]
    issues = _entity_issues(doc)
    if issues:
        return issues
    found = NAMESPACES.get(etree.QName(doc.getroot()).namespace or "")
    version = ern_version or found
    if version is None:
        return [
            ValidationIssue(
                doc.getroot().sourceline or 0,
                f"root element {doc.getroot().tag!r} is not in an ERN 4.3, 4.2 or 3.8.2 namespace",
            )
        ]
    schema = load_schema(schema_dir, version)
    # A compiled schema keeps one error log: threads sharing it take turns.
    with _lock_for(schema):
        if schema.validate(doc):
            return []
        return [ValidationIssue(e.line, e.message) for e in schema.error_log]


def _lock_for(schema: etree.XMLSchema) -> threading.Lock:
    with _LOCK:
        lock = _SCHEMA_LOCKS.get(id(schema))
        if lock is None:
            lock = _SCHEMA_LOCKS[id(schema)] = threading.Lock()
        return lock


def _entity_issues(doc: etree._ElementTree) -> list[ValidationIssue]:
    """Documents that declare or use entities are refused (they are never needed in ERN)."""
    docinfo = doc.docinfo
    if docinfo.internalDTD is not None or docinfo.doctype:
        return [ValidationIssue(1, "document has a DOCTYPE/entity declarations; ERN messages must not (refused for safety)")]
    for node in doc.iter(etree.Entity):
        return [ValidationIssue(node.sourceline or 0, f"entity reference {node.text} is not allowed (refused for safety)")]
    return []


def validate_paths(paths: Iterable[Path], schema_dir: Path, max_errors: int = 5) -> list[FileReport]:
    """Validate files; each report keeps the first ``max_errors`` issues with line numbers."""
    reports: list[FileReport] = []
    for raw in paths:
        path = Path(raw)
        try:
            data = path.read_bytes()
        except OSError as exc:
            reports.append(FileReport(path, None, (ValidationIssue(0, f"cannot read file: {exc.strerror or exc}"),), False))
            continue
        version = detect_version(data)
        issues = validate_bytes(data, schema_dir, version)
        kept = tuple(issues[:max_errors]) if max_errors > 0 else tuple(issues)
        reports.append(FileReport(path, version, kept, not issues))
    return reports
