"""An SFTP session lost mid-delivery is logged once, naming the store's host, then reconnected (issue 24 item 8).

The in-process asyncssh server closes the client's connection between two uploads; the next upload fails,
the target logs one "reconnecting and retrying" line naming sftp://...host:port, opens a new session and
succeeds.
"""
from __future__ import annotations

import asyncio
import logging

import pytest
from conftest import SFTPServer

from ddex_etl.delivery import open_target


def test_a_lost_sftp_session_is_logged_once_with_the_host(sftp_server: SFTPServer,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="ddex_etl.delivery")
    folder = sftp_server.folder()
    target = open_target(sftp_server.url(folder), **sftp_server.options())
    try:
        target.put_bytes("a.txt", b"one")
        before = len(sftp_server.connections)

        async def drop() -> None:
            for conn in sftp_server.connections[:before]:
                conn.close()

        asyncio.run_coroutine_threadsafe(drop(), sftp_server.loop).result(10)
        target.put_bytes("b.txt", b"two")
    finally:
        target.close()
    assert (sftp_server.root / folder / "b.txt").read_bytes() == b"two"
    lines = [r.getMessage() for r in caplog.records if "reconnecting and retrying" in r.getMessage()]
    assert len(lines) == 1, lines
    assert f"127.0.0.1:{sftp_server.port}" in lines[0] and "uploading b.txt" in lines[0]
    assert target.retried == 1
