"""Test instrumentation: a log of every request and faults to inject.

Reachable only in-process (through the `HostServer` object), never over HTTP.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

FAULT_KINDS = (
    "status502",  # the next API requests (REST or upload) answer 502
    "secondary_rate_limit",  # the next API requests answer 403 with Retry-After: 1
    "drop_upload",  # the next uploads: part of the body is read, then the connection closes
    "drop_download",  # the next asset downloads: part of the body is sent, then it closes
    "stall_download",  # the next asset downloads: part is sent, then nothing (not closed)
    "chunked_download",  # the next asset downloads (HTTP/1.1): chunked, no Content-Length
    "close_after_response",  # the next answers: connection closed after it, unannounced
)


@dataclass
class RequestRecord:
    method: str
    path: str  # without the query
    query: str
    status: int  # 0 when the connection was dropped without an answer
    bytes_sent: int  # status line, headers and body as written to the socket
    connection_id: int  # one per TCP connection (= one TLS handshake over HTTPS)


class Faults:
    def __init__(self) -> None:
        self._pending: dict[str, int] = {}
        self._lock = threading.Lock()

    def inject(self, kind: str, count: int = 1) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; known: {', '.join(FAULT_KINDS)}")
        if count < 0:
            raise ValueError("fault count must be >= 0")
        with self._lock:
            self._pending[kind] = self._pending.get(kind, 0) + count

    def take(self, kind: str) -> bool:
        """True (and one fewer pending) when a fault of `kind` is due now."""
        with self._lock:
            left = self._pending.get(kind, 0)
            if left <= 0:
                return False
            self._pending[kind] = left - 1
            return True

    def pending(self, kind: str) -> int:
        with self._lock:
            return self._pending.get(kind, 0)
