"""Reading one HTTP request into a fixed buffer, with limits on every part.

The portal faces whatever joins the setup network, so the parser is strict
and bounded: the request line and each header line must fit the buffer
(`len(buf)`, 1 KB on the device), at most _MAX_HEADERS header lines and
_MAX_HEADER_BYTES bytes of them, a body only with Content-Length and at most
_MAX_BODY bytes. Only Host, Content-Length and Content-Type are kept. Every
refusal is a RequestError with the HTTP status to answer and a message naming
what was wrong. How long a request may take is the reader's rule (the
server's `Conn`: 408 past its deadline).

`read_request(reader, buf)` needs only `reader.readinto(memoryview)`, so the
same parser runs on a socket on the device and on BytesIO in the fuzz tests.
"""

from lcm_device.compat import const

_MAX_HEADERS = const(40)
_MAX_HEADER_BYTES = const(4096)
_MAX_BODY = const(1024)
_METHODS = ("GET", "HEAD", "POST")
_TOKEN = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


class RequestError(Exception):
    """A request refused; `status` is the HTTP status to answer with."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


class Request:
    def __init__(self, method, path, query, host, ctype, body):
        self.method = method
        self.path = path
        self.query = query
        self.host = host
        self.ctype = ctype
        self.body = body  # a memoryview into the buffer, or None


class _Lines:
    """CRLF-terminated lines from `reader` through `buf`; a line is (start, stop) in buf."""

    def __init__(self, reader, buf):
        self.reader = reader
        self.buf = buf
        self.mv = memoryview(buf)
        self.pos = 0
        self.end = 0

    def fill(self):
        if self.pos:
            # Keep the unread tail at the front (a copy: the areas may overlap).
            rest = bytes(self.mv[self.pos : self.end])
            self.end = len(rest)
            self.mv[: self.end] = rest
            self.pos = 0
        if self.end == len(self.buf):
            return False
        n = self.reader.readinto(self.mv[self.end :])
        if not n:
            raise RequestError(400, "connection closed before the request was complete")
        self.end += n
        return True

    def line(self, status, what):
        while True:
            i = self.buf.find(b"\n", self.pos, self.end)
            if i >= 0:
                start = self.pos
                self.pos = i + 1
                if i > start and self.buf[i - 1] == 13:
                    i -= 1
                return start, i
            if not self.fill():
                raise RequestError(status, what + " longer than " + str(len(self.buf)) + " bytes")

    def read_body(self, length):
        """The next `length` bytes, moved to the front of the buffer."""
        if length > len(self.buf):
            raise RequestError(413, "body of " + str(length) + " bytes is too large")
        while self.end - self.pos < length:
            self.fill()
        if self.pos:
            self.mv[:length] = bytes(self.mv[self.pos : self.pos + length])
        return self.mv[:length]


def _ascii(buf, start, stop, what):
    for i in range(start, stop):
        c = buf[i]
        if c < 0x21 or c > 0x7E:
            raise RequestError(400, what + " has a control or non-ASCII byte")
    return bytes(buf[start:stop]).decode()


def _request_line(buf, start, stop):
    sp1 = buf.find(b" ", start, stop)
    sp2 = buf.find(b" ", sp1 + 1, stop) if sp1 >= 0 else -1
    if sp1 <= start or sp2 < 0 or buf.find(b" ", sp2 + 1, stop) >= 0:
        raise RequestError(400, "malformed request line (want METHOD TARGET VERSION)")
    method = _ascii(buf, start, sp1, "method")
    target = _ascii(buf, sp1 + 1, sp2, "request target")
    version = _ascii(buf, sp2 + 1, stop, "HTTP version")
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        raise RequestError(505, "unsupported HTTP version " + repr(version[:16]))
    if method not in _METHODS:
        raise RequestError(405, "method " + repr(method[:16]) + " not allowed")
    authority = None
    if target[:7].lower() == "http://":  # absolute form: its authority is the host (RFC 9112 3.2.2)
        end = 7
        while end < len(target) and target[end] not in "/?":
            end += 1
        authority = target[7:end].lower()
        target = target[end:]
        if not target.startswith("/"):
            target = "/" + target  # "http://host?x" asks for "/?x"
    if not target.startswith("/"):
        raise RequestError(400, "request target must start with '/'")
    q = target.find("?")
    if q >= 0:
        return method, target[:q], target[q + 1 :], authority
    return method, target, "", authority


def _header(buf, start, stop):
    colon = buf.find(b":", start, stop)
    if colon <= start:
        raise RequestError(400, "malformed header line (no name)")
    for i in range(start, colon):
        if buf[i] not in _TOKEN:
            raise RequestError(400, "malformed header name")
    name = bytes(buf[start:colon]).lower()
    if name not in (b"host", b"content-length", b"content-type", b"transfer-encoding"):
        return None, None
    value = bytes(buf[colon + 1 : stop]).strip()
    for c in value:
        if c < 0x20 or c >= 0x7F:
            raise RequestError(400, "control or non-ASCII byte in header " + name.decode())
    return name, value


def _content_length(value, old):
    if not value or not all(0x30 <= c <= 0x39 for c in value):
        raise RequestError(400, "invalid Content-Length")
    if len(value) > 7:  # before int(): no number of a client's size is made
        raise RequestError(413, "body of " + str(len(value)) + "-digit length is over the limit")
    n = int(value)
    if old is not None and old != n:
        raise RequestError(400, "conflicting Content-Length headers")
    return n


def read_request(reader, buf):
    """Read one request; the body (POST only) is a memoryview valid until the next call."""
    lines = _Lines(reader, buf)
    start, stop = lines.line(414, "request line")
    while start == stop:  # tolerate blank lines before the request line (RFC 9112 2.2)
        start, stop = lines.line(414, "request line")
    method, path, query, authority = _request_line(buf, start, stop)
    host = None
    ctype = ""
    length = None
    count = 0
    total = 0
    while True:
        start, stop = lines.line(431, "header line")
        if start == stop:
            break
        count += 1
        total += stop - start
        if count > _MAX_HEADERS or total > _MAX_HEADER_BYTES:
            raise RequestError(431, "too many header bytes or lines")
        if buf[start] in (0x20, 0x09):
            raise RequestError(400, "folded header lines are not allowed")
        name, value = _header(buf, start, stop)
        if name == b"host":
            if host is not None:  # RFC 9112 3.2: a request with two is answered 400
                raise RequestError(400, "more than one Host header")
            host = value.decode().lower()
        elif name == b"content-length":
            length = _content_length(value, length)
        elif name == b"content-type":
            ctype = value.decode().lower()
        elif name == b"transfer-encoding":
            raise RequestError(501, "Transfer-Encoding is not supported; send Content-Length")
    body = None
    if method == "POST":
        if length is None:
            raise RequestError(411, "a POST needs Content-Length")
        if length > _MAX_BODY:
            raise RequestError(413, "body of " + str(length) + " bytes is over the limit")
        body = lines.read_body(length)
    elif length:
        raise RequestError(400, method + " with a body")
    return Request(method, path, query, authority or host or "", ctype, body)
