"""Store acknowledgements of both kinds: parsed safely, sizes checked before reading, listings bounded (SFTP, S3)."""
from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest
from ack_messages import ReleaseAnswer, current_ack, legacy_ack
from conftest import S3Proxy, S3Server, SFTPServer, make_batch
from paramiko import sftp
from sshd_server import OpenSSHServer

from ddex_etl.delivery import open_target, parse_ack, read_acks, upload_batch
from ddex_etl.delivery.acks import MAX_ACK_BYTES, AckParseError, message_file_for, parse_acks, read_ack_file

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


# --------------------------------------------------------------------------- choreography 1.7 / 1.8 AcknowledgementMessage

ACK_DIR = f"N_{BATCH}/acknowledgements"
FOLDERS = ("0602445700000", "0602445700001")


@pytest.mark.parametrize(("root", "version"), [("AcknowledgementMessage", "18"),
                                                ("ErnAcknowledgementStatusMessage", "17")])
def test_a_current_acknowledgement_rejection_is_read_with_its_reason(root: str, version: str) -> None:
    data = current_ack([ReleaseAnswer(
        "0602445700001", "ProcessingErrorAtReleaseDistributor", "ResourceCorrupt",
        error_text="Track 2 is truncated", proposed_action="ResendResources", manual_check=True,
        affected_isrc="GBAYE2500012")], batch_id=BATCH, root=root, version=version)
    [ack] = parse_acks(data, ack_file=f"{ACK_DIR}/ACK_{BATCH}_0602445700001.xml", batch_folder=f"N_{BATCH}",
                       release_folders=FOLDERS)
    assert ack.kind == root and not ack.accepted and ack.final
    assert ack.status == "ProcessingErrorAtReleaseDistributor" and ack.error_text == "Track 2 is truncated"
    assert ack.proposed_action == "ResendResources" and ack.manual_check_required is True
    assert ack.affected_resources == ("GBAYE2500012",) and ack.batch == BATCH
    assert ack.message_id == "SENDER-0602445700001" and ack.sender == "PADPIDA2011072101T"
    assert ack.release == "0602445700001"
    assert ack.message_file == f"N_{BATCH}/0602445700001/0602445700001.xml"  # tied to the release folder
    assert "rejected (ProcessingErrorAtReleaseDistributor)" in ack.describe()


CURRENT_CASES = [
    # (release status, message status, status recorded, accepted, final)
    ("SuccessfullyIngestedByReleaseDistributor", "FileOK", "SuccessfullyIngestedByReleaseDistributor", True, True),
    ("ReleaseMadeAvailableToConsumers", "FileOK", "ReleaseMadeAvailableToConsumers", True, True),
    # taken as a release, but its message refused: a rejection with the message's status
    ("SuccessfullyIngestedByReleaseDistributor", "NewReleaseMessageInvalid", "NewReleaseMessageInvalid", False, True),
    # received, not decided yet: no rejection, and looked at again next time
    ("ReleaseReceivedByReleaseDistributor", "FileOK", "ReleaseReceivedByReleaseDistributor", True, False),
    ("UserDefined:ResourceBinariesMissing", "FileOK", "ResourceBinariesMissing", False, True),
    ("SomethingNewNobodyKnows", "FileOK", "SomethingNewNobodyKnows", False, True),  # unknown: never success
]


@pytest.mark.parametrize(("release_status", "message_status", "status", "accepted", "final"), CURRENT_CASES)
def test_current_statuses_count_as_accepted_only_when_the_store_says_so(
    release_status: str, message_status: str, status: str, accepted: bool, final: bool
) -> None:
    data = current_ack([ReleaseAnswer("0602445700000", release_status, message_status)], batch_id=BATCH)
    [ack] = parse_acks(data, ack_file=f"{ACK_DIR}/ACK_{BATCH}_0602445700000.xml", batch_folder=f"N_{BATCH}")
    assert (ack.status, ack.accepted, ack.final) == (status, accepted, final)


def test_one_acknowledgement_of_several_releases_gives_a_record_per_release() -> None:
    data = current_ack([ReleaseAnswer("0602445700000"),
                        ReleaseAnswer("X", "ProcessingErrorAtReleaseDistributor", grid="A10302B0001234567Q")],
                       batch_id=BATCH)
    # The second release is matched to its folder by any of its ids (here the GRid).
    folders = ("0602445700000", "A10302B0001234567Q")
    records = parse_acks(data, ack_file=f"{ACK_DIR}/ACK_{BATCH}.xml", batch_folder=f"N_{BATCH}", release_folders=folders)
    assert [(r.release, r.accepted) for r in records] == [("0602445700000", True), ("A10302B0001234567Q", False)]
    assert len({r.ack_file for r in records}) == 2  # one key each in store_acks
    with pytest.raises(AckParseError, match="parse_acks"):
        parse_ack(data, ack_file=f"{ACK_DIR}/ACK_{BATCH}.xml")


def test_both_kinds_are_read_back_from_an_sftp_target(sftp_server: SFTPServer, tmp_path: Path) -> None:
    folder = sftp_server.folder()
    local = make_batch(tmp_path / "out", BATCH, releases=3, audio_size=1_000)
    with open_target(sftp_server.url(folder), **sftp_server.options()) as target:
        upload_batch(local, target, remote_dir=f"N_{BATCH}")
        root = sftp_server.root / folder / f"N_{BATCH}"
        (root / "acknowledgements").mkdir()
        (root / "acknowledgements" / f"ACK_{BATCH}_0602445700001.xml").write_bytes(current_ack(
            [ReleaseAnswer("0602445700001", "ProcessingErrorAtReleaseDistributor", error_text="no cover")],
            batch_id=BATCH))
        (root / "0602445700000" / "ACK_0602445700000.xml").write_bytes(legacy_ack("0602445700000"))
        report = read_acks(target, f"N_{BATCH}")
    assert report.problems == []
    assert {(r.kind, r.message_file, r.accepted) for r in report.records} == {
        ("FtpAcknowledgementMessage", f"N_{BATCH}/0602445700000/0602445700000.xml", True),
        ("AcknowledgementMessage", f"N_{BATCH}/0602445700001/0602445700001.xml", False),
    }


# --------------------------------------------------------------------------- a 1 GB file where an ACK should be


def _huge(path: Path, size: int = 2**30) -> None:
    """A sparse file of ``size`` bytes: no disk used, but a reader that reads it whole takes ``size`` of memory."""
    with open(path, "wb") as f:
        f.truncate(size)


def test_a_huge_ack_file_is_refused_from_its_listed_size_without_reading_it(
    sftp_server: SFTPServer, tmp_path: Path
) -> None:
    folder = sftp_server.folder()
    local = make_batch(tmp_path / "out", BATCH, releases=2, audio_size=1_000)
    with open_target(sftp_server.url(folder), **sftp_server.options()) as target:
        upload_batch(local, target)
        (sftp_server.root / folder / BATCH / "0602445700000" / "ACK_0602445700000.xml").write_bytes(
            legacy_ack("0602445700000"))
        _huge(sftp_server.root / folder / BATCH / "0602445700001" / "ACK_0602445700001.xml")
        tracemalloc.start()
        t0 = time.monotonic()
        report = read_acks(target, BATCH)
        seconds = time.monotonic() - t0
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert [r.release for r in report.records] == ["0602445700000"]  # the good one is still read
    [(path, why)] = report.problems
    assert path == f"{BATCH}/0602445700001/ACK_0602445700001.xml"
    assert "1,073,741,824 bytes" in why and target.describe() in why and "not read" in why and "fix:" in why
    assert peak < 16 * 2**20 and seconds < 30  # the old reader held the whole gigabyte


def test_a_file_larger_than_its_listing_said_is_read_no_further(tmp_path: Path) -> None:
    (tmp_path / "B").mkdir()
    _huge(tmp_path / "B" / "ACK_R.xml")
    with open_target(str(tmp_path)) as target:
        tracemalloc.start()
        assert len(read_ack_file(target, "B/ACK_R.xml", size=100)) == 100  # what an earlier listing said
        with pytest.raises(AckParseError, match="more than 4,194,304 bytes") as err:
            read_ack_file(target, "B/ACK_R.xml", size=None)  # no listing: the limit, and one byte to tell
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert "B/ACK_R.xml" in str(err.value) and target.describe() in str(err.value)
    assert peak < 3 * MAX_ACK_BYTES


# --------------------------------------------------------------------------- listing costs


def _many_resources(root: Path, batch: str, releases: int, resources: int) -> None:
    """A delivered batch as the store sees it: release folders with ``resources`` media files each, one ACK each."""
    for n in range(releases):
        ident = f"06024457{n:05d}"
        res = root / batch / ident / "resources"
        res.mkdir(parents=True)
        for i in range(resources):
            (res / f"{ident}_01_{i:04d}.flac").write_bytes(b"f")
        (root / batch / ident / f"{ident}.xml").write_bytes(b"<NewReleaseMessage/>")
        (root / batch / ident / f"ACK_{ident}.xml").write_bytes(legacy_ack(ident))
    (root / batch / f"BatchComplete_{batch}.xml").write_bytes(b"")


def _count_sftp_requests(target: object) -> dict[int, int]:
    """Count the SFTP requests the client sends to the server, by packet type (OPENDIR 11, READDIR 12)."""
    ftp = target.fs.ftp  # type: ignore[attr-defined]
    counts: dict[int, int] = {}
    paths: list[str] = []
    send = ftp._async_request

    def counting(fileobj: object, t: int, *args: object) -> object:
        counts[t] = counts.get(t, 0) + 1
        if t == sftp.CMD_OPENDIR:
            paths.append(str(args[0]))
        return send(fileobj, t, *args)

    ftp._async_request = counting
    counts[-1] = 0
    counting.paths = paths  # type: ignore[attr-defined]
    return counts


def test_acks_cost_the_same_listings_on_openssh_whatever_the_media_a_batch_holds(
    openssh_server: OpenSSHServer,
) -> None:
    folder = openssh_server.folder()
    small, big = "20260101120000000", "20260102120000000"
    _many_resources(openssh_server.root / folder, small, releases=3, resources=2)
    _many_resources(openssh_server.root / folder, big, releases=3, resources=700)
    costs = {}
    with open_target(openssh_server.url(folder), **openssh_server.options()) as target:
        for batch in (small, big):
            counts = _count_sftp_requests(target)
            report = read_acks(target, batch)
            assert len(report.records) == 3 and report.listings == 4
            costs[batch] = (counts.get(sftp.CMD_OPENDIR, 0), counts.get(sftp.CMD_READDIR, 0))
        counts = _count_sftp_requests(target)
        target.list(big)  # what acknowledgements cost before: the whole tree, resources/ included
        walked = counts.get(sftp.CMD_READDIR, 0)
    assert costs[small] == costs[big]  # independent of the 2,100 media files
    assert costs[big][0] == 4 and walked > 3 * costs[big][1]


@pytest.mark.slow  # some 300 PUTs to moto to set the scene
def test_acks_cost_the_same_listings_on_s3_whatever_the_media_a_batch_holds(
    s3_server: S3Server, tmp_path: Path
) -> None:
    bucket = s3_server.bucket()
    local = tmp_path / "store"
    small, big = "20260101120000000", "20260102120000000"
    _many_resources(local, small, releases=3, resources=2)
    _many_resources(local, big, releases=3, resources=100)
    client = s3_server.client()
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        client.put_object(Bucket=bucket, Key=f"in/{path.relative_to(local).as_posix()}", Body=path.read_bytes())
    proxy = S3Proxy(s3_server.endpoint)
    try:
        with open_target(f"s3://{bucket}/in", endpoint_url=proxy.url, backoff=0.01) as target:
            costs = {}
            for batch in (small, big):
                proxy.requests.clear()
                report = read_acks(target, batch)
                assert len(report.records) == 3 and report.problems == []
                costs[batch] = sum(1 for method, path in proxy.requests if method == "GET" and "list-type=2" in path)
    finally:
        proxy.close()
    assert costs[small] == costs[big] == 4  # one delimited listing per folder: resources/ is only a prefix in it
