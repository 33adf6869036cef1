"""The device HTTP client against hostile servers, in the MicroPython unix port.

Every case must end in the documented HTTPError subclass with a message naming
what was wrong, never a crash or a hang (the client has short timeouts here and
the run has a process timeout), and the same client must work afterwards.
"""

import contextlib
import socket

import pytest

from tests.test_http_servers import (
    CLOSE,
    HANG,
    Endless,
    RawServer,
    Sleep,
    driver_script,
    parse_lines,
    response,
)

GOOD = b"good body"
HEAD_OK = b"HTTP/1.1 200 OK\r\n"
CHUNKED_HEAD = HEAD_OK + b"Transfer-Encoding: chunked\r\n\r\n"


def _drip_body(req):
    yield HEAD_OK + b"Content-Length: 1000\r\n\r\n"
    for _ in range(200):
        yield b"x"
        yield Sleep(0.1)


def _drip_headers(req):
    yield HEAD_OK
    for i in range(200):
        yield b"X-Slow-%d: 1\r\n" % i
        yield Sleep(0.1)


def _drip_within_a_line(head):
    # Bytes of one line, each just inside the read timeout: no line ever completes.
    def route(req):
        yield head
        for _ in range(200):
            yield b"a"
            yield Sleep(0.1)

    return route


def _range(first, last, total, body=None, length=True):
    def route(req):
        part = body if body is not None else b"r" * (last - first + 1)
        return [
            response(206, part, [("Content-Range", f"bytes {first}-{last}/{total}")], length=length)
        ]

    return route


ROUTES = {
    "/good": [response(200, GOOD)],
    # status line and headers
    "/garbage": [b"HELLO WORLD\r\n\r\n", CLOSE],
    "/garbage-digits": [b"HTTP/1.1 2OO OK\r\nContent-Length: 0\r\n\r\n"],
    "/http2": [b"HTTP/2 200\r\n\r\n", CLOSE],
    "/empty-reply": [CLOSE],
    "/many-headers": [HEAD_OK + b"X-A: b\r\n" * 10000 + b"Content-Length: 0\r\n\r\n"],
    "/long-location": [HEAD_OK + b"Location: /" + b"a" * 4096 + b"\r\nContent-Length: 0\r\n\r\n"],
    "/endless-header": [HEAD_OK + b"X-Big: ", Endless(b"a" * 1000)],
    "/long-status": [b"HTTP/1.1 200 " + b"O" * 4096 + b"\r\n\r\n"],
    "/space-in-name": [HEAD_OK + b"Content Length: 5\r\n\r\nhello"],
    "/no-colon": [HEAD_OK + b"NoColonHere\r\n\r\n"],
    "/obs-fold": [HEAD_OK + b"X-A: b\r\n  folded\r\nContent-Length: 0\r\n\r\n"],
    "/two-lengths": [HEAD_OK + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"],
    "/te-and-length": [HEAD_OK + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"],
    "/gzip-te": [HEAD_OK + b"Transfer-Encoding: gzip, chunked\r\n\r\n"],
    "/bad-length": [HEAD_OK + b"Content-Length: -5\r\n\r\n"],
    "/binary-header": [HEAD_OK + b"Location: \xff\xfe\r\nContent-Length: 0\r\n\r\n"],
    # redirects
    "/loop": [response(302, b"", [("Location", "/loop")])],
    "/no-location": [response(302, b"")],
    "/ftp-location": [response(302, b"", [("Location", "ftp://example.com/x")])],
    "/space-location": [response(302, b"", [("Location", "/a b")])],
    "/userinfo-location": [response(302, b"", [("Location", "http://u:p@127.0.0.1/x")])],
    "/javascript-location": [response(302, b"", [("Location", "javascript:alert(1)")])],
    "/endless-interim": [Endless(b"HTTP/1.1 103 Early Hints\r\n\r\n")],
    "/switching": [b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n", HANG],
    "/host-port-location": [response(302, b"", [("Location", "evil:8080/x")])],
    # ranges
    "/no-range": [response(200, b"r" * 10)],
    "/range-wrong-start": _range(0, 9, 100),
    "/range-wrong-total": _range(0, 99, 50),
    "/range-short-total": _range(90, 99, 200),
    "/range-missing": [response(206, b"r" * 10)],
    "/range-garbage": [response(206, b"r" * 10, [("Content-Range", "bytes=10-19/x")])],
    "/range-length-lie": [
        b"HTTP/1.1 206 X\r\nContent-Range: bytes 10-19/100\r\nContent-Length: 20\r\n\r\n"
        + b"r" * 20
    ],
    "/unasked-206": _range(0, 9, 10),
    "/range-416": [response(416, b"", [("Content-Range", "bytes */10")])],
    # bodies
    "/length-over-max": [HEAD_OK + b"Content-Length: 100000\r\n\r\n", Endless(b"x" * 1000)],
    "/endless": [b"HTTP/1.0 200 OK\r\n\r\n", Endless(b"x" * 1000)],
    "/endless-chunked": [CHUNKED_HEAD, Endless(b"3e8\r\n" + b"x" * 1000 + b"\r\n")],
    "/cut": [HEAD_OK + b"Content-Length: 1000\r\n\r\n" + b"x" * 500, CLOSE],
    # chunking
    "/chunk-too-big": [CHUNKED_HEAD + b"ffffffffff\r\n", HANG],
    "/chunk-bad-hex": [CHUNKED_HEAD + b"zz\r\nxx\r\n0\r\n\r\n"],
    "/chunk-negative": [CHUNKED_HEAD + b"-5\r\nxx\r\n0\r\n\r\n"],
    "/chunk-longer": [CHUNKED_HEAD + b"5\r\n0123456789\r\n0\r\n\r\n"],
    "/chunk-shorter": [CHUNKED_HEAD + b"20\r\n0123456789", CLOSE],
    "/chunk-no-end": [CHUNKED_HEAD + b"5\r\n01234\r\n", CLOSE],
    "/chunk-long-extension": [CHUNKED_HEAD + b"5;x=" + b"y" * 9000 + b"\r\nhello\r\n0\r\n\r\n"],
    "/endless-trailer": [CHUNKED_HEAD + b"0\r\n" + b"X: y\r\n" * 20000 + b"\r\n"],
    # stalls
    "/stall-headers": [HANG],
    "/stall-body": [HEAD_OK + b"Content-Length: 1000\r\n\r\n" + b"x" * 100, HANG],
    "/drip-body": _drip_body,
    "/drip-headers": _drip_headers,
    "/drip-header-line": _drip_within_a_line(HEAD_OK + b"X-Slow: "),
    "/drip-chunk-line": _drip_within_a_line(CHUNKED_HEAD + b"5\r\nhello\r\n"),
}

# (path, get() keywords, error class, words the message must contain)
CASES = [
    ("/garbage", "", "ProtocolError", "garbage status line b'HELLO WORLD'"),
    ("/garbage-digits", "", "ProtocolError", "garbage status line"),
    ("/http2", "", "ProtocolError", "garbage status line b'HTTP/2 200'"),
    ("/empty-reply", "", "NetworkError", "connection closed in the status line"),
    ("/many-headers", "", "LimitError", "more than 64 headers"),
    ("/long-location", "", "LimitError", "header line longer than 2048 bytes"),
    ("/endless-header", "", "LimitError", "header line longer than 8192 bytes"),
    ("/long-status", "", "LimitError", "status line longer than 2048 bytes"),
    ("/space-in-name", "", "ProtocolError", "malformed header b'content Length: 5'"),
    ("/no-colon", "", "ProtocolError", "malformed header b'nocolonhere'"),
    ("/obs-fold", "", "ProtocolError", "malformed header b'  folded'"),
    ("/two-lengths", "", "ProtocolError", "bad or repeated content-length header"),
    ("/te-and-length", "", "ProtocolError", "both Transfer-Encoding and Content-Length"),
    ("/gzip-te", "", "ProtocolError", "unsupported Transfer-Encoding 'gzip, chunked'"),
    ("/bad-length", "", "ProtocolError", "bad Content-Length '-5'"),
    ("/binary-header", "", "ProtocolError", "bad or repeated location header"),
    ("/loop", "", "LimitError", "more than 5 redirects, last to "),
    ("/no-location", "", "ProtocolError", "302 without Location"),
    ("/ftp-location", "", "HTTPError", "unsupported URL 'ftp://example.com/x'"),
    ("/space-location", "", "HTTPError", "Location has an invalid character: '/a b'"),
    ("/userinfo-location", "", "HTTPError", "unsupported URL 'http://u:p@127.0.0.1/x'"),
    ("/javascript-location", "", "HTTPError", "unsupported URL 'javascript:alert(1)'"),
    ("/endless-interim", "", "LimitError", "more than 4 interim (1xx) responses"),
    ("/switching", "", "StatusError", "HTTP 101 from"),
    ("/host-port-location", "", "HTTPError", "unsupported URL 'evil:8080/x'"),
    ("/no-range", "start=10, end=19", "ProtocolError", "got 200 for range 10-19"),
    ("/range-wrong-start", "start=10, end=19", "ProtocolError", "'bytes 0-9/100'"),
    ("/range-wrong-total", "start=0, end=99", "ProtocolError", "'bytes 0-99/50'"),
    ("/range-short-total", "start=90", "ProtocolError", "'bytes 90-99/200'"),
    ("/range-missing", "start=0, end=9", "ProtocolError", "Content-Range ''"),
    ("/range-garbage", "start=10, end=19", "ProtocolError", "'bytes=10-19/x'"),
    ("/range-length-lie", "start=10, end=19", "ProtocolError", "(Content-Length 20)"),
    ("/unasked-206", "", "ProtocolError", "got 206 for range None-None"),
    ("/range-416", "start=10", "StatusError", "HTTP 416 from"),
    ("/length-over-max", "max_bytes=1000", "LimitError", "Content-Length 100000 passes max_bytes"),
    ("/endless", "max_bytes=5000", "LimitError", "body passes max_bytes 5000"),
    ("/endless-chunked", "max_bytes=5000", "LimitError", "chunk of 1000 bytes passes max_bytes"),
    ("/cut", "", "NetworkError", "connection closed after 500 body bytes (Content-Length 1000)"),
    ("/chunk-too-big", "", "ProtocolError", "bad chunk size b'ffffffffff'"),
    ("/chunk-bad-hex", "", "ProtocolError", "bad chunk size b'zz'"),
    ("/chunk-long-extension", "", "LimitError", "chunk size line longer than 2048 bytes"),
    ("/endless-trailer", "", "LimitError", "more than 64 trailer lines"),
    ("/chunk-negative", "", "ProtocolError", "bad chunk size b'-5'"),
    ("/chunk-longer", "", "ProtocolError", "chunk data longer than its size"),
    ("/chunk-shorter", "", "NetworkError", "connection closed after 10 body bytes"),
    ("/chunk-no-end", "", "NetworkError", "connection closed in the chunk size line"),
    ("/stall-headers", "", "StalledError", "read from 127.0.0.1 timed out"),
    ("/stall-body", "", "StalledError", "read from 127.0.0.1 timed out"),
    ("/drip-body", "", "StalledError", "transfer below 256 bytes/s"),
    ("/drip-headers", "", "StalledError", "headers not complete in 600 ms"),
    ("/drip-header-line", "", "StalledError", "headers not complete in 600 ms"),
    ("/drip-chunk-line", "", "StalledError", "transfer below 256 bytes/s (5 bytes in"),
]


@pytest.fixture(scope="module")
def server():
    with RawServer(ROUTES) as running:
        yield running


@pytest.mark.parametrize(("path", "kwargs", "error", "words"), CASES, ids=[c[0] for c in CASES])
def test_hostile_server_is_refused_with_a_named_error(mpy, server, path, kwargs, error, words):
    proc = mpy.run(
        driver_script(
            f"""
c = Client(BUF, timeout_ms=600)
fetch(c, "{server.url(path)}", {kwargs})
fetch(c, "{server.url("/good")}")
"""
        ),
        timeout=60,
        rom=True,
    )
    lines = parse_lines(proc.stdout)
    assert lines[0][:2] == ["ERR", error], proc.stdout
    assert words in lines[0][2], proc.stdout
    # The same client still works: nothing was left half-read on its connection.
    assert lines[1][:3] == ["OK", "200", str(len(GOOD))], proc.stdout


def test_bytes_past_content_length_are_never_delivered_nor_reused(mpy):
    routes = {"/extra": [response(200, b"0123456789") + b"EXTRA BYTES"], "/good": ROUTES["/good"]}
    with RawServer(routes) as srv:
        proc = mpy.run(
            driver_script(
                f"""
c = Client(BUF, timeout_ms=600)
fetch(c, "{srv.url("/extra")}")
fetch(c, "{srv.url("/good")}")
print("STATS", c.requests, c.connections)
"""
            ),
            timeout=60,
            rom=True,
        )
    lines = parse_lines(proc.stdout)
    assert lines[0][:3] == ["OK", "200", "10"], proc.stdout
    assert lines[1][:3] == ["OK", "200", str(len(GOOD))], proc.stdout
    # The junk after the first body made the connection unusable: a new one.
    assert lines[2] == ["STATS", "2", "2"], proc.stdout


def test_bad_arguments_are_refused_before_any_request(mpy):
    proc = mpy.run(
        driver_script(
            """
c = Client(BUF, timeout_ms=600)
for url, kw in (("ftp://host/x", {}), ("http://", {}), ("http://h:99999/", {}),
                ("http://h/a b", {}), ("http://h/", {"start": 5, "end": 1}),
                ("http://h/", {"end": 5}), ("http://h/", {"headers": {"X": "a\\r\\nB: c"}})):
    fetch(c, url, **kw)
print("STATS", c.requests, c.connections)
"""
        ),
        timeout=60,
        rom=True,
    )
    lines = parse_lines(proc.stdout)
    assert [line[:2] for line in lines[:7]] == [["ERR", "HTTPError"]] * 7, proc.stdout
    assert "unsupported URL 'ftp://host/x'" in lines[0][2]
    assert "unsupported URL 'http://h:99999/'" in lines[2][2]
    assert "URL has an invalid character" in lines[3][2]
    assert "bad byte range 5-1" in lines[4][2]
    assert "bad byte range None-5" in lines[5][2]
    assert "X has an invalid character" in lines[6][2]
    assert lines[7] == ["STATS", "0", "0"], proc.stdout


def test_connect_refused_and_connect_timeout(mpy):
    # A listener that never accepts, its backlog full: further SYNs go unanswered.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    silent_port = listener.getsockname()[1]
    filler = []
    for _ in range(3):
        sock = socket.socket()
        sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            sock.connect(listener.getsockname())
        filler.append(sock)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    refused_port = closed.getsockname()[1]
    closed.close()
    try:
        proc = mpy.run(
            driver_script(
                f"""
c = Client(BUF, timeout_ms=500)
fetch(c, "http://127.0.0.1:{silent_port}/")
fetch(c, "http://127.0.0.1:{refused_port}/")
"""
            ),
            timeout=60,
            rom=True,
        )
    finally:
        for sock in [*filler, listener]:
            sock.close()
    lines = parse_lines(proc.stdout)
    assert lines[0][:2] == ["ERR", "StalledError"], proc.stdout
    assert lines[0][2] == f"connect to 127.0.0.1:{silent_port} timed out"
    assert lines[1][:2] == ["ERR", "NetworkError"], proc.stdout
    assert lines[1][2].startswith(f"connect to 127.0.0.1:{refused_port} failed: ")


def _byte_in_headers(req):
    # /byte/SHAPE/N: byte N inside a header of the given shape.
    _, _, shape, n = req.path.split("/")
    b = bytes([int(n)])
    long_url = b"http://127.0.0.1:1/" + b"p" * 300
    lines = {
        "long-location": b"Location: " + long_url + b + b"q",
        "long-relative": b"Location: " + b + b"p" * 300,
        "location": b"Location: http://127.0.0.1:1/" + b,
        "etag": b'ETag: "' + b + b'"',
        "long-etag": b'ETag: "' + b * 300 + b'"',
        "length": b"Content-Length: 1" + b,
        "name": b"X-" + b + b": 1",
    }
    return [b"HTTP/1.1 302 Found\r\n" + lines[shape] + b"\r\nContent-Length: 0\r\n\r\n"]


BYTE_SHAPES = ("long-location", "long-relative", "location", "etag", "long-etag", "length", "name")


def test_every_byte_in_a_header_is_a_named_http_error(mpy):
    """Whatever byte a server puts in a header, the client answers with a response or an
    HTTPError subclass: never UnicodeError, MemoryError or another crash."""
    with RawServer(
        {f"/byte/{s}/{n}": _byte_in_headers for s in BYTE_SHAPES for n in range(256)}
    ) as srv:
        proc = mpy.run(
            driver_script(
                f"""
c = Client(BUF, timeout_ms=2000)
for shape in {BYTE_SHAPES!r}:
    for n in range(256):
        try:
            r = c.get("{srv.url()}/byte/" + shape + "/" + str(n), follow=False)
            r.close()
            print("OK", shape, n)
        except HTTPError as e:
            print("ERR", type(e).__name__, shape, n)
"""
            ),
            rom=True,
        )
    lines = parse_lines(proc.stdout)
    assert len(lines) == 256 * len(BYTE_SHAPES), proc.stdout[-2000:] + proc.stderr
    kinds = {line[1] for line in lines if line[0] == "ERR"}
    assert kinds <= {"ProtocolError", "LimitError", "HTTPError"}, kinds
