"""GitHub's primary rate limit for the REST API: per client IP for anonymous requests.

Each client IP gets `limit` requests per hour window (60 by default, as
GitHub); the answer carries `X-RateLimit-*` headers, and when the window is
used up the API answers 403 with GitHub's message. Browser URLs do not count.
"""

from __future__ import annotations

import ipaddress
import threading
import time

from publisher.host.errors import ApiError

WINDOW = 3600
AUTHENTICATED_LIMIT = 5000
# Past this many addresses, those whose window has ended are forgotten: one entry per
# address ever seen grew without end. The next prune waits until the table has doubled,
# so a table of live windows is not copied at every request.
PRUNE_AT = 4096
RATE_DOCS = (
    "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-primary-rate-limits"
)


class RateLimiter:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._used: dict[str, tuple[int, int]] = {}  # key -> (window reset time, used)
        self._prune_at = PRUNE_AT
        self._lock = threading.Lock()

    def take(self, key: str, limit: int, count: bool = True) -> dict[str, str]:
        """Count one request for `key`; the headers to send, or 403 when exhausted."""
        now = int(time.time())
        with self._lock:
            if len(self._used) >= max(self._prune_at, PRUNE_AT):
                self._used = {k: v for k, v in self._used.items() if v[0] > now}
                self._prune_at = 2 * len(self._used)
            reset, used = self._used.get(key, (now + WINDOW, 0))
            if reset <= now:
                reset, used = now + WINDOW, 0
            allowed = used < limit
            if allowed and count:
                used += 1
            self._used[key] = (reset, used)
        headers = _headers(limit, reset, used)
        if not allowed and count:
            ip = key.removeprefix("ip:")
            raise ApiError(
                403,
                f"API rate limit exceeded for {ip}. (But here's the good news: Authenticated "
                "requests get a higher rate limit. Check out the documentation for more details.)",
                headers=headers,
                documentation_url=RATE_DOCS,
            )
        return headers

    def refund(self, key: str) -> dict[str, str]:
        """Take back one counted request (a 304 is free on GitHub); the headers to send."""
        now = int(time.time())
        with self._lock:
            reset, used = self._used.get(key, (now + WINDOW, 1))
            used = max(0, used - 1)
            self._used[key] = (reset, used)
        return _headers(AUTHENTICATED_LIMIT if key == "token" else self.limit, reset, used)

    def anonymous(self, client_ip: str, count: bool = True) -> dict[str, str]:
        return self.take("ip:" + client_key(client_ip), self.limit, count)

    def authenticated(self, count: bool = True) -> dict[str, str]:
        return self.take("token", AUTHENTICATED_LIMIT, count)


def client_key(ip: str) -> str:
    """The address an anonymous window counts: an IPv6 client's /64 (one host has a whole
    /64 to pick addresses from, a fresh window each), an IPv4 address as it is."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if address.version == 6 and address.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return ip


def _headers(limit: int, reset: int, used: int) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(max(0, limit - used)),
        "X-RateLimit-Reset": str(reset),
        "X-RateLimit-Used": str(used),
        "X-RateLimit-Resource": "core",
    }
