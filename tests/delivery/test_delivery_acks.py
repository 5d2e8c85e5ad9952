"""Store acknowledgements (FtpAcknowledgementMessage): parsed safely, read back from SFTP and S3."""
from __future__ import annotations

from pathlib import Path

import pytest
from conftest import S3Server, SFTPServer, make_batch

from ddex_etl.delivery import open_target, parse_ack, read_acks, upload_batch
from ddex_etl.delivery.acks import AckParseError, message_file_for

FIXTURES = Path(__file__).parent / "fixtures"
REJECTED = (FIXTURES / "ACK_rejected.xml").read_bytes()
ACCEPTED = (FIXTURES / "ACK_accepted.xml").read_bytes()
BATCH = "20260101120000000"


def test_a_rejection_is_read_with_its_reason_and_proposed_action() -> None:
    ack = parse_ack(REJECTED, ack_file=f"{BATCH}/0602445700001/ACK_0602445700001.xml")
    assert ack.message_file == f"{BATCH}/0602445700001/0602445700001.xml"
    assert ack.release == "0602445700001" and ack.status == "ResourceCorrupt" and not ack.accepted
    assert ack.error_text is not None and "truncated FLAC stream" in ack.error_text
    assert ack.proposed_action == "ResendResources" and ack.manual_check_required is False
    assert ack.affected_resources == ("GBAYE2500012",)
    assert ack.sender == "PADPIDA2011072101T" and ack.created == "2026-01-02T08:15:00Z"
    line = ack.describe()
    assert "rejected (ResourceCorrupt)" in line and "truncated FLAC stream" in line and "ResendResources" in line


def test_file_ok_is_an_acceptance_in_any_namespace_version() -> None:
    ack = parse_ack(ACCEPTED, ack_file="B/0602445700000/ACK_0602445700000.xml")
    assert ack.accepted and ack.status == "FileOK" and ack.error_text is None and ack.release == "0602445700000"
    assert ack.describe() == "B/0602445700000/0602445700000.xml: accepted"


STATUS_CASES = [
    ("<FileStatus>FileOK</FileStatus>", "FileOK", True),
    ("<FileStatus>NewReleaseMessageInvalid</FileStatus>", "NewReleaseMessageInvalid", False),
    ("<FileStatus>  StillThinkingAboutIt  </FileStatus>", "StillThinkingAboutIt", False),  # unknown: never success
    ('<FileStatus UserDefinedValue="DuplicateDelivery">UserDefined</FileStatus>', "DuplicateDelivery", False),
]


@pytest.mark.parametrize(("status_xml", "status", "accepted"), STATUS_CASES)
def test_only_file_ok_counts_as_accepted(status_xml: str, status: str, accepted: bool) -> None:
    data = f"<FtpAcknowledgementMessage><AcknowledgedFile/>{status_xml}</FtpAcknowledgementMessage>".encode()
    ack = parse_ack(data, ack_file="R/ACK_R.xml")
    assert (ack.status, ack.accepted) == (status, accepted)
    assert ack.release == "R"


XXE = b"""<?xml version="1.0"?>
<!DOCTYPE FtpAcknowledgementMessage [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<FtpAcknowledgementMessage><FileStatus>ResourceMissing</FileStatus><ErrorText>&xxe;</ErrorText></FtpAcknowledgementMessage>"""

LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
<!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">]>
<FtpAcknowledgementMessage><FileStatus>FileOK</FileStatus><ErrorText>&lol5;</ErrorText></FtpAcknowledgementMessage>"""

BAD_FILES = [
    (XXE, "entity"),
    (LAUGHS, "entity"),
    (b"<FtpAcknowledgementMessage><FileStatus>FileOK", "not well-formed"),
    (b"<NewReleaseMessage/>", "not FtpAcknowledgementMessage"),
    (b"<FtpAcknowledgementMessage><ErrorText>x</ErrorText></FtpAcknowledgementMessage>", "no FileStatus"),
]


@pytest.mark.parametrize(("data", "why"), BAD_FILES)
def test_hostile_or_broken_files_are_refused_without_expanding_anything(data: bytes, why: str) -> None:
    with pytest.raises(AckParseError, match=why) as err:
        parse_ack(data, ack_file="R/ACK_R.xml")
    assert "root:" not in str(err.value)  # /etc/passwd was never read


def test_ack_names_map_to_the_acknowledged_message() -> None:
    assert message_file_for("B/R/ACK_R.xml") == "B/R/R.xml"
    assert message_file_for("ACK_R.xml") == "R.xml"
    assert message_file_for("B/R/ACK_R.xml.xml") == "B/R/R.xml"  # stores that keep the extension
    with pytest.raises(AckParseError):
        message_file_for("B/R/R.xml")


def _store_answers(put: object) -> None:
    """What a store does after ingesting the batch: ACK files beside each message (one is garbage)."""
    put(f"{BATCH}/0602445700000/ACK_0602445700000.xml", ACCEPTED)  # type: ignore[operator]
    put(f"{BATCH}/0602445700001/ACK_0602445700001.xml", REJECTED)  # type: ignore[operator]
    put(f"{BATCH}/0602445700002/ACK_0602445700002.xml", b"<html>502 Bad Gateway</html>")  # type: ignore[operator]


def _check(report: object) -> None:
    records = report.records  # type: ignore[attr-defined]
    assert [r.message_file for r in records] == [
        f"{BATCH}/0602445700000/0602445700000.xml", f"{BATCH}/0602445700001/0602445700001.xml"]
    assert [r.accepted for r in records] == [True, False]
    [rejected] = report.rejected  # type: ignore[attr-defined]
    assert rejected.release == "0602445700001" and "truncated FLAC stream" in (rejected.error_text or "")
    [(path, why)] = report.problems  # type: ignore[attr-defined]
    assert path == f"{BATCH}/0602445700002/ACK_0602445700002.xml" and "not FtpAcknowledgementMessage or AcknowledgementMessage" in why


def test_acks_are_read_back_from_an_sftp_target(sftp_server: SFTPServer, tmp_path: Path) -> None:
    folder = sftp_server.folder()
    local = make_batch(tmp_path / "out", BATCH, releases=3, audio_size=1_000)
    with open_target(sftp_server.url(folder), **sftp_server.options()) as target:
        upload_batch(local, target)
        assert read_acks(target, BATCH).records == []

        def put(rel: str, data: bytes) -> None:  # the store writes straight into its own folder
            (sftp_server.root / folder / rel).write_bytes(data)

        _store_answers(put)
        _check(read_acks(target, BATCH))
        # the batch folder and its three release folders, never resources/
        assert read_acks(target, BATCH).listings == 4


def test_acks_are_read_back_from_an_s3_target(s3_server: S3Server, tmp_path: Path) -> None:
    bucket = s3_server.bucket()
    client = s3_server.client()
    local = make_batch(tmp_path / "out", BATCH, releases=3, audio_size=1_000)
    with open_target(f"s3://{bucket}/in", **s3_server.options()) as target:
        upload_batch(local, target)
        _store_answers(lambda rel, data: client.put_object(Bucket=bucket, Key=f"in/{rel}", Body=data))
        _check(read_acks(target, BATCH))
