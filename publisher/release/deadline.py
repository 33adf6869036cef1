"""HTTP requests cut at a deadline, whatever the server does.

`requests` times out each socket read on its own, so a server that sends a byte
every few seconds holds a download for ever: a slow-retrieval attack on
`lcm release verify`, on a mirror's refresh (which every mirrored repo waits
for) and on `lcm release export`. A `DeadlineSession` keeps the sockets of its
connections; `deadline(seconds)` shuts them down when the time is up, so the
blocked read returns and the request fails in whatever phase it is (headers,
body, a redirect's next hop), and `abort()` does the same at once (a mirror
that stops). A TLS handshake in progress is bounded by the per-read timeout
only (its socket is not the one kept until the handshake ends).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool


class DeadlineSession(requests.Session):
    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self.expired = False  # the last deadline passed (or abort() was called)
        adapter = _TrackingAdapter(self._track)
        self.mount("http://", adapter)
        self.mount("https://", adapter)

    @contextlib.contextmanager
    def deadline(self, seconds: float) -> Iterator[None]:
        """Requests made inside fail once `seconds` have passed (`expired` is then True)."""
        with self._lock:
            self._sockets = {s for s in self._sockets if s.fileno() != -1}
            self.expired = False
        timer = threading.Timer(seconds, self.abort)
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()

    def abort(self) -> None:
        """Cut every connection of this session now."""
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    # The socket's own shutdown: SSLSocket.shutdown would also drop its
                    # TLS state under the thread that reads it.
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)
            if self.expired:
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _TrackingAdapter(HTTPAdapter):
    """An adapter whose connections report their sockets to `track` once connected."""

    def __init__(self, track: Any) -> None:
        self._track_socket = track  # before super().__init__: it makes the pool manager
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        track = self._track_socket

        class Plain(HTTPConnection):
            def connect(self) -> None:
                super().connect()
                track(self.sock)

        class Secure(HTTPSConnection):
            def connect(self) -> None:
                super().connect()
                track(self.sock)  # the TLS socket, once its handshake is done

        self.poolmanager.pool_classes_by_scheme = {
            "http": type("PlainPool", (HTTPConnectionPool,), {"ConnectionCls": Plain}),
            "https": type("SecurePool", (HTTPSConnectionPool,), {"ConnectionCls": Secure}),
        }
