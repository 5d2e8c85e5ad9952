"""The test network: tests/delay_proxy.py holds bytes for its delay, forwards them whole and in order, and ends cleanly.

No upper bound on any time here (the machine's speed swings); a round trip
through the proxy can only be longer than the delay it adds, never shorter.
``benchmarks/bench_delivery_wan.py`` prints what it measures.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterator

import pytest
from delay_proxy import DelayProxy, EchoServer, ping_pong


@pytest.fixture()
def echo() -> Iterator[EchoServer]:
    with EchoServer() as server:
        yield server


def test_each_round_trip_waits_the_delay_both_ways(echo: EchoServer) -> None:
    with DelayProxy("127.0.0.1", echo.port, one_way=0.03) as proxy:
        assert proxy.rtt == pytest.approx(0.06)
        rounds = ping_pong(proxy.port, rounds=5)
    assert len(rounds) == 5 and min(rounds) >= 0.06


def test_bytes_arrive_whole_and_in_order_both_ways_and_an_end_of_stream_passes(echo: EchoServer) -> None:
    payload = os.urandom(3 * 2**20 + 17)
    # a small in_flight too: the proxy stops reading and starts again many times
    with DelayProxy("127.0.0.1", echo.port, one_way=0.005, in_flight=256 * 1024) as proxy, \
            socket.create_connection(("127.0.0.1", proxy.port), timeout=30) as sock:
        def send() -> None:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        received = bytearray()
        while data := sock.recv(65536):  # ends only when the echo's close came back through the proxy
            received += data
        sender.join(10)
    assert bytes(received) == payload


def _read_until_closed(sock: socket.socket) -> bytes:
    got = b""
    try:
        while data := sock.recv(1024):
            got += data
    except ConnectionResetError:
        pass
    return got


def test_a_connection_to_nothing_is_closed_and_close_cuts_open_connections(
        echo: EchoServer, caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]  # nothing listens there once this socket is closed
    with DelayProxy("127.0.0.1", dead_port) as proxy, \
            socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        assert _read_until_closed(sock) == b""

    caplog.set_level(logging.DEBUG, logger="asyncio")
    proxy = DelayProxy("127.0.0.1", echo.port, one_way=0.01)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(b"ping")
        assert sock.recv(4) == b"ping"
        sock.sendall(b"held")  # still inside the proxy when it closes
        proxy.close()
        assert _read_until_closed(sock) in (b"", b"held")  # the connection ends; the socket timeout would fail it
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
