"""Check ERN files against DDEX's release-profile rules (their Schematron, compiled to XSLT).

The XSD says what a message may look like; DDEX's release and business
profiles say what a store expects of a release: one front cover, sequenced
display artists, each contributor once, a formal title, profile ids that
match the release type and the deals, and so on. DDEX publishes those rules
as ISO Schematron compiled to XSLT 2.0 (in its ern-validator); like the XSDs
they are not shipped with ddex-etl: point ``rules_dir`` at a folder laid out
as::

    ern4/Audio.xsl  ern4/SimpleAudioSingle.xsl  ern4/ReleaseProfileTrackReleaseRules.xsl
    ern382/AudioAlbumMusicOnly.xsl  ern382/AudioSingle.xsl  ern382/BusinessProfile.xsl

The rule sets are chosen as DDEX's validator chooses them: by the message's
``ReleaseProfileVersionId``, else by the main release's type. XSLT 2.0 needs
Saxon: ``pip install 'ddex-etl[profile]'`` (saxonche).

What counts: rules whose role is ``Fatal Error`` or ``Error``. Every other
failure is reported with the reason it is not counted
(``RuleFailure.reason``, explained by ``NOT_COUNTED``), as DDEX's shared
checker (``ddex-profile-check``) reports them:

* ``advice``: "Conditional" rules apply only where the sender has the data,
  and "Warning" and "Information" are advice;
* ``ern41``: the ERN 4 rules were written for ERN 4.1 (release profiles
  2.1) and test two places ERN 4.3 moved (the ISRC, now under
  ``SoundRecordingEdition``, and ``TechnicalDetails``): on a 4.3 message
  they fire on every track whatever it holds;
* ``out-of-date``: the ERN 3 rule listing ISRC prefixes predates prefixes
  such as ``QZ``;
* ``ddex-defect``: the business-profile rules that demand ``AudioSingle``
  for every streaming profile (2299-1, 2303-1, 2307-1, 2315-1, 2326-1,
  2329-1, 2332-1) contradict the album profile's own rule (1129-1) and, in
  DDEX's source, test a value no message can carry.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lxml import etree

from ..errors import ConfigError

SVRL = "{http://purl.oclc.org/dsdl/svrl}"
COUNTED_ROLES = ("fatal error", "error")
# Rules testing an ERN 4.1 location that ERN 4.3 moved (checked against 4.3 messages only).
ERN41_ONLY = ("ISRC", "TechnicalDetails")
# ERN 3.8.2 rule texts that are out of date (ISRC prefixes allocated after release profiles 1.4).
OUT_OF_DATE = ("An ISRC must be a string starting with an ISO 3166 code",)
# Business-profile rules that contradict the album profile (see the module docstring).
DDEX_DEFECTS = tuple(f"Rule {r})" for r in ("2299-1", "2303-1", "2307-1", "2315-1", "2326-1", "2329-1", "2332-1"))
# Why a failure is not counted, by RuleFailure.reason: what `etl validate --profile` prints beside the tally.
NOT_COUNTED = {
    "advice": "advice, not a failure: only Fatal Error and Error rules count (Conditional rules apply only where "
              "the sender has the data; Warning and Information are suggestions)",
    "ern41": "written for ERN 4.1: these rules test the ISRC and TechnicalDetails where ERN 4.1 had them, places "
             "ERN 4.3 moved (into SoundRecordingEdition), so they fire on every 4.3 track whatever it holds",
    "out-of-date": "out of date: DDEX's ERN 3.8.2 rule lists the ISRC prefixes of its time and refuses newer ones "
                   "such as QZ",
    "ddex-defect": "a known defect of DDEX's business-profile rules: they demand AudioSingle for every streaming "
                   "profile, against the album profile's own rule 1129-1, and test a value no message can carry",
}
RULE_FILES = (
    "ern4/Audio.xsl", "ern4/SimpleAudioSingle.xsl", "ern4/ReleaseProfileTrackReleaseRules.xsl",
    "ern382/AudioAlbumMusicOnly.xsl", "ern382/AudioSingle.xsl", "ern382/BusinessProfile.xsl",
)


@dataclass(frozen=True)
class RuleFailure:
    """One failed rule in one file: its role, its text (naming the rule number) and where."""

    role: str
    text: str
    location: str
    counted: bool  # a Fatal Error or Error that is not known to be out of date
    reason: str = ""  # why it is not counted: a key of NOT_COUNTED ("" when counted)

    def __str__(self) -> str:
        return f"[{self.role}] {self.text} at {self.location}"


@dataclass(frozen=True)
class ProfileReport:
    """What ``check_paths`` found for one file."""

    path: Path
    rule_sets: tuple[str, ...]
    failures: tuple[RuleFailure, ...] = field(default=())
    error: str | None = None  # the file could not be checked (not XML, unreadable)

    @property
    def counted(self) -> tuple[RuleFailure, ...]:
        return tuple(f for f in self.failures if f.counted)

    @property
    def ok(self) -> bool:
        return self.error is None and not self.counted


def rule_sets(root: etree._Element) -> list[str]:
    """The rule files DDEX's validator applies to a message with this root element."""
    ns = etree.QName(root).namespace or ""
    declared = root.get("ReleaseProfileVersionId") or ""
    rtype = root.xpath(
        "string((//*[local-name()='ReleaseList']/*[local-name()='Release'])[1]/*[local-name()='ReleaseType'])"
    ).strip()
    if ns.endswith("/382"):
        single = declared.endswith("AudioSingle") or (not declared and rtype == "Single")
        return ["ern382/AudioSingle.xsl" if single else "ern382/AudioAlbumMusicOnly.xsl", "ern382/BusinessProfile.xsl"]
    single = declared == "SimpleAudioSingle"
    return ["ern4/SimpleAudioSingle.xsl" if single else "ern4/Audio.xsl", "ern4/ReleaseProfileTrackReleaseRules.xsl"]


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def _failure(role: str, text: str, location: str, rule_set: str, v43: bool) -> RuleFailure:
    """One failure, counted or with the reason it is not (see ``NOT_COUNTED``)."""
    if rule_set.startswith("ern4/") and v43 and any(w in location + text for w in ERN41_ONLY):
        reason = "ern41"
    elif any(n in text for n in OUT_OF_DATE):
        reason = "out-of-date"
    elif any(n in text for n in DDEX_DEFECTS):
        reason = "ddex-defect"
    elif role.lower() not in COUNTED_ROLES:
        reason = "advice"
    else:
        reason = ""
    return RuleFailure(role, text, location, not reason, reason)


class ProfileChecker:
    """Compiled rule sets for one rules folder; check many files with one Saxon processor.

    Not thread-safe: use one checker per thread. ``close()`` (or ``with``)
    releases the processor.
    """

    def __init__(self, rules_dir: Path) -> None:
        self.rules_dir = Path(rules_dir)
        if not self.rules_dir.is_dir():
            raise ConfigError(f"rules folder {self.rules_dir} not found; fix: pass --rules-dir with DDEX's compiled rules")
        try:
            from saxonche import PySaxonProcessor
        except ImportError:
            raise ConfigError(
                "checking DDEX's profile rules needs Saxon (XSLT 2.0); fix: pip install 'ddex-etl[profile]' (saxonche)"
            ) from None
        self._proc = PySaxonProcessor(license=False)
        self._xslt = self._proc.new_xslt30_processor()
        self._compiled: dict[str, Any] = {}

    def _compiled_rules(self, name: str) -> Any:
        hit = self._compiled.get(name)
        if hit is None:
            path = self.rules_dir / name
            if not path.is_file():
                raise ConfigError(
                    f"rule file {path} not found; fix: put DDEX's compiled release-profile rules in {self.rules_dir} "
                    f"(expected: {', '.join(RULE_FILES)})"
                )
            try:
                hit = self._xslt.compile_stylesheet(stylesheet_file=str(path.resolve()))
            except Exception as exc:  # saxonche raises its own PySaxonApiError
                raise ConfigError(f"rule file {path} could not be compiled: {exc}") from None
            self._compiled[name] = hit
        return hit

    def check_bytes(self, xml: bytes, path: Path | None = None) -> ProfileReport:
        """Every rule failure in one message."""
        where = path or Path("<bytes>")
        try:
            root = etree.fromstring(xml, _parser())
        except etree.XMLSyntaxError as exc:
            return ProfileReport(where, (), (), f"not well-formed XML: {exc.msg}")
        sets = rule_sets(root)
        v43 = (etree.QName(root).namespace or "").endswith("/43")
        node = self._proc.parse_xml(xml_text=xml.decode("utf-8"))
        failures: list[RuleFailure] = []
        for name in sets:
            report = etree.fromstring(self._compiled_rules(name).transform_to_string(xdm_node=node).encode())
            for fa in report.iter(f"{SVRL}failed-assert", f"{SVRL}successful-report"):
                text = " ".join((fa.findtext(f"{SVRL}text") or "").split())
                location = fa.get("location") or ""
                role = fa.get("role") or "?"
                failures.append(_failure(role, text, location, name, v43))
        return ProfileReport(where, tuple(sets), tuple(failures))

    def check_file(self, path: Path) -> ProfileReport:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            return ProfileReport(Path(path), (), (), f"cannot read file: {exc.strerror or exc}")
        return self.check_bytes(data, Path(path))

    def close(self) -> None:
        self._compiled.clear()

    def __enter__(self) -> ProfileChecker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# Saxon's processor is process-wide and not meant for concurrent use.
_LOCK = threading.Lock()


def check_paths(
    paths: Iterable[Path], rules_dir: Path, on_file: Callable[[ProfileReport], None] | None = None
) -> list[ProfileReport]:
    """Check files against DDEX's rules; ``on_file`` is called after each (for progress)."""
    reports: list[ProfileReport] = []
    with _LOCK, ProfileChecker(rules_dir) as checker:
        for path in paths:
            report = checker.check_file(Path(path))
            reports.append(report)
            if on_file is not None:
                on_file(report)
    return reports
