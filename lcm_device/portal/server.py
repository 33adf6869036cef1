"""The portal's HTTP server: one connection at a time, small buffers, timeouts.

`HttpServer.handle(route)` accepts one connection, reads one request with
`request.read_request` (its limits live there), calls `route(req, out)` and
closes. The whole request must arrive within _REQUEST_MS of the connection
(408), every socket read and write waits at most _WAIT_MS, so a client that
stops sending or reading costs at most that long: a client that never sent a
byte (a browser's preconnect) is closed without an answer, one that stopped
in the middle of its request gets 408. A refused request gets its status and
a short text naming the problem. Responses close the connection, so bodies
need no length and pages stream straight out.
"""

import errno
import select
import socket

from lcm_device.compat import const, ticks_diff, ticks_ms
from lcm_device.log import log
from lcm_device.portal.request import RequestError, read_request

_WAIT_MS = const(5000)
_REQUEST_MS = const(10000)
# Before closing: reads of what the client sent beyond its request, each waiting this long.
_DRAIN_READS = const(8)
_DRAIN_WAIT_MS = const(100)
_REQUEST_BUF = const(1024)
_OUT_BUF = const(512)
_REASONS = {
    200: "OK",
    204: "No Content",
    302: "Found",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    411: "Length Required",
    413: "Content Too Large",
    414: "URI Too Long",
    415: "Unsupported Media Type",
    431: "Request Header Fields Too Large",
    501: "Not Implemented",
    505: "HTTP Version Not Supported",
}
# No scripts, frames or outside resources even if escaping ever failed.
_SECURITY = (
    "Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'\r\n"
    "X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n"
    "Cache-Control: no-store\r\nConnection: close\r\n"
)
_ALLOW = "Allow: GET, HEAD, POST\r\n"


class Conn:
    """A client socket read and written without blocking, waiting in poll.

    MicroPython's blocking `readinto` waits until the whole buffer is full,
    which a request never fills: so the socket is non-blocking, a read returns
    what has arrived, and an empty read waits in poll up to _WAIT_MS, and for
    the request's bytes no later than its deadline. `beside` (the DNS server)
    is served while it waits: a phone asks DNS while a slow or preconnected
    socket holds this one-at-a-time server.
    """

    def __init__(self, sock, beside=None):
        self.sock = sock
        sock.setblocking(False)
        self.beside = beside
        self.poller = select.poll()
        self.poller.register(sock, select.POLLIN)
        if beside is not None:
            self.poller.register(beside.sock, select.POLLIN)
        self._recv = getattr(sock, "recv_into", None) or sock.readinto
        self.start = ticks_ms()
        self.received = 0

    def _ready(self, ms):
        """Whether the client is ready within `ms`, serving `beside` meanwhile."""
        start = ticks_ms()
        while True:
            left = ms - ticks_diff(ticks_ms(), start)
            ready = self.poller.poll(max(left, 0))
            for entry in ready:
                if self.beside is None or entry[0] is not self.beside.sock:
                    return True
            if not ready or left <= 0:
                return False
            self.beside.handle()

    def _wait(self, event, request=False):
        wait = _WAIT_MS
        if request:  # the request's bytes: no later than its deadline
            wait = min(wait, max(_REQUEST_MS - ticks_diff(ticks_ms(), self.start), 0))
        self.poller.modify(self.sock, event)
        if self._ready(wait):
            return
        if request and self.received:
            # Stopped, or too slow, in the middle of its request: say so before closing.
            raise RequestError(408, "request took too long")
        raise OSError(errno.ETIMEDOUT, "client timed out")

    def readinto(self, mv):
        """The request's next bytes (0: the client closed); 408 past the request's deadline."""
        while True:
            if ticks_diff(ticks_ms(), self.start) >= _REQUEST_MS:
                raise RequestError(408, "request took too long")
            try:
                n = self._recv(mv)
            except OSError as e:
                if e.args[0] != errno.EAGAIN:
                    raise
                n = None
            if n is not None:
                self.received += n
                return n
            self._wait(select.POLLIN, True)

    def sendall(self, data):
        mv = memoryview(data)
        i = 0
        while i < len(mv):
            try:
                n = self.sock.send(mv[i:])
            except OSError as e:
                if e.args[0] != errno.EAGAIN:
                    raise
                n = 0
            if n:
                i += n
            else:
                self._wait(select.POLLOUT)

    def drain(self, buf, wait_ms):
        """Read and drop what the client sent that was not read (a refused body, what
        followed the request), waiting `wait_ms` for more: closing with unread input makes
        TCP reset the connection, which can destroy the answer before the client has read
        it. A served request waits for nothing (0: only what has arrived)."""
        mv = memoryview(buf)
        self.poller.modify(self.sock, select.POLLIN)
        for _ in range(_DRAIN_READS):
            if not self._ready(wait_ms):
                return
            try:
                if not self._recv(mv):
                    return  # the client closed its side
            except OSError:
                return

    def close(self):
        self.sock.close()


class Out:
    """Buffered writes to the connection; `body=False` (HEAD) drops everything after headers."""

    def __init__(self, sock, buf):
        self.sock = sock
        self.buf = buf
        self.n = 0
        self.body = True
        self.in_body = False

    def write(self, data):
        if self.in_body and not self.body:
            return
        if isinstance(data, str):
            data = data.encode()
        k = len(data)
        if self.n + k > len(self.buf):
            self.flush()
        if k > len(self.buf):
            self.sock.sendall(data)
            return
        self.buf[self.n : self.n + k] = data
        self.n += k

    def flush(self):
        if self.n:
            self.sock.sendall(self.buf[: self.n])
            self.n = 0

    def start(self, status, ctype="text/html; charset=utf-8", extra=""):
        self.write("HTTP/1.1 " + str(status) + " " + _REASONS.get(status, "Error") + "\r\n")
        self.write("Content-Type: " + ctype + "\r\n" + _SECURITY + extra + "\r\n")
        self.in_body = True

    def redirect(self, location):
        self.start(302, "text/plain", "Location: " + location + "\r\nContent-Length: 0\r\n")

    def text(self, status, text):
        # A 405 names the methods served (RFC 9110 15.5.6).
        self.start(status, "text/plain; charset=utf-8", _ALLOW if status == 405 else "")
        self.write(text + "\n")


class HttpServer:
    def __init__(self, bind, port, beside=None):
        self.beside = beside  # served while a connection waits (Conn)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(socket.getaddrinfo(bind, port)[0][-1])
        self.sock.listen(2)
        self.sock.setblocking(False)
        self.inbuf = bytearray(_REQUEST_BUF)
        self.outbuf = memoryview(bytearray(_OUT_BUF))

    def handle(self, route):
        """Serve one waiting connection, if any; what the client did wrong never raises."""
        try:
            sock, _ = self.sock.accept()
        except OSError:
            return
        conn = Conn(sock, self.beside)
        out = Out(conn, self.outbuf)
        refused = True  # until a request was read whole: its rest may still be coming
        try:
            try:
                req = read_request(conn, self.inbuf)
            except RequestError as e:
                out.text(e.status, e.message)
            else:
                refused = False
                out.body = req.method != "HEAD"
                route(req, out)
            out.flush()
        except OSError:
            pass  # the client went away or stopped reading: nothing to answer
        except Exception as e:  # a bug or MemoryError must not end setup mode
            log("portal: request failed: " + repr(e))
        finally:
            conn.drain(self.inbuf, _DRAIN_WAIT_MS if refused else 0)
            conn.close()

    def close(self):
        self.sock.close()
