"""Store acknowledgements of both kinds, written by the tests in the shapes DDEX's SFTP choreography defines.

* ``legacy_ack``: ``FtpAcknowledgementMessage`` (choreography up to 1.6), one per message.
* ``current_ack``: ``AcknowledgementMessage`` (1.8; ``ErnAcknowledgementStatusMessage`` in 1.7,
  ``root=``), a ``ReleaseStatus`` per release with its ``Acknowledgement``/``MessageStatus``.

Values are escaped as XML text, so a test can put any text (newlines, control
characters a store might send) into ``ErrorText``.
"""
from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import escape

STORE = "PADPIDA2011072101T"
LABEL = "PADPIDA2014040101Z"


def _header(message_id: str) -> str:
    return (
        f"<MessageHeader><MessageThreadId>{message_id}</MessageThreadId><MessageId>{message_id}</MessageId>"
        f"<MessageSender><PartyId>{STORE}</PartyId><PartyName><FullName>Example Store</FullName></PartyName>"
        f"</MessageSender><MessageRecipient><PartyId>{LABEL}</PartyId></MessageRecipient>"
        "<MessageCreatedDateTime>2026-01-02T08:15:00Z</MessageCreatedDateTime></MessageHeader>"
    )


def legacy_ack(release: str, status: str = "FileOK", error_text: str | None = None) -> bytes:
    """An ``FtpAcknowledgementMessage`` for the message of ``release``."""
    error = f"<ErrorText>{escape(error_text)}</ErrorText>" if error_text is not None else ""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<ernc:FtpAcknowledgementMessage xmlns:ernc="http://ddex.net/xml/ern-c-sftp/16" '
        'MessageVersionId="ern-c-sftp/16" AvsVersionId="4">'
        f"{_header('ACK-' + release)}<AcknowledgedFile><ReleaseId>{release}</ReleaseId></AcknowledgedFile>"
        f"<FileStatus>{status}</FileStatus>{error}</ernc:FtpAcknowledgementMessage>"
    ).encode()


@dataclass
class ReleaseAnswer:
    """One ``ReleaseStatus``: the release (by ICPN, and a GRid when given) and what the store says of it."""

    icpn: str
    status: str = "SuccessfullyIngestedByReleaseDistributor"
    message_status: str = "FileOK"
    error_text: str | None = None
    proposed_action: str | None = None
    manual_check: bool | None = None
    affected_isrc: str | None = None
    grid: str | None = None
    information: str | None = None


def current_ack(answers: list[ReleaseAnswer], *, batch_id: str | None, root: str = "AcknowledgementMessage",
                version: str = "18") -> bytes:
    """An ERN choreography acknowledgement (1.7/1.8) answering for each release in ``answers``."""
    parts = []
    for a in answers:
        ids = f"<ICPN>{a.icpn}</ICPN>" + (f"<GRid>{a.grid}</GRid>" if a.grid else "")
        status = (f'<ReleaseStatus UserDefinedValue="{a.status[12:]}">UserDefined</ReleaseStatus>'
                  if a.status.startswith("UserDefined:") else f"<ReleaseStatus>{a.status}</ReleaseStatus>")
        parts.append(
            f"<ReleaseStatus><ReleaseId>{ids}</ReleaseId>{status}"
            + (f"<ErrorText>{escape(a.error_text)}</ErrorText>" if a.error_text is not None else "")
            + (f"<ProposedActionType>{a.proposed_action}</ProposedActionType>" if a.proposed_action else "")
            + (f"<ManualCheckRequired>{str(a.manual_check).lower()}</ManualCheckRequired>"
               if a.manual_check is not None else "")
            + (f"<AffectedResource><ISRC>{a.affected_isrc}</ISRC></AffectedResource>" if a.affected_isrc else "")
            + "<Acknowledgement><MessageType>NewReleaseMessage</MessageType>"
            + (f"<BatchId>{batch_id}</BatchId>" if batch_id else "")
            + f"<MessageId>SENDER-{a.icpn}</MessageId><MessageStatus><Status>{a.message_status}</Status>"
            + (f"<Information>{escape(a.information)}</Information>" if a.information else "")
            + "</MessageStatus></Acknowledgement></ReleaseStatus>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<ernc:{root} xmlns:ernc="http://ddex.net/xml/ern-c-sftp/{version}" '
        f'MessageVersionId="ern-c-sftp/{version}" AvsVersionId="4">'
        f"{_header('ACK-' + (batch_id or 'x'))}{''.join(parts)}</ernc:{root}>"
    ).encode()
