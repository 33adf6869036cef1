"""An upstream that lies: a proxy in front of a genuine lcm host that answers some
requests its own way.

with lying_proxy(host.url, lie) as url:   # url: http://127.0.0.1:PORT
    ...

`lie(handler, path, forward)` is called for every GET: it returns True when it answered
itself (through `handler`, a BaseHTTPRequestHandler), or False to pass the request on.
`forward(path)` fetches the path from the genuine host (redirects not followed), as
(status, headers, body), for a lie that alters a genuine answer. Other requests
(POST, PATCH, ...) are forwarded unchanged.
"""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

from tests.threadserver import serving

KEPT_HEADERS = ("content-type", "location", "link", "etag", "content-range")

Answer = tuple[int, dict[str, str], bytes]
Lie = Callable[[BaseHTTPRequestHandler, str, Callable[[str], Answer]], bool]


def answer(handler: BaseHTTPRequestHandler, status: int, headers: dict[str, str], body: bytes):
    handler.send_response(status)
    for name, value in headers.items():
        handler.send_header(name, value)
    if not any(name.lower() == "content-length" for name in headers):
        handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)
    if any(v.lower() == "close" for k, v in headers.items() if k.lower() == "connection"):
        handler.close_connection = True


def body_of(forward: Callable[[str], Answer], path: str) -> bytes:
    """The genuine body at `path`, its redirects (to the host's signed URLs) followed."""
    for _ in range(5):
        _, headers, body = forward(path)
        location = {k.lower(): v for k, v in headers.items()}.get("location")
        if location is None:
            return body
        parts = urlsplit(location)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
    raise AssertionError(f"{path}: too many redirects")


def trickle(
    handler: BaseHTTPRequestHandler, body: bytes, every_s: float, length: bool = True
) -> None:
    """A 200 whose body comes a byte every `every_s` seconds (until the client hangs up);
    without `length`, no Content-Length: the body ends when the connection does."""
    handler.send_response(200)
    if length:
        handler.send_header("Content-Length", str(len(body)))
    else:
        handler.close_connection = True
    handler.end_headers()
    try:
        for byte in body:
            handler.wfile.write(bytes([byte]))
            handler.wfile.flush()
            time.sleep(every_s)
    except OSError:
        pass


@contextmanager
def lying_proxy(upstream: str, lie: Lie) -> Iterator[str]:
    target = urlsplit(upstream)

    def fetch(method: str, path: str, headers: dict[str, str], body: bytes | None) -> Answer:
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            kept = {k: v for k, v in resp.getheaders() if k.lower() in KEPT_HEADERS}
            data = resp.read()
            # The host's own URLs (links, redirects, URLs in JSON) name the proxy instead.
            host = f"{target.hostname}:{target.port}"
            kept = {k: v.replace(host, proxy_host[0]) for k, v in kept.items()}
            return resp.status, kept, data.replace(host.encode(), proxy_host[0].encode())
        finally:
            conn.close()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def passed_on(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
            status, kept, data = fetch(self.command, self.path, headers, body)
            answer(self, status, kept, data)

        def do_GET(self) -> None:
            def forward(path: str) -> Answer:
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                return fetch("GET", path, headers, None)

            if not lie(self, self.path, forward):
                self.passed_on()

        do_POST = do_PATCH = do_DELETE = do_PUT = passed_on

    proxy_host = [""]
    with serving(Handler) as url:
        proxy_host[0] = urlsplit(url).netloc
        yield url
