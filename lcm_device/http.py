"""A small streaming HTTP/1.1 client for the device (MicroPython and CPython).

Everything goes through one preallocated buffer supplied by the caller: the
request is composed in it, the status line and headers are parsed in place,
and only a fixed set of headers is kept as strings (no dict of all headers).
Bodies are read with `readinto` into the caller's memoryview.

What a server can make us do is bounded: the status line and every header
line must fit the buffer, the header block and the header count are capped,
bodies are capped per request (`max_bytes`), redirects are capped at 5, every
socket operation has a timeout and the body must arrive at a minimum rate.
Every refusal raises an `HTTPError` subclass whose message names what was
wrong, so the engine can log it and retry later.

TLS: SNI always; server verification against the DER trust anchors from the
cert sector when given and the port supports it (`Client.verifies_tls`).
"""

import socket

try:
    from micropython import const
except ImportError:

    def const(x):
        return x


try:  # MicroPython
    from time import ticks_diff as _ticks_diff
    from time import ticks_ms as _ticks_ms
except ImportError:  # CPython
    from time import monotonic as _monotonic

    def _ticks_ms():
        return int(_monotonic() * 1000)

    def _ticks_diff(a, b):
        return a - b


MAX_REDIRECTS = const(5)
# The header block (status line included) and the header count a response may have.
MAX_HEADER_BYTES = const(8192)
MAX_HEADERS = const(64)
# Interim 1xx responses skipped before the real one.
MAX_INTERIM = const(2)
# Body bytes of a redirect or an error response read to keep the connection; more: drop it.
_DRAIN_LIMIT = const(2048)
DEFAULT_MAX_BYTES = const(65536)
# Buffer smaller than this cannot hold a request line and a redirect's Location.
MIN_BUFFER = const(256)

_LENGTH = const(0)
_CHUNKED = const(1)
_UNTIL_CLOSE = const(2)
_NO_BODY = const(3)

# Kept response headers: index into Response._kept.
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
_H_LOCATION = const(0)
_H_LENGTH = const(1)
_H_RANGE = const(2)
_H_TE = const(3)
_H_CONNECTION = const(4)
_H_RETRY_AFTER = const(7)

_REDIRECTS = (301, 302, 303, 307, 308)
# Socket errnos that mean "timed out" (ETIMEDOUT, EAGAIN) on the ports we run on.
_TIMEOUT_ERRNOS = (110, 11, 116)


class HTTPError(Exception):
    """Base of every client refusal; the message names what was wrong."""


class ProtocolError(HTTPError):
    """The server broke HTTP: status line, headers, chunking, Content-Range, 200 for a range."""


class LimitError(HTTPError):
    """A size or count limit was exceeded (line, header block, headers, body, redirects)."""


class StalledError(HTTPError):
    """A connect or read timeout, or a transfer below the minimum rate."""


class NetworkError(HTTPError):
    """Name lookup, connect, TLS or I/O failure, or the connection closed early."""


class StatusError(HTTPError):
    """An HTTP status the caller cannot use (4xx, 5xx, 416, ...)."""

    def __init__(self, message, status, retry_after=None):
        super().__init__(message)
        self.status = status
        # Seconds from a Retry-After header (429/503), or None.
        self.retry_after = retry_after


def _is_timeout(exc):
    if exc.__class__.__name__ in ("timeout", "TimeoutError", "SSLWantReadError"):
        return True
    return bool(exc.args) and exc.args[0] in _TIMEOUT_ERRNOS


def _check_text(text, what):
    # URLs and header values end up in the request: no controls, no spaces.
    for c in text:
        o = ord(c)
        if o <= 32 or o >= 127:
            raise ProtocolError(what + " contains an invalid character: " + repr(text[:100]))


def split_url(url):
    """(scheme, host, port, path) of an http(s) URL; HTTPError naming what is wrong."""
    if not isinstance(url, str):
        raise HTTPError("URL is not text")
    _check_text(url, "URL")
    i = url.find("://")
    scheme = url[:i].lower() if i > 0 else ""
    if scheme == "http":
        port = 80
    elif scheme == "https":
        port = 443
    else:
        raise HTTPError("unsupported URL (need http:// or https://): " + repr(url[:100]))
    rest = url[i + 3 :]
    j = len(rest)
    for sep in "/?#":
        k = rest.find(sep)
        if 0 <= k < j:
            j = k
    netloc = rest[:j]
    path = rest[j:]
    k = path.find("#")
    if k >= 0:
        path = path[:k]
    if not path.startswith("/"):
        path = "/" + path
    if "@" in netloc:
        raise HTTPError("credentials in URL are not supported: " + repr(url[:100]))
    host = netloc
    if netloc.startswith("["):
        k = netloc.find("]")
        if k < 0:
            raise HTTPError("bad IPv6 host in URL: " + repr(url[:100]))
        host = netloc[1:k]
        tail = netloc[k + 1 :]
        if tail:
            if not tail.startswith(":"):
                raise HTTPError("bad host in URL: " + repr(url[:100]))
            port = _parse_port(tail[1:], url)
    else:
        k = netloc.rfind(":")
        if k >= 0:
            host = netloc[:k]
            port = _parse_port(netloc[k + 1 :], url)
    if not host:
        raise HTTPError("no host in URL: " + repr(url[:100]))
    return scheme, host.lower(), port, path


def _parse_port(text, url):
    if not text or not text.isdigit() or len(text) > 5 or not 0 < int(text) < 65536:
        raise HTTPError("bad port in URL: " + repr(url[:100]))
    return int(text)


def join_url(base, location):
    """Resolve a Location header against the URL it came from."""
    _check_text(location, "Location")
    if location.find("://") > 0:
        return location
    scheme, host, port, path = split_url(base)
    default = 80 if scheme == "http" else 443
    if ":" in host:
        host = "[" + host + "]"
    origin = scheme + "://" + host + ("" if port == default else ":" + str(port))
    if location.startswith("//"):
        return scheme + ":" + location
    if location.startswith("/"):
        return origin + location
    if location.startswith("?"):
        return origin + path.split("?", 1)[0] + location
    directory = path.split("?", 1)[0]
    return origin + directory[: directory.rfind("/") + 1] + location


def _lower_equals(buf, start, end, name):
    # Case-insensitive compare of buf[start:end] with a lower-case ASCII name, no allocation.
    if end - start != len(name):
        return False
    for i in range(len(name)):
        c = buf[start + i]
        if 65 <= c <= 90:
            c += 32
        if c != name[i]:
            return False
    return True


def _parse_int(text, what):
    text = text.strip()
    if not text or not text.isdigit() or len(text) > 12:
        raise ProtocolError("bad " + what + ": " + repr(text[:40]))
    return int(text)


class Response:
    """One response: status and kept headers parsed, the body streamed with readinto."""

    def __init__(self, client, url, status, kept, max_bytes):
        self._client = client
        self.url = url
        self.status = status
        self._kept = kept
        self.location = kept[_H_LOCATION]
        self.length = None
        self.range_start = None
        self.range_total = None
        self._max = max_bytes
        self._received = 0
        self._left = 0
        self._mode = _NO_BODY
        self._done = False
        self._keep = True
        self._t0 = _ticks_ms()

    def header(self, name):
        """A kept header's value (case-insensitive name), or None."""
        key = name.lower().encode()
        for i in range(len(_KEPT)):
            if _KEPT[i] == key:
                return self._kept[i]
        return None

    def _finish(self):
        self._done = True
        self._client._release(self, self._keep)

    def readinto(self, mv):
        """Read body bytes into `mv`; 0 at the end of the body."""
        return self._read(mv, len(mv))

    def _read(self, mv, n):
        # mv None: discard up to n body bytes (draining before reuse).
        if self._done or n == 0:
            return 0
        client = self._client
        mode = self._mode
        if mode == _NO_BODY:
            self._finish()
            return 0
        if mode == _LENGTH:
            if self._left == 0:
                self._finish()
                return 0
            if n > self._left:
                n = self._left
        elif mode == _CHUNKED:
            if self._left == 0:
                try:
                    size = client._chunk_size()
                    if size == 0:
                        client._skip_trailers()
                except HTTPError:
                    self._fail()
                    raise
                if size == 0:
                    self._finish()
                    return 0
                if self._received + size > self._max:
                    self._fail()
                    raise LimitError(
                        "body exceeds max_bytes " + str(self._max) + " (chunk of " + str(size) + ")"
                    )
                self._left = size
            if n > self._left:
                n = self._left
        else:
            room = self._max - self._received
            # At the cap, read one more byte to tell "ended exactly" from "too long".
            n = min(n, room) if room > 0 else 1
        try:
            got = client._recv(mv, n)
        except HTTPError:
            self._fail()
            raise
        if got == 0:
            if mode == _UNTIL_CLOSE:
                self._keep = False
                self._finish()
                return 0
            self._fail()
            raise NetworkError(
                "connection closed after "
                + str(self._received)
                + " body bytes"
                + (" of " + str(self.length) if self.length is not None else "")
            )
        self._received += got
        if self._received > self._max:
            self._fail()
            raise LimitError("body exceeds max_bytes " + str(self._max))
        if mode != _UNTIL_CLOSE:
            self._left -= got
            if mode == _CHUNKED and self._left == 0:
                try:
                    client._chunk_end()
                except HTTPError:
                    self._fail()
                    raise
        self._check_rate()
        if mode == _LENGTH and self._left == 0:
            self._finish()
        return got

    def _check_rate(self):
        client = self._client
        elapsed = _ticks_diff(_ticks_ms(), self._t0)
        if elapsed > client.timeout_ms and self._received * 1000 < client.min_rate * elapsed:
            self._fail()
            raise StalledError(
                "transfer below "
                + str(client.min_rate)
                + " bytes/s ("
                + str(self._received)
                + " bytes in "
                + str(elapsed)
                + " ms)"
            )

    def read_all(self, limit):
        """The whole (small) body as bytes; LimitError when longer than `limit`."""
        if self.length is not None and self.length > limit:
            self.close()
            raise LimitError("body of " + str(self.length) + " bytes exceeds " + str(limit))
        out = bytearray(limit + 1)
        mv = memoryview(out)
        n = 0
        while True:
            got = self.readinto(mv[n:])
            if got == 0:
                break
            n += got
            if n > limit:
                self.close()
                raise LimitError("body exceeds " + str(limit) + " bytes")
        return bytes(mv[:n])

    def _fail(self):
        self._keep = False
        if not self._done:
            self._done = True
            self._client._release(self, False)

    def close(self):
        """Finish the response: drain a short rest to keep the connection, else drop it."""
        if self._done:
            return
        if (self._mode == _LENGTH and self._left > _DRAIN_LIMIT) or self._mode == _UNTIL_CLOSE:
            self._fail()
            return
        self._client._drain(self)


class Client:
    """HTTP(S) client over one preallocated buffer; keeps one connection alive."""

    def __init__(self, buf, *, ca_ders=None, timeout_ms=10000, min_rate=256, user_agent="lcm"):
        self._buf = buf if isinstance(buf, memoryview) else memoryview(buf)
        if len(self._buf) < MIN_BUFFER:
            raise ValueError("HTTP buffer must be at least " + str(MIN_BUFFER) + " bytes")
        self._cas = ca_ders
        self.timeout_ms = timeout_ms
        self.min_rate = min_rate
        self.user_agent = user_agent
        self.requests = 0
        self.connections = 0
        self.bytes_in = 0
        # None until the first TLS connection; then whether certificates are verified.
        self.verifies_tls = None
        self._ctx = None
        self._sock = None
        self._key = None
        self._recv_into = None
        self._send = None
        self._response = None
        # Bytes read from the socket but not yet consumed: self._buf[_rpos:_rend].
        self._rpos = 0
        self._rend = 0

    # -- connections -----------------------------------------------------

    def close(self):
        """Drop the kept-alive connection (if any)."""
        if self._response is not None:
            self._response._fail()
        self._drop()

    def _drop(self):
        sock = self._sock
        self._sock = None
        self._key = None
        self._rpos = self._rend = 0
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def _tls_context(self):
        if self._ctx is not None:
            return self._ctx
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        verified = False
        if self._cas:
            try:
                ctx.verify_mode = ssl.CERT_REQUIRED
                for der in self._cas:
                    ctx.load_verify_locations(cadata=bytes(der))
                verified = True
            except (AttributeError, NotImplementedError):
                # Ports whose TLS cannot verify (ESP8266's axTLS): the manifest
                # signatures still protect the content; see docs/device.md.
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            except (ValueError, OSError) as exc:
                raise HTTPError("bad CA certificate in trust anchors: " + str(exc)) from None
        if not verified:
            if hasattr(ctx, "check_hostname"):
                ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        self.verifies_tls = verified
        self._ctx = ctx
        return ctx

    def _connect(self, scheme, host, port):
        self._drop()
        where = host + ":" + str(port)
        try:
            addr = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0][-1]
        except (OSError, IndexError) as exc:
            raise NetworkError("cannot resolve " + host + ": " + str(exc)) from None
        sock = socket.socket()
        try:
            sock.settimeout(self.timeout_ms / 1000)
            try:
                sock.connect(addr)
            except OSError as exc:
                if _is_timeout(exc):
                    raise StalledError("connect to " + where + " timed out") from None
                raise NetworkError("cannot connect to " + where + ": " + str(exc)) from None
            if scheme == "https":
                ctx = self._tls_context()
                try:
                    sock = ctx.wrap_socket(sock, server_hostname=host)
                except OSError as exc:
                    if _is_timeout(exc):
                        raise StalledError("TLS handshake with " + where + " timed out") from None
                    raise NetworkError(
                        "TLS handshake with " + where + " failed: " + str(exc)
                    ) from None
                except ValueError as exc:
                    raise NetworkError(
                        "TLS handshake with " + where + " failed: " + str(exc)
                    ) from None
        except BaseException:
            sock.close()
            raise
        self.connections += 1
        self._sock = sock
        self._key = (scheme, host, port)
        # CPython sockets: recv_into/sendall; MicroPython streams: readinto/write.
        self._recv_into = getattr(sock, "recv_into", None) or sock.readinto
        self._send = getattr(sock, "sendall", None) or sock.write

    def _release(self, response, keep):
        if self._response is not response:
            return
        self._response = None
        # Bytes after the end of a response on a kept connection are junk: drop it.
        if not keep or self._rpos != self._rend:
            self._drop()

    def _drain(self, response):
        budget = _DRAIN_LIMIT
        try:
            while not response._done and budget > 0:
                budget -= response._read(None, budget)
        except HTTPError:
            pass
        if not response._done:
            response._fail()

    # -- raw I/O -----------------------------------------------------------

    def _sock_read(self, mv):
        try:
            got = self._recv_into(mv)
        except OSError as exc:
            if _is_timeout(exc):
                raise StalledError(
                    "no data from " + self._key[1] + " for " + str(self.timeout_ms) + " ms"
                ) from None
            raise NetworkError("read from " + self._key[1] + " failed: " + str(exc)) from None
        if got is None:
            raise StalledError("no data from " + self._key[1])
        self.bytes_in += got
        return got

    def _recv(self, mv, n):
        # Pending buffered bytes first, then straight from the socket into mv.
        # mv None discards: the bytes go through the buffer and are dropped.
        avail = self._rend - self._rpos
        if not avail and mv is not None:
            return self._sock_read(mv[:n])
        if not avail:
            self._rpos = self._rend = 0
            avail = self._fill()
            if avail <= 0:
                return 0
        if n > avail:
            n = avail
        if mv is not None:
            mv[:n] = self._buf[self._rpos : self._rpos + n]
        self._rpos += n
        if self._rpos == self._rend:
            self._rpos = self._rend = 0
        return n

    def _fill(self):
        # Read more bytes into the buffer after the pending ones; 0 on EOF.
        buf = self._buf
        if self._rpos and self._rend == len(buf):
            n = self._rend - self._rpos
            buf[:n] = buf[self._rpos : self._rend]
            self._rpos = 0
            self._rend = n
        if self._rend == len(buf):
            return -1
        got = self._sock_read(buf[self._rend :])
        self._rend += got
        return got

    def _line(self, what):
        """(start, end) in the buffer of the next line without CRLF; consumes it."""
        buf = self._buf
        scan = self._rpos
        while True:
            end = self._rend
            while scan < end:
                if buf[scan] == 10:
                    start = self._rpos
                    self._rpos = scan + 1
                    stop = scan - 1 if scan > start and buf[scan - 1] == 13 else scan
                    return start, stop
                scan += 1
            before = self._rpos
            got = self._fill()
            if got < 0:
                raise LimitError(what + " longer than " + str(len(buf)) + " bytes")
            if got == 0:
                raise NetworkError("connection closed while reading " + what)
            scan -= before - self._rpos

    def _chunk_size(self):
        start, end = self._line("chunk size line")
        buf = self._buf
        size = 0
        digits = 0
        i = start
        while i < end:
            c = buf[i]
            if 48 <= c <= 57:
                v = c - 48
            elif 97 <= c <= 102:
                v = c - 87
            elif 65 <= c <= 70:
                v = c - 55
            elif c in (59, 32, 9) and digits:  # ";ext" or whitespace before it
                break
            else:
                raise ProtocolError(
                    "bad chunk size line " + repr(bytes(buf[start : min(end, start + 40)]))
                )
            size = size * 16 + v
            digits += 1
            if digits > 8:
                raise LimitError("chunk size over 8 hex digits")
            i += 1
        if not digits:
            raise ProtocolError("empty chunk size line")
        return size

    def _chunk_end(self):
        start, end = self._line("chunk end")
        if end != start:
            raise ProtocolError("chunk data longer than its declared size")

    def _skip_trailers(self):
        for _ in range(MAX_HEADERS):
            start, end = self._line("trailer line")
            if start == end:
                return
        raise LimitError("more than " + str(MAX_HEADERS) + " trailer lines")

    # -- requests ----------------------------------------------------------

    def _compose(self, method, host, port, default_port, path, start, end, headers):
        buf = self._buf
        pos = 0
        parts = [method, " ", path, " HTTP/1.1\r\nHost: ", host]
        if port != default_port:
            parts.append(":" + str(port))
        parts.append("\r\nUser-Agent: ")
        parts.append(self.user_agent)
        parts.append("\r\nAccept-Encoding: identity\r\n")
        if start is not None:
            parts.append(
                "Range: bytes=" + str(start) + "-" + ("" if end is None else str(end)) + "\r\n"
            )
        if headers:
            for name, value in headers.items() if hasattr(headers, "items") else headers:
                _check_text(name, "header name")
                if "\r" in value or "\n" in value:
                    raise HTTPError("header " + name + " has a line break")
                parts.append(name + ": " + value + "\r\n")
        parts.append("\r\n")
        for part in parts:
            data = part.encode()
            n = len(data)
            if pos + n > len(buf):
                raise LimitError("request longer than the " + str(len(buf)) + "-byte buffer")
            buf[pos : pos + n] = data
            pos += n
        return pos

    def _send_all(self, n):
        mv = self._buf[:n]
        try:
            sent = self._send(mv)
            # MicroPython's write may be partial; sendall returns None.
            while sent is not None and sent < n:
                mv = mv[sent:]
                n -= sent
                sent = self._send(mv)
        except OSError as exc:
            if _is_timeout(exc):
                raise StalledError(
                    "sending the request to " + self._key[1] + " timed out"
                ) from None
            raise NetworkError(
                "sending the request to " + self._key[1] + " failed: " + str(exc)
            ) from None

    def get(
        self, url, *, start=None, end=None, max_bytes=DEFAULT_MAX_BYTES, follow=True, headers=None
    ):
        """GET `url`; follow redirects; check a requested range. Returns a Response."""
        if self._response is not None:
            self._response.close()
        if start is None and end is not None:
            raise HTTPError("a range end needs a start")
        if start is not None and (start < 0 or (end is not None and end < start)):
            raise HTTPError("bad byte range " + str(start) + "-" + str(end))
        redirects = 0
        while True:
            resp = self._request(url, start, end, max_bytes, headers)
            if resp.status in _REDIRECTS and follow:
                location = resp.location
                resp.close()
                if location is None:
                    raise ProtocolError(
                        str(resp.status) + " redirect without Location from " + url[:100]
                    )
                redirects += 1
                if redirects > MAX_REDIRECTS:
                    raise LimitError(
                        "more than "
                        + str(MAX_REDIRECTS)
                        + " redirects (last to "
                        + location[:100]
                        + ")"
                    )
                url = join_url(url, location)
                continue
            return self._check(resp, url, start, end)

    def _check(self, resp, url, start, end):
        status = resp.status
        if status >= 400 or (status >= 300 and status not in _REDIRECTS) or status < 200:
            retry = resp._kept[_H_RETRY_AFTER]
            resp.close()
            seconds = int(retry) if retry is not None and retry.isdigit() else None
            raise StatusError("HTTP " + str(status) + " from " + url[:100], status, seconds)
        if status in _REDIRECTS:
            return resp
        if start is not None:
            if status != 206:
                resp._fail()
                raise ProtocolError(
                    "asked for bytes "
                    + str(start)
                    + "- but got "
                    + str(status)
                    + " from "
                    + url[:100]
                )
            self._check_range(resp, start, end)
        elif status == 206:
            resp._fail()
            raise ProtocolError("206 partial content without a Range request")
        return resp

    def _check_range(self, resp, start, end):
        text = resp._kept[_H_RANGE]
        bad = "Content-Range " + repr(text) + " does not match bytes " + str(start) + "-"
        bad += "" if end is None else str(end)
        if text is None or not text.startswith("bytes ") or "/" not in text:
            resp._fail()
            raise ProtocolError(bad)
        span, total = text[6:].split("/", 1)
        first, _, last = span.partition("-")
        try:
            first = _parse_int(first, "Content-Range")
            last = _parse_int(last, "Content-Range")
            total = _parse_int(total, "Content-Range")
        except ProtocolError:
            resp._fail()
            raise ProtocolError(bad) from None
        want_last = total - 1 if end is None or end >= total else end
        if first != start or last != want_last or last < first:
            resp._fail()
            raise ProtocolError(bad)
        if resp.length is not None and resp.length != last - first + 1:
            resp._fail()
            raise ProtocolError(bad + " (Content-Length " + str(resp.length) + ")")
        resp.range_start = first
        resp.range_total = total

    def _request(self, url, start, end, max_bytes, headers):
        scheme, host, port, path = split_url(url)
        key = (scheme, host, port)
        default = 80 if scheme == "http" else 443
        reused = self._sock is not None and self._key == key
        if not reused:
            self._connect(scheme, host, port)
        n = self._compose("GET", host, port, default, path, start, end, headers)
        self.requests += 1
        try:
            self._send_all(n)
            return self._read_head(url, max_bytes, start is not None)
        except NetworkError:
            if not reused:
                raise
        # A kept-alive connection the server had already closed: one fresh try.
        self._connect(scheme, host, port)
        n = self._compose("GET", host, port, default, path, start, end, headers)
        self._send_all(n)
        return self._read_head(url, max_bytes, start is not None)

    def _read_head(self, url, max_bytes, ranged):
        t0 = _ticks_ms()
        for _ in range(MAX_INTERIM + 1):
            status, kept, http10 = self._read_status_headers(t0)
            if status >= 200:
                break
        else:
            self._drop()
            raise ProtocolError("too many interim 1xx responses")
        resp = Response(self, url, status, kept, max_bytes)
        self._response = resp
        te = kept[_H_TE]
        length = kept[_H_LENGTH]
        conn = kept[_H_CONNECTION]
        conn = conn.lower() if conn else ""
        resp._keep = ("keep-alive" in conn) if http10 else ("close" not in conn)
        if te is not None:
            if length is not None:
                resp._fail()
                raise ProtocolError("both Transfer-Encoding and Content-Length")
            if te.strip().lower() != "chunked":
                resp._fail()
                raise ProtocolError("unsupported Transfer-Encoding " + repr(te[:40]))
            resp._mode = _CHUNKED
        elif status == 204 or status == 304:
            resp._mode = _NO_BODY
        elif length is not None:
            try:
                resp.length = _parse_int(length, "Content-Length")
            except ProtocolError:
                resp._fail()
                raise
            resp._mode = _LENGTH
            resp._left = resp.length
            if resp.length > max_bytes and status < 300:
                resp._fail()
                raise LimitError(
                    "Content-Length " + str(resp.length) + " exceeds max_bytes " + str(max_bytes)
                )
        else:
            resp._mode = _UNTIL_CLOSE
            resp._keep = False
        resp._t0 = _ticks_ms()
        return resp

    def _read_status_headers(self, t0):
        buf = self._buf
        header_bytes = 0
        start, end = self._status_line()
        header_bytes += end - start
        n = end - start
        if n < 12 or bytes(buf[start : start + 7]) != b"HTTP/1." or buf[start + 8] != 32:
            raise self._garbage(start, end)
        minor = buf[start + 7]
        status = 0
        for i in range(start + 9, start + 12):
            c = buf[i]
            if not 48 <= c <= 57:
                raise self._garbage(start, end)
            status = status * 10 + c - 48
        if minor not in (48, 49) or (n > 12 and buf[start + 12] != 32) or status < 100:
            raise self._garbage(start, end)
        kept = [None] * len(_KEPT)
        count = 0
        while True:
            if _ticks_diff(_ticks_ms(), t0) > self.timeout_ms:
                self._drop()
                raise StalledError(
                    "response headers not complete within " + str(self.timeout_ms) + " ms"
                )
            try:
                start, end = self._line("header line")
            except HTTPError:
                self._drop()
                raise
            header_bytes += end - start + 2
            if start == end:
                break
            count += 1
            if count > MAX_HEADERS or header_bytes > MAX_HEADER_BYTES:
                self._drop()
                raise LimitError(
                    "more than "
                    + str(MAX_HEADERS)
                    + " headers or "
                    + str(MAX_HEADER_BYTES)
                    + " header bytes"
                )
            colon = start
            while colon < end and buf[colon] != 58:
                c = buf[colon]
                if c <= 32 or c >= 127:
                    self._drop()
                    raise ProtocolError(
                        "malformed header line " + repr(bytes(buf[start : min(end, start + 40)]))
                    )
                colon += 1
            if colon in (end, start):
                self._drop()
                raise ProtocolError(
                    "malformed header line " + repr(bytes(buf[start : min(end, start + 40)]))
                )
            for k in range(len(_KEPT)):
                if _lower_equals(buf, start, colon, _KEPT[k]):
                    v0 = colon + 1
                    while v0 < end and buf[v0] in (32, 9):
                        v0 += 1
                    v1 = end
                    while v1 > v0 and buf[v1 - 1] in (32, 9):
                        v1 -= 1
                    try:
                        value = bytes(buf[v0:v1]).decode()
                    except UnicodeError:
                        self._drop()
                        raise ProtocolError(
                            "header " + _KEPT[k].decode() + " is not text"
                        ) from None
                    old = kept[k]
                    if old is not None and old != value:
                        self._drop()
                        raise ProtocolError("conflicting " + _KEPT[k].decode() + " headers")
                    kept[k] = value
                    break
        return status, kept, minor == 48

    def _status_line(self):
        try:
            return self._line("status line")
        except HTTPError:
            self._drop()
            raise

    def _garbage(self, start, end):
        text = bytes(self._buf[start : min(end, start + 40)])
        self._drop()
        return ProtocolError("garbage status line " + repr(text))
