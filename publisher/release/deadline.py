"""HTTP requests cut at a deadline, whatever the server does.

`requests` times out each socket read on its own, so a server that sends a byte
every few seconds holds a download for ever: a slow-retrieval attack on
`lcm release verify`, on a mirror's refresh (which every mirrored repo waits
for) and on `lcm release export`. A `DeadlineSession` keeps the sockets of its
connections (direct or through a proxy from the environment); `deadline(s)`
shuts them down when the time is up, so the blocked read returns and the
request fails in whatever phase it is (headers, body, a redirect's next hop).
`abort()` does the same at once, and for good: every later request of the
session is cut too (a mirror that stops). A TLS handshake in progress is
bounded by the per-read timeout only (its socket is kept once the handshake
ends).

A shut-down socket reads as the end of the stream: a body without a length
then looks complete. The caller checks `expired` (and `aborted`) after the
request, not only when it raised.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection as BaseHTTPConnection
from urllib3.connection import HTTPSConnection as BaseHTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.poolmanager import ProxyManager


class DeadlineSession(requests.Session):
    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self.expired = False  # the last deadline passed
        self.aborted = False  # abort() was called: every request is cut
        adapter = _TrackingAdapter(self._track)
        self.mount("http://", adapter)
        self.mount("https://", adapter)

    @contextlib.contextmanager
    def deadline(self, seconds: float) -> Iterator[None]:
        """Requests made inside fail once `seconds` have passed (`expired` is then True)."""
        with self._lock:
            self._sockets = {s for s in self._sockets if s.fileno() != -1}
            self.expired = False
        timer = threading.Timer(seconds, self._expire)
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()

    def abort(self) -> None:
        """Cut every connection of this session, now and from now on."""
        with self._lock:
            self.aborted = True
            self._shut_all()

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            self._shut_all()

    def _shut_all(self) -> None:
        for sock in self._sockets:
            _shut(sock)

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)
            if self.expired or self.aborted:
                _shut(sock)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        # The socket's own shutdown: SSLSocket.shutdown would also drop its TLS state
        # under the thread that reads it.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _TrackingAdapter(HTTPAdapter):
    """An adapter whose connections report their sockets to `track` once connected."""

    def __init__(self, track: Callable[[socket.socket], None]) -> None:
        self._pools = _tracking_pools(track)  # before super().__init__: it makes the manager
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = self._pools

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        # A proxy from the environment (HTTPS_PROXY): its connections are tracked too. A
        # SOCKS proxy's manager has pools of its own (and is not a ProxyManager).
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if isinstance(manager, ProxyManager):
            manager.pool_classes_by_scheme = self._pools
        return manager


def _tracking_pools(track: Callable[[socket.socket], None]) -> dict[str, type]:
    # Named as urllib3's own: their names appear in its error messages.
    class HTTPConnection(BaseHTTPConnection):
        def connect(self) -> None:
            super().connect()
            track(self.sock)

    class HTTPSConnection(BaseHTTPSConnection):
        def connect(self) -> None:
            super().connect()
            track(self.sock)  # the TLS socket, once its handshake is done

    return {
        "http": type(
            "HTTPConnectionPool", (HTTPConnectionPool,), {"ConnectionCls": HTTPConnection}
        ),
        "https": type(
            "HTTPSConnectionPool", (HTTPSConnectionPool,), {"ConnectionCls": HTTPSConnection}
        ),
    }
