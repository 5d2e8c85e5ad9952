"""A TCP forwarder on 127.0.0.1 that plays a server going bad without closing: stalls, and cuts mid-transfer.

``FaultProxy(upstream_host, upstream_port)`` forwards every connection to the
upstream server (a real sshd, moto) until told otherwise:

* ``stall()``: from now on nothing is forwarded in either direction, and
  every connection (open or new) stays open: the peer sees a server that
  stopped answering, as when a store's machine hangs or a firewall starts
  dropping packets. ``resume()`` forwards again.
* ``cut_after(n)``: once ``n`` more bytes went from client to server, every
  open connection is cut (a connection dropped in the middle of a file);
  later connections are forwarded normally.

A thread per direction; the tests start and stop it themselves.
"""
from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Self


class FaultProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.accepted = 0
        self.cuts = 0
        self._stalled = threading.Event()
        self._cut_left: int | None = None
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._closed = False
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, name="fault-proxy", daemon=True).start()

    def stall(self) -> None:
        """Stop forwarding; keep every connection open."""
        self._stalled.set()

    def resume(self) -> None:
        self._stalled.clear()

    def cut_after(self, n: int) -> None:
        """Cut every open connection once ``n`` more bytes went from a client to the server."""
        with self._lock:
            self._cut_left = n

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.accepted += 1
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, to_server: bool) -> None:
        try:
            while data := src.recv(65536):
                while self._stalled.is_set() and not self._closed:
                    time.sleep(0.05)  # hold the bytes; the sender's buffers fill and it blocks
                if to_server and self._should_cut(len(data)):
                    self._cut()
                    return
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def _should_cut(self, n: int) -> bool:
        with self._lock:
            if self._cut_left is None:
                return False
            self._cut_left -= n
            if self._cut_left > 0:
                return False
            self._cut_left = None
            self.cuts += 1
            return True

    def _cut(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()

    def close(self) -> None:
        self._closed = True
        self._stalled.clear()
        with contextlib.suppress(OSError):
            self._listener.close()
        self._cut()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
