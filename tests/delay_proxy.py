"""A TCP forwarder on 127.0.0.1 that adds a fixed one-way delay in each direction: a WAN in a box.

``DelayProxy(upstream_host, upstream_port, one_way=0.020)`` listens on a free
loopback port and forwards every connection to the upstream server; each
chunk of bytes it reads is held for ``one_way`` seconds, then written on, so
a request and its answer take ``2 * one_way`` longer, like a client
``2 * one_way`` of round trip away from the server. It is latency, not a
throttle: while one chunk waits, the next ones are read and queued, each
with its own due time (per direction: a receiving task stamps chunks, a
sending task writes each at its time), so a sender that keeps many requests
in flight sees the delay once, not once per request.

What it leaves out of a real WAN: loss, jitter and a bandwidth limit. Each
direction holds at most ``in_flight`` bytes (16 MiB by default, the proxy
stops reading when it holds that much, and TCP's own flow control slows the
sender), which keeps memory bounded and is more than any window these tests
and benchmarks open.

Why by hand: ``tc netem`` does this in the kernel but needs root and changes
the machine's loopback for every process on it; toxiproxy is a Go server to
install. This is ~100 lines of asyncio that a test or a benchmark starts and
stops itself.

Used by the delivery tests (in a thread of the test process) and by
``benchmarks/bench_delivery_wan.py`` (in a process of its own, ``serve``, so
that the client being timed does not share an interpreter with it).
``EchoServer`` and ``ping_pong`` measure what the proxy adds.
"""
from __future__ import annotations

import asyncio
import contextlib
import socket
import socketserver
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any, Self

CHUNK = 256 * 1024
IN_FLIGHT = 16 * 2**20


class DelayProxy:
    """Forward 127.0.0.1:``port`` to ``upstream``, every byte delayed ``one_way`` seconds in each direction."""

    def __init__(self, upstream_host: str, upstream_port: int, one_way: float = 0.0, *,
                 in_flight: int = IN_FLIGHT) -> None:
        if one_way < 0:
            raise ValueError(f"one_way must not be negative, got {one_way}")
        self.upstream = (upstream_host, upstream_port)
        self.one_way = one_way
        self.in_flight = in_flight
        #: connections accepted so far (a benchmark prints it: how many connections a tool opened)
        self.accepted = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="delay-proxy", daemon=True)
        self._thread.start()
        self._connections: set[asyncio.Task[None]] = set()
        self._server = asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)
        self.port: int = self._server.sockets[0].getsockname()[1]

    @property
    def rtt(self) -> float:
        """The round trip the proxy adds, in seconds."""
        return 2 * self.one_way

    async def _listen(self) -> asyncio.Server:
        return await asyncio.start_server(self._accept, "127.0.0.1", 0, limit=CHUNK)

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        self.accepted += 1
        try:
            await self._forward(client_r, client_w)
        except asyncio.CancelledError:
            pass  # close() ends the connection; asyncio's stream server must not see a cancelled handler
        finally:
            self._connections.discard(task)

    async def _forward(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            try:
                up_r, up_w = await asyncio.open_connection(*self.upstream, limit=CHUNK)
            except OSError:
                return  # nothing listens upstream: the client sees the connection close
            try:
                pipes = [asyncio.create_task(self._pipe(client_r, up_w)),
                         asyncio.create_task(self._pipe(up_r, client_w))]
                try:
                    done, _ = await asyncio.wait(pipes, return_when=asyncio.FIRST_EXCEPTION)
                    if any(not t.cancelled() and t.exception() is not None for t in done):
                        for t in pipes:
                            t.cancel()  # one side was reset: end the other too
                    await asyncio.gather(*pipes, return_exceptions=True)
                finally:
                    for t in pipes:
                        t.cancel()
            finally:
                up_w.close()
                with contextlib.suppress(OSError, ConnectionError):
                    await up_w.wait_closed()
        finally:
            client_w.close()
            with contextlib.suppress(OSError, ConnectionError):
                await client_w.wait_closed()

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        """One direction: read and stamp chunks as they come, write each one ``one_way`` after it came."""
        loop = asyncio.get_running_loop()
        held: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        room = asyncio.Event()
        room.set()
        holding = 0

        async def receive() -> None:
            nonlocal holding
            while True:
                await room.wait()
                try:
                    data = await src.read(CHUNK)
                except (OSError, ConnectionError):
                    data = b""  # a reset reaches the other side as an end of stream, after the delay
                held.put_nowait((loop.time() + self.one_way, data))
                if not data:
                    return
                holding += len(data)
                if holding >= self.in_flight:
                    room.clear()

        receiving = asyncio.create_task(receive())
        try:
            while True:
                due, data = await held.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    if dst.can_write_eof():
                        with contextlib.suppress(OSError, ConnectionError):
                            dst.write_eof()  # half-close, as the sender did
                    return
                dst.write(data)
                await dst.drain()
                holding -= len(data)
                if holding < self.in_flight:
                    room.set()
        finally:
            receiving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receiving

    def close(self) -> None:
        """Stop listening, cut every connection and stop the thread."""
        async def shut() -> None:
            self._server.close()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            await self._server.wait_closed()

        if self._loop.is_closed():
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shut(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve(upstream_host: str, upstream_port: int, one_way: float, ready: Any, stop: Any) -> None:
    """Run a ``DelayProxy`` until ``stop`` (an Event) is set; put its port on ``ready`` (a Queue).

    The target of a ``multiprocessing`` process: a benchmark runs the proxy in
    a process of its own, so that it never competes with the timed client for
    one interpreter.
    """
    with DelayProxy(upstream_host, upstream_port, one_way) as proxy:
        ready.put(proxy.port)
        stop.wait()


# --------------------------------------------------------------------------- measuring it


class EchoServer:
    """A loopback TCP server that sends back every byte it receives (a thread per connection)."""

    def __init__(self) -> None:
        class Echo(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                sock: socket.socket = self.request
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with contextlib.suppress(OSError):
                    while data := sock.recv(CHUNK):
                        sock.sendall(data)

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Echo)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="echo", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _recv_exactly(sock: socket.socket, n: int) -> int:
    got = 0
    while got < n:
        data = sock.recv(min(CHUNK, n - got))
        if not data:
            raise ConnectionError(f"the echo stopped after {got} of {n} bytes")
        got += len(data)
    return got


def ping_pong(port: int, rounds: int = 10, size: int = 64) -> list[float]:
    """Seconds per round trip of ``size`` bytes to an echo server at 127.0.0.1:``port`` (one connection)."""
    out = []
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        message = b"p" * size
        for _ in range(rounds):
            start = time.perf_counter()
            sock.sendall(message)
            _recv_exactly(sock, size)
            out.append(time.perf_counter() - start)
    return out


def stream_through(port: int, nbytes: int) -> float:
    """Seconds to send ``nbytes`` to an echo server at 127.0.0.1:``port`` and have them all back.

    Through a proxy of round trip R that holds data rather than throttling it,
    this is about R plus the transfer time; a forwarder that passed one chunk
    per round trip would take ``nbytes / chunk * R``.
    """
    block = bytes(CHUNK)
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        failure: list[BaseException] = []

        def send() -> None:
            try:
                left = nbytes
                while left > 0:
                    sock.sendall(block[:min(left, CHUNK)])
                    left -= CHUNK
            except BaseException as exc:  # noqa: BLE001 - reported by the caller
                failure.append(exc)

        start = time.perf_counter()
        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        _recv_exactly(sock, nbytes)
        seconds = time.perf_counter() - start
        sender.join(10)
    if failure:
        raise failure[0]
    return seconds


def describe_rtt(samples: list[float]) -> str:
    """``median 40.6 ms (min 40.2, max 41.9)`` for a list of round trips in seconds."""
    ms: Callable[[float], str] = lambda s: f"{s * 1000:.1f}"
    return f"median {ms(statistics.median(samples))} ms (min {ms(min(samples))}, max {ms(max(samples))})"
