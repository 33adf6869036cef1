"""A small streaming HTTP/1.1 client for the device (MicroPython and CPython).

One preallocated buffer (the caller's) holds the request while it is sent and
the status line and headers while they are parsed in place; only a fixed set
of headers is kept as strings. Bodies go straight from the socket into the
caller's memoryview with `readinto`.

What a server can make us do is bounded: every header line must fit the
buffer, the header block and header count are capped, bodies are capped per
request (`max_bytes`), at most 5 redirects, every socket operation has a
timeout, headers must arrive within the timeout and bodies at `min_rate`.
Every refusal is an `HTTPError` subclass whose message names what was wrong.
Limits and caveats (ESP8266 TLS) are in docs/device.md, "HTTP client".
The code is written for a small .mpy: few functions, short messages.
"""

import select
import socket

try:
    from micropython import const
except ImportError:

    def const(x):
        return x


try:  # MicroPython
    from time import ticks_diff, ticks_ms
except ImportError:  # CPython: private shims (compat.py did not exist when this landed)
    from time import monotonic

    def ticks_ms():
        return int(monotonic() * 1000)

    def ticks_diff(a, b):
        return a - b


try:
    _Timeout = TimeoutError
except NameError:  # MicroPython: timeouts are OSError(ETIMEDOUT or EAGAIN)
    _Timeout = ()

# MicroPython (whose sockets lack recv_into) reads non-blocking and polls.
_POLL = not hasattr(socket.socket, "recv_into")

_MAX_REDIRECTS = const(5)
_MAX_HEADERS = const(64)
_MAX_HEADER_BYTES = const(8192)
# A redirect's or an error's body is read (to keep the connection) up to this.
_DRAIN = const(2048)

# Body framing.
_LENGTH = const(0)
_CHUNKED = const(1)
_TO_CLOSE = const(2)
_NONE = const(3)

# The only headers kept; Response._kept is indexed like this tuple.
_KEPT = (
    b"location",
    b"content-length",
    b"content-range",
    b"transfer-encoding",
    b"connection",
    b"etag",
    b"content-type",
    b"retry-after",
)


class HTTPError(Exception):
    """Base of every client refusal; the message names what was wrong."""


class ProtocolError(HTTPError):
    """The server broke HTTP: status line, headers, chunking, Content-Range, 200 for a range."""


class LimitError(HTTPError):
    """A size or count limit was exceeded (line, header block, headers, body, redirects)."""


class StalledError(HTTPError):
    """A connect or read timeout, or a transfer below the minimum rate."""


class NetworkError(HTTPError):
    """Name lookup, connect or TLS failure, a reset, or the connection closed early."""


class StatusError(HTTPError):
    """An HTTP status the caller cannot use (4xx, 5xx, 1xx, other 3xx)."""

    def __init__(self, message, status, retry_after=None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after  # seconds from Retry-After (429/503), or None


def _timed_out(exc):
    return isinstance(exc, _Timeout) or (exc.args and exc.args[0] in (110, 11))


def _clean(text, what, low=" "):
    # URLs and header values go into the request: printable ASCII above `low`.
    for c in text:
        if not low < c < "\x7f":
            raise HTTPError("%s has an invalid character: %r" % (what, text[:100]))
    return text


def _number(text):
    # A decimal header number; None when it is not one.
    text = text.strip()
    return int(text) if text.isdigit() and len(text) < 13 else None


def split_url(url):
    """(scheme, host, port, path) of an http(s) URL; HTTPError naming what is wrong."""
    i = _clean(url, "URL").find("://")
    scheme = url[:i].lower()
    rest = url[i + 3 :].split("#", 1)[0]
    j = len(rest)
    for sep in "/?":
        k = rest.find(sep)
        if 0 <= k < j:
            j = k
    host, path = rest[:j].lower(), rest[j:]
    port = 80 if scheme == "http" else 443
    if ":" in host:
        host, port = host.rsplit(":", 1)
        port = int(port) if port.isdigit() and 0 < int(port) < 65536 else 0
    if i < 1 or scheme not in ("http", "https") or not port or not host or "@" in host:
        raise HTTPError("unsupported URL %r" % url[:100])
    return scheme, host, port, path if path[:1] == "/" else "/" + path


def join_url(base, location):
    """Resolve a Location (absolute, scheme-relative, absolute-path or relative)."""
    i = _clean(location, "Location").find("://")
    if i > 0 and location[:i].isalpha():
        return location
    scheme, host, port, path = split_url(base)
    if location[:2] == "//":
        return scheme + ":" + location
    if port != (80 if scheme == "http" else 443):
        host += ":%d" % port
    base = scheme + "://" + host
    if location[:1] == "/":
        return base + location
    path = path.split("?", 1)[0]
    if location[:1] == "?":
        return base + path + location
    return base + path[: path.rfind("/") + 1] + location


class Response:
    """Status and kept headers of one response; the body is streamed with readinto."""

    def __init__(self, client, url, status, kept, max_bytes):
        self._client = client
        self.url = url
        self.status = status
        self._kept = kept
        self.location = kept[0]
        self.length = None
        self.range_start = None
        self.range_total = None
        self._max = max_bytes
        self._got = 0
        # LENGTH: body bytes to come; CHUNKED: bytes left in this chunk, -1 before the first.
        self._left = -1
        self._mode = _NONE
        self._done = False
        self._keep = True
        self._t0 = ticks_ms()

    def header(self, name):
        """A kept header's value (name case-insensitive), or None."""
        key = name.lower().encode()
        return self._kept[_KEPT.index(key)] if key in _KEPT else None

    def readinto(self, mv):
        """Body bytes into `mv` (not the client's own buffer); 0 at the end."""
        if not isinstance(mv, memoryview):
            mv = memoryview(mv)  # slicing a bytearray would copy
        return self._read(mv, len(mv))

    def read_all(self, limit):
        """The whole (small) body as bytes; LimitError when it is longer than `limit`."""
        out = memoryview(bytearray(limit + 1))
        n = 0
        while n <= limit:
            got = self._read(out[n:], limit + 1 - n)
            if not got:
                return bytes(out[:n])
            n += got
        self._finish(False)
        raise LimitError("body longer than %d bytes" % limit)

    def close(self):
        """Finish: drain a short rest so the connection can be reused, else drop it."""
        budget = _DRAIN
        try:
            while budget > 0 and self._mode != _TO_CLOSE and not self._left > budget:
                got = self._read(None, budget)
                if not got:
                    break
                budget -= got
        except HTTPError:
            pass
        self._finish(False)

    def _finish(self, keep):
        if not self._done:
            self._done = True
            self._client._release(self, keep and self._keep)

    def _read(self, mv, n):
        # mv None discards up to n body bytes (draining before connection reuse).
        if self._done or not n:
            return 0
        c = self._client
        mode = self._mode
        try:
            if mode == _CHUNKED and self._left < 1:
                if not self._left and c._line("chunk end") != 0:
                    raise ProtocolError("chunk data longer than its size")
                size = c._chunk_size()
                if not size:
                    for _ in range(_MAX_HEADERS):  # trailers, up to the empty line
                        if not c._line("trailer"):
                            break
                    else:
                        raise LimitError("more than %d trailer lines" % _MAX_HEADERS)
                    self._finish(True)
                    return 0
                if self._got + size > self._max:
                    raise LimitError("chunk of %d bytes passes max_bytes %d" % (size, self._max))
                self._left = size
            if mode == _TO_CLOSE:
                # At the cap read one more byte to tell "ended exactly" from "too long".
                n = min(n, max(self._max - self._got, 1))
            elif n > self._left:
                n = self._left
            got = c._recv(mv, n) if n > 0 else 0
            if not got:
                if mode in (_TO_CLOSE, _NONE) or (mode == _LENGTH and not self._left):
                    self._finish(mode != _TO_CLOSE)
                    return 0
                raise NetworkError(
                    "connection closed after %d body bytes (Content-Length %s) from %s"
                    % (self._got, self.length, self.url[:100])
                )
            self._got += got
            self._left -= got
            if self._got > self._max:
                raise LimitError("body passes max_bytes %d from %s" % (self._max, self.url[:100]))
            ms = ticks_diff(ticks_ms(), self._t0)
            if ms > c.timeout_ms and self._got * 1000 < c.min_rate * ms:
                raise StalledError(
                    "transfer below %d bytes/s (%d bytes in %d ms)" % (c.min_rate, self._got, ms)
                )
            return got
        except HTTPError:
            self._finish(False)
            raise


class Client:
    """HTTP(S) client over one preallocated buffer; keeps one connection alive."""

    def __init__(self, buf, *, ca_ders=None, timeout_ms=10000, min_rate=256, user_agent="lcm"):
        self._buf = memoryview(buf)
        self._cas = ca_ders
        self.timeout_ms = timeout_ms
        self.min_rate = min_rate
        self.user_agent = user_agent
        self.requests = 0
        self.connections = 0  # new TCP (+TLS) connections: handshakes
        self.bytes_in = 0  # every byte read from sockets, headers included
        self.verifies_tls = None  # set at the first TLS connection
        self._ctx = None
        self._sock = None
        self._key = None
        self._resp = None
        self._poll = None
        # Read but unconsumed bytes: self._buf[_pos:_end].
        self._pos = 0
        self._end = 0
        self._at = 0  # start of the line _line() returned

    def close(self):
        """Drop the open response and the kept-alive connection."""
        if self._resp:
            self._resp._finish(False)
        self._release(None, False)

    def _release(self, resp, keep):
        # resp None: drop whatever is open. Bytes after a response's end are junk:
        # never reuse such a connection.
        if resp is None or self._resp is resp:
            self._resp = None
            if (not keep or self._pos != self._end) and self._sock:
                try:
                    self._sock.close()
                except OSError:
                    pass
                self._sock = self._key = None
                self._pos = self._end = 0

    def _connect(self, key):
        self._release(None, False)
        scheme, host, port = key
        sock = socket.socket()
        what = "connect to"
        try:
            addr = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0][-1]
            sock.settimeout(self.timeout_ms / 1000)
            sock.connect(addr)
            if scheme == "https":
                what = "TLS with"
                if not self._ctx:
                    import ssl

                    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                    self.verifies_tls = False
                    if self._cas:
                        try:
                            ctx.verify_mode = ssl.CERT_REQUIRED
                            for der in self._cas:
                                ctx.load_verify_locations(cadata=bytes(der))
                            self.verifies_tls = True
                        except (AttributeError, NotImplementedError):
                            # A port whose TLS cannot verify (ESP8266): the content is
                            # still signed end to end; see docs/device.md.
                            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                    if not self.verifies_tls:
                        if hasattr(ctx, "check_hostname"):
                            ctx.check_hostname = False
                        ctx.verify_mode = ssl.CERT_NONE
                    self._ctx = ctx
                sock = self._ctx.wrap_socket(sock, server_hostname=host)
            if _POLL:
                sock.setblocking(False)
                self._poll = select.poll()
        except (OSError, ValueError, IndexError) as exc:
            sock.close()
            if _timed_out(exc):
                raise StalledError("%s %s:%d timed out" % (what, host, port)) from None
            raise NetworkError("%s %s:%d failed: %s" % (what, host, port, exc)) from None
        self.connections += 1
        self._sock = sock
        self._key = key

    def _io(self, mv, send=False):
        # One read into mv, or a whole send of mv; errors named and typed.
        # CPython: blocking sockets with a timeout. MicroPython: readinto blocks
        # until the buffer is full, so its sockets are non-blocking and we poll.
        sock = self._sock
        try:
            while True:
                if not _POLL:
                    if send:
                        return sock.sendall(mv)
                    got = sock.recv_into(mv)
                else:
                    got = sock.write(mv) if send else sock.readinto(mv)
                if got is None:
                    self._poll.register(sock, select.POLLOUT if send else select.POLLIN)
                    if not self._poll.poll(self.timeout_ms):
                        raise OSError(110)
                elif not send:
                    self.bytes_in += got
                    return got
                else:
                    mv = mv[got:]
                    if not mv:
                        return
        except OSError as exc:
            if _timed_out(exc):
                raise StalledError(
                    "no data from %s in %d ms" % (self._key[1], self.timeout_ms)
                ) from None
            raise NetworkError("connection to %s failed: %s" % (self._key[1], exc)) from None

    def _fill(self):
        # More bytes after the pending ones, compacting first; -1 when the buffer is full.
        buf = self._buf
        n = self._end - self._pos
        if self._pos and (not n or self._end == len(buf)):
            buf[:n] = buf[self._pos : self._end]
            self._pos, self._end = 0, n
        if self._end == len(buf):
            return -1
        got = self._io(buf[self._end :])
        self._end += got
        return got

    def _recv(self, mv, n):
        # Pending bytes first, else straight from the socket; mv None discards.
        avail = self._end - self._pos
        if not avail:
            if mv is not None:
                return self._io(mv[:n])
            avail = self._fill()
            if avail < 1:
                return 0
        n = min(n, avail)
        if mv is not None:
            mv[:n] = self._buf[self._pos : self._pos + n]
        self._pos += n
        return n

    def _line(self, what):
        # Length of the next line without its CRLF; it starts at self._buf[self._at].
        buf = self._buf
        i = self._pos
        while True:
            while i < self._end:
                if buf[i] == 10:
                    start = self._pos
                    self._pos = i + 1
                    if i > start and buf[i - 1] == 13:
                        i -= 1
                    self._at = start
                    return i - start
                i += 1
            i -= self._pos
            got = self._fill()
            i += self._pos
            if got < 0:
                raise LimitError("%s longer than the %d-byte buffer" % (what, len(buf)))
            if not got:
                raise NetworkError("connection closed in the %s" % what)

    def _chunk_size(self):
        n = self._line("chunk size line")
        line = bytes(self._buf[self._at : self._at + n]).split(b";", 1)[0].strip()
        size = 0
        for c in line:
            d = b"0123456789abcdefABCDEF".find(bytes((c,)))
            if d < 0 or len(line) > 8:
                break
            size = size * 16 + (d if d < 16 else d - 6)
        else:
            if line:
                return size
        raise ProtocolError("bad chunk size line %r" % line[:20])

    def get(self, url, *, start=None, end=None, max_bytes=65536, follow=True, headers=None):
        """GET url, following redirects; with start, require a matching 206."""
        if self._resp:
            self._resp.close()
        ranged = start is not None
        if (ranged and (start < 0 or (end is not None and end < start))) or (
            end is not None and not ranged
        ):
            raise HTTPError("bad byte range %s-%s" % (start, end))
        for _ in range(_MAX_REDIRECTS + 1):
            resp = self._request(url, start, end, max_bytes, headers)
            status = resp.status
            if status in (301, 302, 303, 307, 308):
                if not follow:
                    return resp
                resp.close()
                if resp.location is None:
                    raise ProtocolError("%d without Location from %s" % (status, url[:100]))
                url = join_url(url, resp.location)
                continue
            if not 200 <= status < 300:
                resp.close()
                raise StatusError(
                    "HTTP %d from %s" % (status, url[:100]), status, _number(resp._kept[7] or "")
                )
            if (status == 206) != ranged:
                resp._finish(False)
                raise ProtocolError(
                    "got %d, range %s-%s, from %s" % (status, start, end, url[:100])
                )
            if ranged:
                # "bytes FIRST-LAST/TOTAL" answering exactly what was asked.
                text = resp._kept[2] or ""
                first, _, last = text[6:].partition("-")
                last, _, total = last.partition("/")
                first, last, total = _number(first), _number(last), _number(total)
                if (
                    text[:6] != "bytes "
                    or None in (first, last, total)
                    or first != start
                    or last < first
                    or last != (total - 1 if end is None or end >= total else end)
                    or resp.length not in (None, last - first + 1)
                ):
                    resp._finish(False)
                    raise ProtocolError(
                        "Content-Range %r (Content-Length %s) does not answer bytes=%s-%s"
                        % (text[:60], resp.length, start, "" if end is None else end)
                    )
                resp.range_start = first
                resp.range_total = total
            return resp
        raise LimitError("more than %d redirects, last to %s" % (_MAX_REDIRECTS, url[:100]))

    def _request(self, url, start, end, max_bytes, headers):
        scheme, host, port, path = split_url(url)
        key = (scheme, host, port)
        reused = self._sock is not None and self._key == key
        # The request is bounded by the buffer size like every line we read.
        text = (
            "GET %s HTTP/1.1\r\nHost: %s%s\r\nUser-Agent: %s\r\nAccept-Encoding: identity\r\n"
            % (
                path,
                host,
                "" if port == (80 if scheme == "http" else 443) else ":%d" % port,
                self.user_agent,
            )
        )
        if start is not None:
            text += "Range: bytes=%d-%s\r\n" % (start, "" if end is None else end)
        for name, value in headers.items() if headers else ():
            text += "%s: %s\r\n" % (_clean(name, "header name"), _clean(value, name, "\x1f"))
        text = (text + "\r\n").encode()
        n = len(text)
        if n > len(self._buf):
            raise LimitError("request longer than the %d-byte buffer" % len(self._buf))
        self.requests += 1
        for attempt in (reused, False):
            if not attempt:
                self._connect(key)
            try:
                self._io(memoryview(text), True)
                return self._head(url, max_bytes)
            except HTTPError as exc:
                self._release(None, False)
                # A kept-alive connection the server closed meanwhile: one fresh try.
                if not attempt or not isinstance(exc, NetworkError):
                    raise

    def _head(self, url, max_bytes):
        # Status line and headers parsed in the buffer; a 1xx is skipped (twice at most).
        t0 = ticks_ms()
        buf = self._buf
        for _ in range(3):
            n = self._line("status line")
            line = bytes(buf[self._at : self._at + min(n, 40)])
            if (
                line[:7] != b"HTTP/1."
                or line[7:9] not in (b"0 ", b"1 ")
                or not line[9:12].isdigit()
                or line[12:13] not in (b"", b" ")
            ):
                raise ProtocolError("garbage status line %r" % line)
            kept = [None] * len(_KEPT)
            total = n
            count = 0
            while True:
                n = self._line("header line")
                if not n:
                    break
                start = self._at
                end = start + n
                total += n
                count += 1
                if ticks_diff(ticks_ms(), t0) > self.timeout_ms:
                    raise StalledError("headers not complete in %d ms" % self.timeout_ms)
                if total > _MAX_HEADER_BYTES or count > _MAX_HEADERS:
                    raise LimitError(
                        "more than %d headers or %d header bytes"
                        % (_MAX_HEADERS, _MAX_HEADER_BYTES)
                    )
                i = start
                while i < end and 32 < buf[i] < 127 and buf[i] != 58:
                    if 65 <= buf[i] <= 90:
                        buf[i] += 32  # lower-case the name in place
                    i += 1
                if i in (start, end) or buf[i] != 58:
                    raise ProtocolError(
                        "malformed header %r" % bytes(buf[start : min(end, start + 40)])
                    )
                name = buf[start:i]
                for k in range(len(_KEPT)):
                    if name == _KEPT[k]:
                        try:
                            value = bytes(buf[i + 1 : end]).decode().strip()
                        except UnicodeError:
                            value = None
                        if value is None or kept[k] not in (None, value):
                            raise ProtocolError("bad or repeated %s header" % _KEPT[k].decode())
                        kept[k] = value
            status = int(line[9:12])
            if status >= 200:
                break
        resp = Response(self, url, status, kept, max_bytes)
        self._resp = resp
        te, length, conn = kept[3], kept[1], (kept[4] or "").lower()
        resp._keep = "keep-alive" in conn if line[7] == 48 else "close" not in conn
        if status < 200:
            raise ProtocolError("too many 1xx responses")
        if te is not None:
            if length is not None or te.lower() != "chunked":
                raise ProtocolError("unsupported Transfer-Encoding %r" % te[:40])
            resp._mode = _CHUNKED
        elif length is not None and status not in (204, 304):
            resp.length = resp._left = _number(length)
            if resp.length is None:
                raise ProtocolError("bad Content-Length %r" % length[:40])
            resp._mode = _LENGTH
            if resp.length > max_bytes and status < 300:
                raise LimitError(
                    "Content-Length %d passes max_bytes %d from %s"
                    % (resp.length, max_bytes, url[:100])
                )
        elif status not in (204, 304):
            resp._mode = _TO_CLOSE
        resp._t0 = ticks_ms()
        return resp
