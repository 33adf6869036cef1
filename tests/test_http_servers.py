"""Helpers (no tests here) for the HTTP client tests: scripted raw-socket servers.

`RawServer(routes)` listens on 127.0.0.1 (free port) in a thread and answers
each request by running the actions its route returns, byte for byte, so a
test can play any server: a correct one, a lying one, one that stalls. With
`tls=ssl_context` it speaks TLS and records the SNI name each client sent.

`DRIVER` is a script prelude that runs the device client (MicroPython or
CPython) and prints one line per fetch: `OK status nbytes sha256 range_start
range_total location` (range_start: the start asked, which the client checked)
or `ERR ErrorClass message`.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import textwrap
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

# Actions a route may return besides bytes to send.
CLOSE = "close"  # close the connection now
HANG = "hang"  # keep the connection open and send nothing more (until the server stops)


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class Endless:
    """Send `chunk` again and again until the client goes away."""

    chunk: bytes


@dataclass
class Request:
    connection: int
    method: str
    path: str  # with the query
    headers: dict[str, str] = field(default_factory=dict)


Action = bytes | str | Sleep | Endless
Route = Callable[[Request], Iterable[Action]] | list[Action]


def response(
    status: int = 200,
    body: bytes = b"",
    headers: Iterable[tuple[str, str]] = (),
    *,
    length: bool = True,
    reason: str = "X",
) -> bytes:
    """A whole HTTP/1.1 response; Content-Length added unless length=False."""
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines += [f"{name}: {value}" for name, value in headers]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def chunked(body: bytes, size: int = 100) -> bytes:
    """`body` in chunked transfer coding with `size`-byte chunks and the final 0 chunk."""
    out = b""
    for i in range(0, len(body), size):
        part = body[i : i + size]
        out += b"%x\r\n" % len(part) + part + b"\r\n"
    return out + b"0\r\n\r\n"


class RawServer:
    """A threaded loopback server; `routes` maps a path (query ignored) to actions."""

    def __init__(self, routes: dict[str, Route], tls: ssl.SSLContext | None = None) -> None:
        self.routes = routes
        self.requests: list[Request] = []
        self.sni: list[str | None] = []
        self.connections = 0
        self._tls = tls
        if tls is not None:
            tls.sni_callback = self._record_sni
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def url(self, path: str = "", host: str = "127.0.0.1") -> str:
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://{host}:{self.port}{path}"

    def _record_sni(self, sslobj: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        with self._lock:
            self.sni.append(name)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                number = self.connections
                self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn, number), daemon=True).start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        try:
            conn.settimeout(10)
            if self._tls is not None:
                conn = self._tls.wrap_socket(conn, server_side=True)
            pending = b""
            while not self._stop.is_set():
                while b"\r\n\r\n" not in pending:
                    data = conn.recv(4096)
                    if not data:
                        return
                    pending += data
                head, pending = pending.split(b"\r\n\r\n", 1)
                req = self._parse(head, number)
                with self._lock:
                    self.requests.append(req)
                route = self.routes.get(req.path.split("?", 1)[0])
                actions: Iterable[Action] = (
                    [response(404, b"no route")]
                    if route is None
                    else route
                    if isinstance(route, list)
                    else route(req)
                )
                if not self._play(conn, actions):
                    return
        except (OSError, ssl.SSLError):
            return
        finally:
            conn.close()

    def _play(self, conn: socket.socket, actions: Iterable[Action]) -> bool:
        """Run the actions; False when the connection must end."""
        for action in actions:
            if isinstance(action, bytes):
                conn.sendall(action)
            elif isinstance(action, Sleep):
                if self._stop.wait(action.seconds):
                    return False
            elif isinstance(action, Endless):
                while not self._stop.is_set():
                    conn.sendall(action.chunk)
                return False
            elif action == HANG:
                self._stop.wait(60)
                return False
            elif action == CLOSE:
                return False
        return True

    @staticmethod
    def _parse(head: bytes, number: int) -> Request:
        lines = head.decode("latin-1").split("\r\n")
        method, path, _version = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return Request(number, method, path, headers)

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self._listener.close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._thread.join(5)

    def __enter__(self) -> RawServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


DRIVER = """
# The buffer first, like the engine: allocated before the code loads, it does not
# depend on finding a contiguous block in a heap the loaded code fragmented. The
# client parses headers in it and bodies are read into it too (one buffer); 2 KB,
# the engine's HTTP part: a github-length signed URL must fit in a header line.
BUF = bytearray(2048)
data = memoryview(BUF)
from lcm_device.http import Client, HTTPError
# (Few globals: a bigger globals dict needs a contiguous block a 24k heap may lack;
# test bodies import other names inside main.)


def fetch(c, url, **kw):
    import binascii, hashlib

    try:
        r = c.get(url, **kw)
        h = hashlib.sha256()
        n = 0
        while True:
            k = r.readinto(data)
            if not k:
                break
            h.update(data[:k])
            n += k
        # A range answered starts where it was asked (the client checks Content-Range).
        start = kw.get("start") if r.range_total is not None else None
        print("OK", r.status, n, binascii.hexlify(h.digest()).decode(), start,
              r.range_total, r.location)
    except HTTPError as e:
        print("ERR", type(e).__name__, e)
"""


def driver_script(body: str) -> str:
    """DRIVER plus `body` run inside a function (locals do not grow the globals dict)."""
    return (
        DRIVER + "\n\ndef main():\n" + textwrap.indent(body.strip("\n"), "    ") + "\n\n\nmain()\n"
    )


def parse_lines(stdout: str) -> list[list[str]]:
    """Driver output as lists of fields (OK lines split fully, ERR lines in 3 parts)."""
    out = []
    for line in stdout.splitlines():
        if line.startswith("ERR "):
            out.append(line.split(" ", 2))
        elif line.strip():
            out.append(line.split(" "))
    return out


def wait_for(predicate: Callable[[], bool], seconds: float = 5) -> None:
    """Poll until predicate() (server threads record asynchronously); not a timing assertion."""
    deadline = time.monotonic() + seconds
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.01)
