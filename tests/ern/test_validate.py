"""XSD validation of files: DDEX's own samples pass, broken documents report line numbers, hostile XML is refused safely."""
from __future__ import annotations

from pathlib import Path

import pytest
from ern_strategies import full_album

from ddex_etl.ern import BuildContext, build
from ddex_etl.ern.validate import FileReport, detect_version, load_schema, validate_bytes, validate_paths
from ddex_etl.errors import ConfigError

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "ddex" / "samples"


@pytest.mark.parametrize("folder,version", [("ern43", "4.3"), ("ern42", "4.2")])
def test_ddex_samples_validate(folder: str, version: str, schema_dir: Path) -> None:
    files = sorted((SAMPLES / folder).glob("*.xml"))
    assert files, f"no samples in {SAMPLES / folder}"
    reports = validate_paths(files, schema_dir)
    assert [(r.path, r.ern_version, r.ok, r.issues) for r in reports] == [(f, version, True, ()) for f in files]


@pytest.mark.parametrize(
    "xml,version",
    [
        (b'<ern:NewReleaseMessage xmlns:ern="http://ddex.net/xml/ern/43"/>', "4.3"),
        (b'<?xml version="1.0"?>\n<x:NewReleaseMessage xmlns:x="http://ddex.net/xml/ern/42"/>', "4.2"),
        (b'<ern:PurgeReleaseMessage xmlns:ern="http://ddex.net/xml/ern/382"/>', "3.8.2"),
        (b"<NewReleaseMessage/>", None),
        (b"not xml", None),
    ],
)
def test_detect_version(xml: bytes, version: str | None) -> None:
    assert detect_version(xml) == version


def test_invalid_document_reports_line_numbers(schema_dir: Path, tmp_path: Path) -> None:
    xml = build(full_album()).xml.replace(b"><", b">\n<")  # one element per line
    lines = xml.split(b"\n")
    at = next(i for i, line in enumerate(lines) if line.startswith(b"<MessageId>"))
    del lines[at]  # MessageId is required
    broken = b"\n".join(lines)
    issues = validate_bytes(broken, schema_dir)
    assert issues and issues[0].line == at + 1  # the line where MessageSender now stands
    assert "MessageSender" in issues[0].message and "MessageId" in issues[0].message
    path = tmp_path / "broken.xml"
    path.write_bytes(broken)
    (report,) = validate_paths([path], schema_dir)
    assert report == FileReport(path, "4.3", tuple(issues[:5]), False)


def test_validate_paths_caps_errors_and_handles_unreadable_files(schema_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "many.xml"
    body = "".join(f"<Junk{i}/>" for i in range(20))
    bad.write_text(f'<ern:NewReleaseMessage xmlns:ern="http://ddex.net/xml/ern/43">{body}</ern:NewReleaseMessage>')
    missing = tmp_path / "nope.xml"
    good = tmp_path / "good.xml"
    good.write_bytes(build(full_album(), BuildContext(ern_version="3.8.2")).xml)
    reports = validate_paths([bad, missing, good], schema_dir, max_errors=2)
    assert [r.ok for r in reports] == [False, False, True]
    assert len(reports[0].issues) <= 2
    assert reports[1].issues[0].line == 0 and "cannot read" in reports[1].issues[0].message
    assert reports[2].ern_version == "3.8.2" and reports[2].issues == ()


def test_malformed_xml_reports_its_line(schema_dir: Path) -> None:
    (issue,) = validate_bytes(b'<ern:NewReleaseMessage xmlns:ern="http://ddex.net/xml/ern/43">\n\n<a></b>', schema_dir)
    assert issue.line == 3 and "well-formed" in issue.message


def test_external_entity_is_not_resolved(schema_dir: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-VALUE")
    xxe = (
        f'<?xml version="1.0"?>\n<!DOCTYPE r [<!ENTITY x SYSTEM "file://{secret}">]>\n'
        '<ern:NewReleaseMessage xmlns:ern="http://ddex.net/xml/ern/43"><MessageHeader>&x;</MessageHeader>'
        "</ern:NewReleaseMessage>"
    ).encode()
    etc = xxe.replace(f"file://{secret}".encode(), b"file:///etc/passwd")
    for doc in (xxe, etc):
        issues = validate_bytes(doc, schema_dir)
        assert issues
        text = " ".join(i.message for i in issues)
        assert "TOP-SECRET-VALUE" not in text and "root:" not in text
    path = tmp_path / "xxe.xml"
    path.write_bytes(etc)
    (report,) = validate_paths([path], schema_dir)
    assert not report.ok and all("root:" not in i.message for i in report.issues)


def test_entity_expansion_does_not_blow_up(schema_dir: Path) -> None:
    lol = "".join(
        f'<!ENTITY lol{i} "{("&lol%d;" % (i - 1)) * 10}">' if i else '<!ENTITY lol0 "lol">' for i in range(10)
    )
    bomb = (
        f'<?xml version="1.0"?><!DOCTYPE lolz [{lol}]>'
        '<ern:NewReleaseMessage xmlns:ern="http://ddex.net/xml/ern/43">&lol9;</ern:NewReleaseMessage>'
    ).encode()
    issues = validate_bytes(bomb, schema_dir)
    assert issues and len(issues[0].message) < 1000


def test_missing_schema_dir_names_the_file_and_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_schema(tmp_path, "4.3")
    assert "release-notification.xsd" in str(err.value) and "schema_dir" in str(err.value)


def test_schema_is_cached(schema_dir: Path) -> None:
    assert load_schema(schema_dir, "4.2") is load_schema(schema_dir, "4.2")
