"""The device HTTP client in the MicroPython unix port: what a correct server gets.

Header case, chunked and Content-Length bodies, bodies to close, redirects
(relative, absolute to another host, scheme-relative), follow=False, Range
206, statuses, keep-alive reuse counted in connections, read_all.
"""

import hashlib
import random

import pytest

from tests.test_http_servers import CLOSE, RawServer, chunked, driver_script, parse_lines, response

BODY = random.Random(4).randbytes(5000)
SHA = hashlib.sha256(BODY).hexdigest()


def _range_route(req):
    spec = req.headers.get("range", "")
    first, _, last = spec.removeprefix("bytes=").partition("-")
    first = int(first)
    last = int(last) if last else len(BODY) - 1
    last = min(last, len(BODY) - 1)
    part = BODY[first : last + 1]
    return [response(206, part, [("Content-Range", f"bytes {first}-{last}/{len(BODY)}")])]


@pytest.fixture
def servers():
    other = RawServer({"/asset": [response(200, BODY)]})
    routes = {
        "/plain": [response(200, BODY, [("Content-Type", "application/octet-stream")])],
        "/chunked": [
            response(200, chunked(BODY, 333), [("Transfer-Encoding", "chunked")], length=False)
        ],
        "/chunked-ext": [
            response(
                200,
                b"a;name=value\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\n",
                [("transfer-encoding", "Chunked")],
                length=False,
            )
        ],
        "/lower": [
            b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\nCONTENT-TYPE: text/x\r\n"
            b'eTaG: "abc"\r\n\r\n' % len(BODY) + BODY
        ],
        "/upper-location": [b"HTTP/1.1 302 Found\r\nLOCATION: /plain\r\nContent-Length: 0\r\n\r\n"],
        "/dir/relative": [response(302, b"moved", [("Location", "target")])],
        "/dir/target": [response(200, BODY)],
        "/other-host": [response(302, b"", [("Location", other.url("/asset", "localhost"))])],
        "/scheme-relative": [response(307, b"", [("Location", f"//localhost:{other.port}/asset")])],
        "/to-close": [b"HTTP/1.0 200 OK\r\nContent-Type: x\r\n\r\n" + BODY, CLOSE],
        "/latest": [
            response(302, b"<html>redirect</html>", [("Location", "/o/r/releases/tag/v1.2.3")])
        ],
        "/range": _range_route,
        "/github-like": [
            response(
                302,
                b"<html><body>You are being redirected.</body></html>",
                [
                    ("Server", "GitHub.com"),
                    ("Content-Type", "text/html; charset=utf-8"),
                    ("Vary", "X-PJAX, X-PJAX-Container, Turbo-Visit, Turbo-Frame, Accept-Encoding"),
                    ("Location", "https://github.com/o/r/releases/tag/v1.2.3"),
                    ("Cache-Control", "no-cache"),
                    ("Strict-Transport-Security", "max-age=31536000; includeSubdomains; preload"),
                    ("X-Frame-Options", "deny"),
                    ("Referrer-Policy", "no-referrer-when-downgrade"),
                    # Several KB on github.com: longer than the buffer, not kept, skipped.
                    (
                        "Content-Security-Policy",
                        "default-src 'none'; " + "img-src x.example; " * 200,
                    ),
                    ("X-GitHub-Request-Id", "C0DE:1234:5678:9ABC:DEF0"),
                ],
            )
        ],
        "/missing": [response(404, b"not here")],
        "/busy": [response(503, b"later", [("Retry-After", "30")])],
        "/pointer": [response(200, b"v2.0.0-beta.1\n")],
        "/once": [response(200, b"first"), CLOSE],
        "/interim": [
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"
            + response(200, b"after interim")
        ],
        "/empty": [response(204, b"", length=False)],
    }
    main = RawServer(routes)
    yield main, other
    main.close()
    other.close()


def run(mpy, body):
    # The small-heap pass: the code "in ROM", 24 KB for data (tests/device/conftest.py).
    proc = mpy.run(driver_script(body), timeout=60, rom=True)
    return parse_lines(proc.stdout), proc.stdout


def test_bodies_chunked_to_close_and_header_case(mpy, servers):
    main, _ = servers
    lines, out = run(
        mpy,
        f"""
c = Client(BUF, timeout_ms=3000)
for path in ("/plain", "/chunked", "/lower", "/to-close", "/upper-location"):
    fetch(c, "{main.url()}" + path)
fetch(c, "{main.url("/plain")}")
n = c.connections
c.close()  # the kept-alive connection goes (the engine's, before a long verify)
fetch(c, "{main.url("/plain")}")
print("CONNECTIONS", c.connections - n)
""",
    )
    assert lines[-1] == ["CONNECTIONS", "1"], out
    assert len(lines) == 8, out
    for fields in lines[:-1]:
        assert fields[:4] == ["OK", "200", str(len(BODY)), SHA], out


def test_kept_headers_chunk_extensions_trailers_204_and_1xx(mpy, servers):
    main, _ = servers
    lines, out = run(
        mpy,
        f"""
c = Client(BUF, timeout_ms=3000)
r = c.get("{main.url("/lower")}")
print("HDR", r.header("ETag"), r.header("content-type"), r.header("X-Unknown"), r.length)
r.close()
for path in ("/chunked-ext", "/empty", "/interim"):
    fetch(c, "{main.url()}" + path)
""",
    )
    assert lines[0] == ["HDR", '"abc"', "text/x", "None", str(len(BODY))], out
    assert lines[1][:3] == ["OK", "200", "10"], out
    assert lines[2][:3] == ["OK", "204", "0"], out
    # A 1xx before the answer (never asked for: no Expect) is read past (RFC 9110 15.2).
    assert lines[3][:3] == ["OK", "200", str(len(b"after interim"))], out


def test_redirects_relative_absolute_and_scheme_relative(mpy, servers):
    main, other = servers
    lines, out = run(
        mpy,
        f"""
c = Client(BUF, timeout_ms=3000)
for path in ("/dir/relative", "/other-host", "/scheme-relative"):
    fetch(c, "{main.url()}" + path)
    print("URL", c._resp is None, c.requests)
r = c.get("{main.url("/dir/relative")}")
print("FINAL", r.status, r.url)
r.close()
""",
    )
    assert lines[0][:4] == ["OK", "200", str(len(BODY)), SHA], out
    assert lines[2][:4] == ["OK", "200", str(len(BODY)), SHA], out
    assert lines[4][:4] == ["OK", "200", str(len(BODY)), SHA], out
    # Two requests per redirect: the 3xx and the target.
    assert [line[2] for line in lines[1:6:2]] == ["2", "4", "6"], out
    assert lines[6] == ["FINAL", "200", main.url("/dir/target")], out
    assert [r.path for r in other.requests] == ["/asset", "/asset"]
    assert all(r.headers["host"] == f"localhost:{other.port}" for r in other.requests)


def test_long_unkept_headers_are_skipped_with_a_small_buffer(mpy, servers):
    main, _ = servers
    lines, out = run(
        mpy,
        f"""
c = Client(memoryview(BUF)[:512], timeout_ms=3000)
r = c.get("{main.url("/github-like")}", follow=False)
print("LOC", r.status, r.location, r.header("content-type").split(";")[0])
r.close()
fetch(c, "{main.url("/plain")}")
print("STATS", c.requests, c.connections)
""",
    )
    assert lines[0] == ["LOC", "302", "https://github.com/o/r/releases/tag/v1.2.3", "text/html"], (
        out
    )
    assert lines[1][:4] == ["OK", "200", str(len(BODY)), SHA], out
    assert lines[2] == ["STATS", "2", "1"], out


def test_follow_false_returns_the_redirect_with_its_location(mpy, servers):
    main, _ = servers
    lines, out = run(
        mpy,
        f"""
c = Client(memoryview(BUF)[:512], timeout_ms=3000)
fetch(c, "{main.url("/latest")}", follow=False)
print("STATS", c.requests, c.connections)
""",
    )
    assert lines[0][:3] == ["OK", "302", "21"], out
    assert lines[0][-1] == "/o/r/releases/tag/v1.2.3", out
    assert lines[1] == ["STATS", "1", "1"], out
    assert main.requests[0].method == "GET" and main.requests[0].headers["user-agent"] == "lcm"


def test_range_requests_get_exactly_the_bytes_asked(mpy, servers):
    main, _ = servers
    lines, out = run(
        mpy,
        f"""
c = Client(BUF, timeout_ms=3000)
fetch(c, "{main.url("/range")}", start=100, end=1099)
fetch(c, "{main.url("/range")}", start=4000)
fetch(c, "{main.url("/range")}", start=4990, end=99999)
""",
    )
    assert lines[0] == [
        "OK",
        "206",
        "1000",
        hashlib.sha256(BODY[100:1100]).hexdigest(),
        "100",
        str(len(BODY)),
        "None",
    ], out
    assert lines[1][:6] == [
        "OK",
        "206",
        "1000",
        hashlib.sha256(BODY[4000:]).hexdigest(),
        "4000",
        "5000",
    ], out
    assert lines[2][:3] == ["OK", "206", "10"], out
    assert [r.headers["range"] for r in main.requests] == [
        "bytes=100-1099",
        "bytes=4000-",
        "bytes=4990-99999",
    ]


def test_statuses_are_refused_with_the_status(mpy, servers):
    main, _ = servers
    lines, out = run(
        mpy,
        f"""
from lcm_device.http import StatusError
c = Client(BUF, timeout_ms=3000)
for path in ("/missing", "/busy"):
    try:
        c.get("{main.url()}" + path)
    except StatusError as e:
        print("STATUS", e.status, e.retry_after, e)
""",
    )
    assert lines[0][:3] == ["STATUS", "404", "None"], out
    assert lines[1][:3] == ["STATUS", "503", "30"], out
    assert "HTTP 503 from " + main.url("/busy") in out


def test_keep_alive_reuses_one_connection(mpy, servers):
    main, _ = servers
    lines, out = run(
        mpy,
        f"""
c = Client(BUF, timeout_ms=3000)
for path in ("/plain", "/chunked", "/lower", "/range", "/upper-location", "/missing"):
    fetch(c, "{main.url()}" + path, start=0 if path == "/range" else None)
print("STATS", c.requests, c.connections, c.bytes_in)
""",
    )
    # Seven requests (one redirect), the 404 drained: one connection throughout.
    assert lines[-1][:3] == ["STATS", "7", "1"], out
    assert int(lines[-1][3]) > 5 * len(BODY)
    assert main.connections == 1


def test_read_all_and_a_new_connection_when_the_server_closed_it(mpy, servers):
    main, _ = servers
    lines, out = run(
        mpy,
        f"""
c = Client(BUF, timeout_ms=3000)
print("PTR", c.get("{main.url("/pointer")}").read_all(64))
fetch(c, "{main.url("/once")}")
fetch(c, "{main.url("/plain")}")
print("STATS", c.requests, c.connections)
""",
    )
    assert lines[0] == ["PTR", "b'v2.0.0-beta.1\\n'"], out
    # /once closed the connection after its answer: /plain needed a fresh one.
    assert lines[-1] == ["STATS", "3", "2"], out


def test_read_all_refuses_a_long_body(mpy, servers):
    main, _ = servers
    lines, out = run(
        mpy,
        f"""
from lcm_device.http import LimitError
c = Client(BUF, timeout_ms=3000)
for path in ("/plain", "/chunked", "/to-close"):
    try:
        c.get("{main.url()}" + path).read_all(64)
    except LimitError as e:
        print("LIMIT", e)
""",
    )
    assert [line[0] for line in lines] == ["LIMIT"] * 3, out
    assert "body longer than 64 bytes" in out
