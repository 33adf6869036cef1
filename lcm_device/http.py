"""A small streaming HTTP/1.1 client for the device (MicroPython and CPython).

The caller's preallocated buffer holds the status line and headers, parsed
in place; only a fixed set of headers is kept as strings. Bodies go straight
from the socket into the caller's memoryview with `readinto`.

What a server can make us do is bounded: the status line and kept header
lines must fit the buffer, other header lines are read past up to 8 KB, the
header count is capped, bodies are capped per request (`max_bytes`), at most
5 redirects, every socket operation has a timeout, headers must arrive within
the timeout and bodies at `min_rate`; and a whole check has a budget
(`budget_ms`, from the client's creation): past it every wait ends in BudgetError.
Every refusal is an `HTTPError` subclass whose message names what was wrong.
Limits and caveats (ESP8266 TLS) are in docs/device.md, "HTTP client".
The code is kept small on purpose (few functions, short messages): a loaded
.mpy costs heap on the unix port and on boards that do not freeze it.
"""

import select
import socket

from lcm_device.compat import collect, const, ticks_diff, ticks_ms

try:
    _Timeout = TimeoutError
except NameError:  # MicroPython: timeouts are OSError(ETIMEDOUT or EAGAIN)
    _Timeout = ()

# MicroPython (its sockets have no recv_into): readinto blocks until the buffer
# is full, so there sockets are non-blocking and waits are in poll (CPython
# blocks with a timeout); and a str's buffer is its UTF-8 bytes (no copies).
_MPY = not hasattr(socket.socket, "recv_into")

_MAX_REDIRECTS = const(5)
_MAX_HEADERS = const(64)
_MAX_INTERIM = const(4)  # interim 1xx answers read past before the final one
# A header line we do not keep may be this long (read past, not stored).
_MAX_SKIP = const(8192)
# A redirect's or an error's body is read (to keep the connection) up to this.
_DRAIN = const(2048)
# A Location longer than this (a signed asset URL: github.com's are ~1.3 KB) is
# kept in the client's URL slot, not made into a str (see Client.__init__).
_LONG_VALUE = const(256)


def is_redirect(status):
    """301, 302, 303, 307 or 308 (shared with fetch.py and update.py). Ranges, not a tuple:
    on a board that loads .mpy files from ROMFS, a tuple constant is an object in RAM."""
    return 300 < status < 304 or 306 < status < 309


# Body framing.
_LENGTH = const(0)
_CHUNKED = const(1)
_TO_CLOSE = const(2)
_NONE = const(3)  # the last: `mode >= _TO_CLOSE` is _TO_CLOSE or _NONE

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


# The subclasses are made with type(): a class statement costs more heap each.
# They share one bases tuple and one (empty, never changed) class dict, so each
# costs only its type object.
_BASES = (HTTPError,)
_ATTRS: dict = {}
# The server broke HTTP: status line, headers, chunking, Content-Range, 200 for a range.
ProtocolError = type("ProtocolError", _BASES, _ATTRS)
# A size or count limit was exceeded (line, headers, body, redirects).
LimitError = type("LimitError", _BASES, _ATTRS)
# A connect or read timeout, or a transfer below the minimum rate.
StalledError = type("StalledError", _BASES, _ATTRS)
# Name lookup, connect or TLS failure, a reset, or the connection closed early.
NetworkError = type("NetworkError", _BASES, _ATTRS)
# An HTTP status the caller cannot use; `.status`, `.retry_after` (seconds or None).
StatusError = type("StatusError", _BASES, _ATTRS)
# The check's time budget (or its cap on resumes) is spent: not retried.
BudgetError = type("BudgetError", _BASES, _ATTRS)
del _BASES, _ATTRS


def _net(exc, what):
    # The HTTPError for a socket/TLS OSError.
    if isinstance(exc, _Timeout) or (exc.args and (exc.args[0] == 110 or exc.args[0] == 11)):
        return StalledError(what + " timed out")
    return NetworkError("%s failed: %s" % (what, " ".join(str(exc).split())))


def _bytes_of(url):
    # A URL's bytes: a str's UTF-8 buffer on MicroPython (no copy), its encoding on
    # CPython; a URL held in a client's slot is a memoryview already.
    if isinstance(url, str):
        return memoryview(url) if _MPY else url.encode()
    return url


def _clean(text, what, low):
    # URLs and header values go into the request: printable ASCII above `low`.
    # Checked as bytes: a str per character may intern new strings (heap).
    data = _bytes_of(text)
    for i in range(len(data)):
        if not low < data[i] < 127:
            raise HTTPError("%s has an invalid character: %r" % (what, _show(text)))
    return text


def _show(url):
    # The start of a URL for a message (a slot URL is a memoryview).
    return url[:100] if isinstance(url, str) else bytes(url[:100])


def _is_http_url(data):
    # Whether the URL bytes start with http:// or https:// (any case); compared as
    # bytes: a server's Location may hold bytes that are not UTF-8.
    head = bytes(data[:8]).lower()
    return head.startswith(b"http://") or head.startswith(b"https://")


def _number(text):
    # A decimal header number, or None.
    text = text.strip()
    return int(text) if text.isdigit() and len(text) < 13 else None


def split_url(url):
    """(scheme, host, port, path) of an http(s) URL; HTTPError naming what is wrong."""
    scheme, host, port, start, end = _url_parts(url)
    path = url[start:end]
    return scheme, host, port, path if path[:1] == "/" else "/" + path


def _url_parts(url):
    # (scheme, host, port, start, end): the path is bytes start..end of the URL,
    # left in place because a signed URL is long (github.com's: about 1.3 KB) and
    # a small heap may have no free block that size for a copy. `url` is a str or
    # the memoryview of a client's URL slot.
    data = _bytes_of(_clean(url, "URL", 32))
    n = len(data)
    i = 0
    while i + 2 < n and not (data[i] == 58 and data[i + 1] == 47 and data[i + 2] == 47):
        i += 1  # to "://"
    if i + 2 >= n:
        i = -1
    scheme = str(data[: max(i, 0)], "utf-8").lower()
    # The URL ends at its first "#", the host at the first "/" or "?" after "://".
    end = j = n
    for k in range(n):
        if data[k] == 35:
            end = k
            break
        if j == n and k >= i + 3 and (data[k] == 47 or data[k] == 63):
            j = k
    j = min(j, end)
    host = str(data[i + 3 : j], "utf-8").lower()
    port = 80 if scheme == "http" else 443
    if ":" in host:
        host, port = host.rsplit(":", 1)
        port = int(port) if port.isdigit() and 0 < int(port) < 65536 else 0
    if i < 1 or (scheme != "http" and scheme != "https") or not port or not host or "@" in host:
        raise HTTPError("unsupported URL %r" % _show(url))
    return scheme, host, port, j, end


def join_url(base, location):
    """Resolve a Location: absolute, scheme-relative, absolute-path or relative (no ../).

    A long Location (kept in a client's URL slot) must be absolute, and so must the
    base of a relative one: they are never copied to be joined.
    """
    if _is_http_url(_bytes_of(_clean(location, "Location", 32))):
        return location
    if not isinstance(location, str) or not isinstance(base, str):
        raise LimitError("a relative Location joined to a URL over %d bytes" % _LONG_VALUE)
    # A scheme before any "/", "?" or "#" (RFC 3986: a relative reference has no ":"
    # there) makes it absolute, and not http(s)://, which returned above: never joined
    # to the base as a path ("javascript:x", "ftp://h/", "host:8080/x").
    i = location.find(":")
    head = location[:i]
    if i > 0 and head[0].isalpha() and not ("/" in head or "?" in head or "#" in head):
        raise HTTPError("unsupported URL %r" % _show(location))
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
    """Status and kept headers of one response; the body is streamed with readinto.

    The body state lives in the client (one response at a time): a Response is a
    small object, and one left over from an earlier get() reads nothing.
    """

    # Set on the instance only when present: a small heap has room for a small
    # instance dict but not always for a bigger one.
    location = length = range_total = None

    def __init__(self, client, url, status, kept):
        self._client = client
        self.url = url
        self.status = status
        self._kept = kept
        if kept[0] is not None:
            self.location = kept[0]

    def header(self, name):
        """A kept header's value (name case-insensitive), or None."""
        key = name.lower().encode()
        return self._kept[_KEPT.index(key)] if key in _KEPT else None

    def readinto(self, mv):
        """Body bytes into `mv`; 0 at the end.

        `mv` may be the client's own buffer from its first byte (one buffer for
        everything): bytes still pending in it always lie past what is copied.
        Raises LimitError past max_bytes, StalledError on a read timeout or
        below min_rate, NetworkError when the body is cut, ProtocolError on bad
        chunking.
        """
        c = self._client
        if c._resp is not self:
            return 0
        if not isinstance(mv, memoryview):
            mv = memoryview(mv)  # slicing a bytearray would copy
        return c._read(mv, len(mv))

    def read_all(self, limit):
        """The whole (small) body as bytes; LimitError when it is longer than `limit`."""
        out = memoryview(bytearray(limit + 1))
        n = 0
        while n <= limit:
            got = self.readinto(out[n:])
            if not got:
                return bytes(out[:n])
            n += got
        self.close()
        raise LimitError("body longer than %d bytes" % limit)

    def close(self):
        """Finish: drain a short rest so the connection can be reused, else drop it."""
        c = self._client
        budget = _DRAIN
        try:
            while c._resp is self and budget > 0 and c._mode != _TO_CLOSE and c._left <= budget:
                budget -= c._read(None, budget) or budget
        except HTTPError:
            pass
        if c._resp is self:
            c.close()


class Client:
    """HTTP(S) client over one preallocated buffer; keeps one connection alive."""

    def __init__(
        self,
        buf,
        *,
        slot=None,
        ca_ders=None,
        timeout_ms=10000,
        min_rate=256,
        user_agent="lcm",
        allow_downgrade=False,
        load_cas=None,
    ):
        # Every attribute is made here, so the instance dict is allocated once,
        # early, while a small heap still has a contiguous block for it.
        self._buf = memoryview(buf)
        self._cas = ca_ders
        # Or a function giving them, called at the first TLS connection: CAs stay on
        # flash until then (an update over plain HTTP never loads them).
        self._load_cas = load_cas
        self.timeout_ms = timeout_ms
        self.min_rate = min_rate
        self.user_agent = user_agent
        # Whether a redirect may lead from https:// to http:// (off: refused).
        self.allow_downgrade = allow_downgrade
        self.requests = 0
        self.connections = 0  # new TCP (+TLS) connections: handshakes
        self.bytes_in = 0  # every byte read from sockets, headers included
        self.verifies_tls = None  # whether TLS checks certificates (set at the first TLS use)
        # The check's budget: every wait ends by budget_ms after this client was made
        # (0: no budget). The update engine sets and revises it (docs/threat-model.md).
        self.budget_ms = 0
        self.born = ticks_ms()
        self._tls = self._sock = self._key = self._poll = None
        # MicroPython: what a new connection still has to finish before its first
        # byte goes through ("connect to HOST:PORT", or "TLS with HOST:PORT": the
        # handshake runs inside the first send), named in its errors; False after.
        self._shaking = False
        # The URL slot: a long Location (a signed asset URL) is copied here and
        # used in place, as a memoryview, instead of becoming a str that needs a
        # free block its size in a heap the work before may have fragmented. It
        # holds one URL: the next long Location replaces it. Best given by the
        # caller, allocated early with `buf`; else made at the first long Location.
        self._slot = slot
        # Read but unconsumed bytes: self._buf[_pos:_end]; _at: start of the last line.
        self._pos = self._end = self._at = 0
        # The open response and its body state (one at a time): bytes allowed,
        # bytes read, bytes left (LENGTH: of the body; CHUNKED: of this chunk, -1
        # before the first), framing, whether the connection may be reused, start.
        self._resp = None
        self._max = self._got = self._left = self._t0 = 0
        self._mode = _NONE
        self._keep = False

    def close(self, keep=False):
        """Drop the open response and the kept-alive connection.

        Call it before a long computation (the cert sector's signature check):
        the socket and its TLS state (about 0.8 KB of heap on the 64-bit unix
        port) are then not held through it; the next get() connects again. The
        TLS context (3 KB in one piece on that port) stays for the client's
        life: made again later, in a heap the work between has fragmented, it
        may find no block its size.

        (Internally close(True) ends a fully read response and keeps the
        connection for reuse, unless bytes follow the response: junk.)
        """
        self._resp = None
        if (not keep or not self._keep or self._pos != self._end) and self._sock:
            try:
                self._sock.close()
            except OSError:
                pass
            # The poll object holds the socket: the socket's heap goes with both.
            self._sock = self._key = self._poll = None
            self._pos = self._end = 0

    def close_plain(self):
        """Drop a plain HTTP connection, keep a TLS one: before a long computation (a
        signature check), whose heap the socket would hold. A plain connection costs
        one TCP connect to make again; a TLS one a handshake: seconds, and more heap
        than its socket frees."""
        if self._key is not None and self._key[0] == "http":
            self.close()

    def redirect_url(self, url, location):
        """Where a redirect from `url` to `location` leads; ProtocolError for https -> http."""
        to = join_url(url, location)
        if (
            not self.allow_downgrade
            and bytes(_bytes_of(url)[:8]).lower() == b"https://"
            and bytes(_bytes_of(to)[:7]).lower() == b"http://"
        ):
            raise ProtocolError("redirect from https to %r refused (no downgrade)" % _show(to))
        return to

    def _wait_ms(self):
        # The socket timeout, cut to what is left of the budget; BudgetError when none is.
        if not self.budget_ms:
            return self.timeout_ms
        left = self.budget_ms - ticks_diff(ticks_ms(), self.born)
        if left <= 0:
            raise BudgetError("check budget of %d s spent" % (self.budget_ms // 1000))
        return min(self.timeout_ms, left)

    def _connect(self, key):
        self.close()
        scheme, host, port = key
        what = "connect to %s:%d" % (host, port)
        wait = self._wait_ms()
        self._shaking = False
        sock = None
        try:
            # The first address, with its family (a name may resolve to IPv6).
            ai = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
            sock = socket.socket(ai[0], socket.SOCK_STREAM)
            addr = ai[-1]
            if _MPY:
                # Non-blocking from the start (as asyncio connects): the connect is waited
                # for in poll like every other wait, cut to the budget. (A socket timeout
                # is timed by the OS: Linux's timer wheel ends a 5 s one up to 0.25 s late.)
                sock.setblocking(False)
                self._poll = select.poll()
                self._poll.register(sock, select.POLLOUT)
                try:
                    sock.connect(addr)
                except OSError as exc:
                    if exc.args[0] != 115:  # EINPROGRESS
                        raise
                wait = self._wait_ms()
                while not self._poll.poll(wait):
                    if wait >= self.timeout_ms:
                        raise OSError(110)
                    wait = self._wait_ms()  # cut short by the budget: BudgetError when spent
                self._poll.unregister(sock)  # _io registers what it waits on (a TLS socket)
                # Connected, or refused: a refusal is the first send's error, named `what`.
                self._shaking = what
            else:
                sock.settimeout(wait / 1000)
                sock.connect(addr)
            if scheme == "https":
                what = "TLS with %s:%d" % (host, port)
                if not self._tls:
                    # The context is one block of about 3 KB (and `ssl` a module of its
                    # own): collected first, the garbage of the requests before is free,
                    # not in its way.
                    collect()
                    import ssl

                    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                    self.verifies_tls = False
                    cas = self._cas
                    if cas is None and self._load_cas is not None:
                        cas = self._load_cas()
                    if cas:
                        try:
                            ctx.verify_mode = ssl.CERT_REQUIRED
                            for der in cas:
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
                    self._tls = ctx
                # MicroPython: no handshake here, where it would block read after read
                # (a server trickling it could outlast any budget): _io drives it.
                sock = self._tls.wrap_socket(
                    sock, server_hostname=host, do_handshake_on_connect=not _MPY
                )
                if _MPY:
                    sock.setblocking(False)
                    self._shaking = what
        except (OSError, ValueError, IndexError) as exc:
            if sock:
                sock.close()
            self._wait_ms()  # a connect cut short by the budget: BudgetError, not a timeout
            raise _net(exc, what) from None
        if not self._shaking:
            self.connections += 1
        self._sock = sock
        self._key = key

    def _io(self, mv, send):
        # One read into mv (bytes read), or a whole send of mv; errors named and typed.
        sock = self._sock
        try:
            while True:
                if not _MPY:
                    sock.settimeout(self._wait_ms() / 1000)
                    if send:
                        return sock.sendall(mv)
                    got = sock.recv_into(mv)
                else:
                    try:
                        got = sock.write(mv) if send else sock.readinto(mv)
                    except OSError as exc:
                        if exc.args[0] != 11:  # EAGAIN: not ready, wait below
                            raise
                        got = None
                if got is None:
                    self._poll.register(sock, select.POLLOUT if send else select.POLLIN)
                    wait = self._wait_ms()
                    if not self._poll.poll(wait):
                        if wait < self.timeout_ms:
                            continue  # cut short by the budget: _wait_ms raises when it is spent
                        raise OSError(110)
                    continue
                if self._shaking:  # connected (and the handshake done): now it is a connection
                    self._shaking = False
                    self.connections += 1
                if not send:
                    self.bytes_in += got
                    return got
                else:
                    mv = mv[got:]
                    if not mv:
                        return
        except (OSError, ValueError) as exc:  # MicroPython's TLS: ValueError(its reason)
            self._wait_ms()  # a wait cut short by the budget (CPython): BudgetError
            if self._shaking:
                raise _net(exc, self._shaking) from None
            raise _net(exc, ("send to " if send else "read from ") + self._key[1]) from None

    def _fill(self):
        # More bytes after the pending ones, compacting first; -1 when the buffer is full.
        buf = self._buf
        n = self._end - self._pos
        if self._pos and (not n or self._end == len(buf)):
            buf[:n] = buf[self._pos : self._end]
            self._pos, self._end = 0, n
        if self._end == len(buf):
            return -1
        got = self._io(buf[self._end :], False)
        self._end += got
        self._slow()  # a line dripped a byte at a time is a stall too
        return got

    def _slow(self):
        # Headers must be complete within timeout_ms; after that the body (chunk
        # lines included) must average min_rate bytes/s, so a server dripping
        # bytes just inside every read timeout cannot hold us for hours.
        ms = ticks_diff(ticks_ms(), self._t0)
        if ms > self.timeout_ms and self._got * 1000 < self.min_rate * ms:
            if self._resp is None:
                raise StalledError("headers not complete in %d ms" % self.timeout_ms)
            raise StalledError(
                "transfer below %d bytes/s (%d bytes in %d ms)" % (self.min_rate, self._got, ms)
            )

    def _line(self, what, skip):
        # Length of the next line without its CRLF; it starts at self._buf[self._at].
        # With skip, a header line longer than the buffer is read past and -1
        # returned, unless it is one we keep: CDNs send Content-Security-Policy
        # lines of kilobytes, and only Location (say) must fit the buffer.
        buf = self._buf
        i = self._pos
        skipped = 0
        while True:
            while i < self._end:
                if buf[i] == 10:
                    if skipped:
                        self._pos = i + 1
                        return -1
                    self._at = self._pos
                    self._pos = i + 1
                    if i > self._at and buf[i - 1] == 13:
                        i -= 1
                    return i - self._at
                i += 1
            i -= self._pos
            got = self._fill()
            i += self._pos
            if got < 0:
                head = bytes(buf[0:24]).lower()
                refuse = not skip or skipped > _MAX_SKIP
                for name in _KEPT:
                    refuse = refuse or (not skipped and head.startswith(name + b":"))
                if refuse:
                    raise LimitError(
                        "%s longer than %d bytes" % (what, _MAX_SKIP if skipped else len(buf))
                    )
                skipped += self._end
                self._pos = self._end = i = 0
                continue
            if not got:
                raise NetworkError("connection closed in the %s" % what)

    def _keep_location(self, base, value):
        # A long Location goes into the URL slot, resolved against the request's
        # URL there and then (joining later would need a str of its length).
        prefix = ""
        _clean(value, "Location", 32)
        if _is_http_url(value):
            # Checked now, while `base` is whole: it may be a URL in this very slot (a
            # signed URL redirecting again), which the Location is about to replace.
            self.redirect_url(base, value)
        else:
            if not isinstance(base, str):
                raise LimitError("a relative Location after a URL over %d bytes" % _LONG_VALUE)
            two = str(value[:2], "utf-8")
            prefix = join_url(base, two)[: -len(two)]
        if self._slot is None:
            self._slot = memoryview(bytearray(len(self._buf)))
        slot = self._slot
        n = len(prefix) + len(value)
        if n > len(slot):
            raise LimitError("Location longer than %d bytes" % len(slot))
        slot[: len(prefix)] = _bytes_of(prefix)
        slot[len(prefix) : n] = value
        return memoryview(slot)[:n]

    def get(self, url, *, start=None, end=None, max_bytes=65536, follow=True, headers=None):
        """GET url and return its Response (see docs/device.md, "HTTP client").

        Follows up to 5 redirects unless follow=False (then a 3xx is returned),
        never from https to http unless allow_downgrade;
        with start (and end, inclusive) sends Range and requires a 206 whose
        Content-Range answers exactly; any other non-2xx raises StatusError.
        """
        if self._resp:
            self._resp.close()
        ranged = start is not None
        if (ranged and (start < 0 or (end is not None and end < start))) or (
            end is not None and not ranged
        ):
            raise HTTPError("bad byte range %s-%s" % (start, end))
        extra = "" if not ranged else "Range: bytes=%d-%s\r\n" % (start, "" if end is None else end)
        for name, value in headers.items() if headers else ():
            extra += "%s: %s\r\n" % (_clean(name, "header name", 32), _clean(value, name, 31))
        for _ in range(_MAX_REDIRECTS + 1):
            scheme, host, port, p0, p1 = _url_parts(url)
            data = _bytes_of(url)
            key = (scheme, host, port)
            if port != (80 if scheme == "http" else 443):
                host += ":%d" % port
            self.requests += 1
            # A reused connection the server closed meanwhile gets one fresh try.
            for reuse in (self._sock is not None and self._key == key, False):
                if not reuse:
                    self._connect(key)
                try:
                    # The request is written into the buffer piece by piece: no
                    # request-sized string (a long signed URL) needs a free block
                    # in a fragmented heap. Nothing is pending between responses.
                    pos = 0
                    for piece in (
                        "GET " if p0 < p1 and data[p0] == 47 else "GET /",
                        None,  # the path, from the URL in place
                        " HTTP/1.1\r\nHost: ",
                        host,
                        "\r\nUser-Agent: ",
                        self.user_agent,
                        "\r\nAccept-Encoding: identity\r\n",
                        extra,
                        "\r\n",
                    ):
                        # MicroPython: a str's buffer is its UTF-8 bytes (no copy).
                        piece = data[p0:p1] if piece is None else _bytes_of(piece)
                        if pos + len(piece) > len(self._buf):
                            raise LimitError("request longer than %d bytes" % len(self._buf))
                        self._buf[pos : pos + len(piece)] = piece
                        pos += len(piece)
                    self._io(self._buf[:pos], True)
                    resp = self._head(url, max_bytes)
                    break
                except HTTPError as exc:
                    self.close()
                    if not reuse or not isinstance(exc, NetworkError):
                        raise
            status = resp.status
            if is_redirect(status):
                if not follow:
                    return resp
                resp.close()
                if resp.location is None:
                    raise ProtocolError("%d without Location from %s" % (status, _show(url)))
                url = self.redirect_url(url, resp.location)
                continue
            if not 200 <= status < 300:
                resp.close()
                exc = StatusError("HTTP %d from %s" % (status, _show(url)))
                exc.status = status
                exc.retry_after = _number(resp._kept[7] or "")
                raise exc
            if (status == 206) != ranged:
                self.close()
                raise ProtocolError(
                    "got %d for range %s-%s from %s" % (status, start, end, _show(url))
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
                    self.close()
                    raise ProtocolError(
                        "Content-Range %r (Content-Length %s) does not answer bytes=%s-%s"
                        % (text[:60], resp.length, start, "" if end is None else end)
                    )
                resp.range_total = total  # (its first byte is `start`, checked above)
            return resp
        raise LimitError("more than %d redirects, last to %s" % (_MAX_REDIRECTS, _show(url)))

    def _head(self, url, max_bytes):
        # Status line and headers parsed in the buffer. Interim 1xx answers (103 Early
        # Hints, a 100 never asked for) are read past, as RFC 9110 asks a client to, at
        # most _MAX_INTERIM of them; 101 is a final status (never asked for: refused).
        self._t0 = ticks_ms()
        self._got = 0
        for _ in range(_MAX_INTERIM + 1):
            n = self._line("status line", False)
            line = bytes(self._buf[self._at : self._at + min(n, 40)])
            if (
                (line[:9] != b"HTTP/1.1 " and line[:9] != b"HTTP/1.0 ")
                or not line[9:12].isdigit()
                or (len(line) > 12 and line[12] != 32)
            ):
                raise ProtocolError("garbage status line %r" % line)
            kept = self._headers(url)
            status = int(line[9:12])
            if not 100 <= status < 200 or status == 101:
                break
        else:
            raise LimitError("more than %d interim (1xx) responses" % _MAX_INTERIM)
        resp = self._resp = Response(self, url, status, kept)
        te, length, conn = kept[3], kept[1], (kept[4] or "").lower()
        self._keep = "keep-alive" in conn if line[7] == 48 else "close" not in conn
        self._max = max_bytes
        self._left = -1
        self._mode = _NONE
        if te is not None:
            if te.lower() != "chunked":
                raise ProtocolError("unsupported Transfer-Encoding %r" % te[:40])
            if length is not None:
                # Two framings: which one a proxy on the way believed is unknown.
                raise ProtocolError("both Transfer-Encoding and Content-Length")
            self._mode = _CHUNKED
        elif status == 204 or status == 304:
            pass
        elif length is not None:
            self._left = _number(length)
            if self._left is None:
                raise ProtocolError("bad Content-Length %r" % length[:40])
            resp.length = self._left
            self._mode = _LENGTH
            if self._left > max_bytes and status < 300:
                raise LimitError("Content-Length %d passes max_bytes %d" % (self._left, max_bytes))
        else:
            self._mode = _TO_CLOSE
        self._t0 = ticks_ms()
        return resp

    def _headers(self, url):
        # The header block after a status line: the _KEPT headers' values, the rest
        # read past (a long Location goes to the URL slot).
        buf = self._buf
        kept = [None] * len(_KEPT)
        count = 0
        while True:
            n = self._line("header line", True)
            if not n:
                break
            count += 1
            if count > _MAX_HEADERS:  # lines are bounded too: the whole block is
                raise LimitError("more than %d headers" % _MAX_HEADERS)
            if n < 0:
                continue
            start = i = self._at
            end = start + n
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
                    # Trimmed in the buffer, then one str made straight from it.
                    i += 1
                    while i < end and (buf[i] == 32 or buf[i] == 9):
                        i += 1
                    while end > i and (buf[end - 1] == 32 or buf[end - 1] == 9):
                        end -= 1
                    if k == 0 and end - i > _LONG_VALUE:  # a long Location: the slot
                        if kept[0] is not None:
                            raise ProtocolError("bad or repeated location header")
                        kept[0] = self._keep_location(url, buf[i:end])
                        break
                    value = None
                    if end - i <= _LONG_VALUE:  # no str of kilobytes from a server
                        try:
                            value = str(buf[i:end], "utf-8")
                        except UnicodeError:
                            pass
                    if value is None and k == 5:
                        break  # an ETag that is not short text: a validator we cannot use
                    if end - i > _LONG_VALUE:
                        name = _KEPT[k].decode()
                        raise LimitError("%s header over %d bytes" % (name, _LONG_VALUE))
                    if value is None or kept[k] not in (None, value):
                        raise ProtocolError("bad or repeated %s header" % _KEPT[k].decode())
                    kept[k] = value
        return kept

    def _read(self, mv, n):
        # The open response's body into mv (None: discard); see Response.readinto.
        mode = self._mode
        try:
            if mode == _CHUNKED and self._left < 1:
                if not self._left and self._line("chunk end", False):
                    raise ProtocolError("chunk data longer than its size")
                k = self._line("chunk size line", False)
                line = bytes(self._buf[self._at : self._at + k]).split(b";", 1)[0]
                try:
                    size = int(line, 16) if len(line) < 9 else -1
                except ValueError:
                    size = -1
                if size < 0:
                    raise ProtocolError("bad chunk size %r" % line[:20])
                if not size:
                    for _ in range(_MAX_HEADERS):  # trailers, up to the empty line
                        if not self._line("trailer", False):
                            break
                    else:
                        raise LimitError("more than %d trailer lines" % _MAX_HEADERS)
                    self.close(True)
                    return 0
                if self._got + size > self._max:
                    raise LimitError("chunk of %d bytes passes max_bytes %d" % (size, self._max))
                self._left = size
            if mode == _TO_CLOSE:
                # At the cap read one more byte to tell "ended exactly" from "too long".
                n = min(n, max(self._max - self._got, 1))
            elif n > self._left:
                n = self._left
            got = 0
            if n > 0:
                # Pending bytes first, else straight from the socket (mv None: discard).
                avail = self._end - self._pos
                if not avail and mv is not None:
                    got = self._io(mv[:n], False)
                else:
                    if not avail:
                        avail = max(self._fill(), 0)
                    got = min(n, avail)
                    if mv is not None:
                        mv[:got] = self._buf[self._pos : self._pos + got]
                    self._pos += got
            if not got:
                if mode >= _TO_CLOSE or (mode == _LENGTH and not self._left):  # or _NONE
                    self.close(mode != _TO_CLOSE)
                    return 0
                raise NetworkError(
                    "connection closed after %d body bytes (Content-Length %s)"
                    % (self._got, self._resp.length)
                )
            self._got += got
            self._left -= got
            if self._got > self._max:
                raise LimitError("body passes max_bytes %d" % self._max)
            self._slow()
            return got
        except HTTPError:
            self.close()
            raise
