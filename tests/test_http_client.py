"""The device HTTP client on CPython: URL handling, and its CPython socket path.

The client is one codebase for both interpreters; on CPython it reads with
blocking sockets and timeouts (MicroPython polls non-blocking ones), and TLS
is CPython's ssl with hostname checking. The MicroPython behaviour is tested
in tests/device/test_http_*.py.
"""

from __future__ import annotations

import hashlib
import random
import ssl
from collections.abc import Iterator

import pytest
import trustme

from lcm_device.http import (
    Client,
    HTTPError,
    LimitError,
    NetworkError,
    ProtocolError,
    StalledError,
    StatusError,
    join_url,
    split_url,
)
from tests.test_http_servers import HANG, RawServer, chunked, response

BODY = random.Random(11).randbytes(3000)


@pytest.mark.parametrize(
    ("url", "parts"),
    [
        ("http://example.com", ("http", "example.com", 80, "/")),
        ("https://EXAMPLE.com/a/b?c=d#frag", ("https", "example.com", 443, "/a/b?c=d")),
        ("HTTPS://h:8443?x=1", ("https", "h", 8443, "/?x=1")),
        ("http://127.0.0.1:1/", ("http", "127.0.0.1", 1, "/")),
    ],
)
def test_split_url(url, parts):
    assert split_url(url) == parts


@pytest.mark.parametrize(
    "url",
    [
        "ftp://h/x",
        "//h/x",
        "http://",
        "http://h:0/",
        "http://h:65536/",
        "http://h:x/",
        "http://u:p@h/",
        "http://[::1]/",
        "http://h/a b",
        "http://h/\r\nX: y",
        "http://h/é",
    ],
)
def test_split_url_refuses(url):
    with pytest.raises(HTTPError):
        split_url(url)


@pytest.mark.parametrize(
    ("location", "resolved"),
    [
        ("https://cdn.example/x?sig=1", "https://cdn.example/x?sig=1"),
        ("//cdn.example/x", "https://cdn.example/x"),
        ("/o/r/releases/tag/v1", "https://h:8443/o/r/releases/tag/v1"),
        ("v2", "https://h:8443/o/r/releases/v2"),
        ("?page=2", "https://h:8443/o/r/releases/latest?page=2"),
        ("/next?u=http://evil/", "https://h:8443/next?u=http://evil/"),
    ],
)
def test_join_url(location, resolved):
    assert join_url("https://h:8443/o/r/releases/latest?q=1", location) == resolved


@pytest.mark.parametrize(
    "location", ["javascript:alert(1)", "ftp://h/x", "mailto:a@b", "h:8080/x", "http:x"]
)
def test_join_url_refuses_another_scheme_instead_of_joining_it_as_a_path(location):
    with pytest.raises(HTTPError, match="unsupported URL"):
        join_url("https://h/o/r/releases/latest", location)


@pytest.mark.parametrize("location", ["a/b:c", "?u=x:y", "#a:b", "v2"])
def test_join_url_joins_a_colon_after_the_first_slash(location):
    assert join_url("https://h/o/", location).startswith("https://h/o/")


def test_join_url_refuses_control_characters():
    with pytest.raises(HTTPError, match="Location has an invalid character"):
        join_url("http://h/", "/a\rb")


def _read(resp) -> bytes:
    out = bytearray()
    buf = memoryview(bytearray(700))
    while n := resp.readinto(buf):
        out += buf[:n]
    return bytes(out)


@pytest.fixture
def server() -> Iterator[RawServer]:
    def ranged(req):
        first, _, last = req.headers["range"].removeprefix("bytes=").partition("-")
        a, b = int(first), int(last or len(BODY) - 1)
        return [response(206, BODY[a : b + 1], [("Content-Range", f"bytes {a}-{b}/{len(BODY)}")])]

    routes = {
        "/plain": [response(200, BODY)],
        "/chunked": [
            response(200, chunked(BODY, 256), [("Transfer-Encoding", "chunked")], length=False)
        ],
        "/moved": [response(301, b"", [("LOCATION", "/plain")])],
        "/range": ranged,
        "/gone": [response(410, b"gone")],
        "/stall": [b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", HANG],
        "/liar": [response(206, b"x" * 10, [("Content-Range", "bytes 0-9/10")])],
        "/big": [response(200, b"x" * 5000)],
    }
    with RawServer(routes) as running:
        yield running


def test_cpython_path_bodies_redirects_ranges_and_keep_alive(server):
    client = Client(bytearray(512), timeout_ms=2000)
    assert _read(client.get(server.url("/plain"))) == BODY
    assert _read(client.get(server.url("/chunked"))) == BODY
    resp = client.get(server.url("/moved"))
    assert resp.url == server.url("/plain") and _read(resp) == BODY
    resp = client.get(server.url("/range"), start=100, end=199)
    assert (resp.status, resp.range_total) == (206, len(BODY))
    assert _read(resp) == BODY[100:200]
    assert (client.requests, client.connections) == (5, 1)
    assert client.bytes_in > 3 * len(BODY)
    assert hashlib.sha256(_read(client.get(server.url("/plain")))).digest() == (
        hashlib.sha256(BODY).digest()
    )
    # close() (the engine's, before a long verify) drops the kept-alive
    # connection: the next get connects again.
    client.close()
    assert _read(client.get(server.url("/plain"))) == BODY
    assert (client.requests, client.connections) == (7, 2)


@pytest.mark.parametrize("status", range(300, 310))
def test_only_the_redirect_statuses_are_followed(status):
    """301, 302, 303, 307 and 308 redirect (http.is_redirect, which fetch and update use
    too); any other 3xx with a Location is an answer the client refuses, not a redirect."""
    routes = {
        "/ask": [response(status, b"", [("Location", "/plain")])],
        "/plain": [response(200, BODY)],
    }
    with RawServer(routes) as running:
        client = Client(bytearray(512), timeout_ms=2000)
        if status in (301, 302, 303, 307, 308):
            assert _read(client.get(running.url("/ask"))) == BODY
            assert client.get(running.url("/ask"), follow=False).status == status
        else:
            with pytest.raises(StatusError, match=f"HTTP {status} from"):
                client.get(running.url("/ask"))


def test_cpython_path_refusals(server):
    client = Client(bytearray(512), timeout_ms=300)
    with pytest.raises(StatusError, match="HTTP 410") as info:
        client.get(server.url("/gone"))
    assert info.value.status == 410 and info.value.retry_after is None
    with pytest.raises(StalledError, match=r"read from 127\.0\.0\.1 timed out"):
        _read(client.get(server.url("/stall")))
    with pytest.raises(ProtocolError, match="206 for range None-None"):
        client.get(server.url("/liar"))
    with pytest.raises(LimitError, match="Content-Length 5000 passes max_bytes 100"):
        client.get(server.url("/big"), max_bytes=100)
    with pytest.raises(LimitError, match="body longer than 64 bytes"):
        client.get(server.url("/plain")).read_all(64)
    # An old Response reads nothing once a newer get() took the connection.
    old = client.get(server.url("/plain"))
    assert _read(client.get(server.url("/chunked"))) == BODY
    assert old.readinto(bytearray(10)) == 0


def test_cpython_connection_refused_is_a_network_error():
    with RawServer({}) as srv:
        port = srv.port
    with pytest.raises(NetworkError, match=f"connect to 127.0.0.1:{port} failed"):
        Client(bytearray(512), timeout_ms=1000).get(f"http://127.0.0.1:{port}/")


def test_cpython_tls_checks_the_ca_and_the_host_name(tmp_path):
    old = trustme.CA(key_type=trustme.KeyType.RSA)
    new = trustme.CA(key_type=trustme.KeyType.ECDSA)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    new.issue_cert("localhost").configure_cert(ctx)

    def der(ca):
        return ssl.PEM_cert_to_DER_cert(ca.cert_pem.bytes().decode())

    with RawServer({"/x": [response(200, b"tls ok")]}, tls=ctx) as srv:
        client = Client(bytearray(512), timeout_ms=3000, ca_ders=[der(old), der(new)])
        assert client.get(srv.url("/x", "localhost")).read_all(64) == b"tls ok"
        assert client.verifies_tls is True
        with pytest.raises(NetworkError, match=r"TLS with 127\.0\.0\.1:\d+ failed"):
            client.get(srv.url("/x", "127.0.0.1"))
        only_old = Client(bytearray(512), timeout_ms=3000, ca_ders=[der(old)])
        with pytest.raises(NetworkError, match="certificate verify failed"):
            only_old.get(srv.url("/x", "localhost"))
        assert srv.sni[:1] == ["localhost"]


def test_close_plain_drops_a_plain_connection_and_keeps_a_tls_one():
    # Called before a signature check (lcm_device.metadata): a plain connection costs a
    # TCP connect to make again, a TLS one a handshake.
    with RawServer({"/x": [response(200, b"one"), response(200, b"two")]}) as srv:
        client = Client(bytearray(512), timeout_ms=3000)
        assert client.get(srv.url("/x")).read_all(64) == b"one"
        client.close_plain()
        assert client.get(srv.url("/x")).read_all(64) == b"one"  # a new connection
        assert (client.requests, client.connections, srv.connections) == (2, 2, 2)
    ca = trustme.CA()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("localhost").configure_cert(ctx)
    der = ssl.PEM_cert_to_DER_cert(ca.cert_pem.bytes().decode())
    with RawServer({"/x": [response(200, b"one"), response(200, b"two")]}, tls=ctx) as srv:
        client = Client(bytearray(512), timeout_ms=3000, ca_ders=[der])
        assert client.get(srv.url("/x", "localhost")).read_all(64) == b"one"
        client.close_plain()
        assert client.get(srv.url("/x", "localhost")).read_all(64) == b"two"  # the same
        assert (client.requests, client.connections, srv.connections) == (2, 1, 1)


def test_github_sized_signed_location_needs_a_2k_buffer():
    # github.com's signed release-asset URLs are 1 to 1.5 KB long.
    signed = "/asset?" + "&".join(f"k{i}=" + "v" * 62 for i in range(20))
    assert 1300 < len(signed) < 1500
    routes = {
        "/download": [response(302, b"", [("Location", signed)])],
        "/asset": [response(200, BODY)],
    }
    with RawServer(routes) as srv:
        resp = Client(bytearray(2048), timeout_ms=2000).get(srv.url("/download"))
        # A long URL stays in the client's URL slot: a memoryview, not a str.
        assert bytes(resp.url) == srv.url(signed).encode() and _read(resp) == BODY
        with pytest.raises(LimitError, match="header line longer than 1024 bytes"):
            Client(bytearray(1024), timeout_ms=2000).get(srv.url("/download"))
        assert srv.requests[1].path == signed
