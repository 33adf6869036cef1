"""What one client may hold of the host: time per request phase, connections per address.

`http.server` times out each socket read on its own, so a client that sends a
byte a minute holds a thread for ever (slowloris), and nothing stops one
address from opening thousands of connections, a thread each. The handler
enforces these instead (`publisher/host/handler.py`):

- `idle_s`: a kept-alive connection waits this long for its next request (and
  a request body read stalls at most this long between bytes);
- `header_s`: once a request's first byte arrived, its request line and
  headers must all arrive within this; a TLS handshake must end within it;
- `per_ip`: connections open at once from one client address; the next one
  is answered `503` with `Retry-After` and closed. Devices make one
  connection at a time, so this leaves room for a whole site behind one NAT
  (their checks are spread out by the jittered schedule).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ConnectionLimits:
    idle_s: float = 120.0
    header_s: float = 30.0
    per_ip: int = 64
    retry_after_s: int = 10  # what a refused client is told to wait


DEFAULT_LIMITS = ConnectionLimits()
