"""What one client may hold of `lcm host` (publisher/host/limits.py), attacked over real sockets.

A slowloris client (a byte at a time, never finishing its headers), a client that
connects and says nothing (also before a TLS handshake), and one address opening
more connections than it may: each is cut or refused while other clients are
served. The limits are shortened here so that the tests take seconds; the rules
are the same at the defaults (120 s idle, 30 s for a request's headers, 64
connections per address).
"""

from __future__ import annotations

import gc
import http.client
import json
import logging
import socket
import ssl
import time
from pathlib import Path

import pytest
import trustme

from publisher.host import server
from publisher.host.limits import ConnectionLimits
from tests.hostserver import running_host

SHORT = ConnectionLimits(idle_s=1.5, header_s=1.0, per_ip=3, retry_after_s=7)
# Far above the limits: reaching it means the host did not cut the connection.
NEVER_S = 15.0


def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection(
        ("127.0.0.1", port), timeout=NEVER_S, source_address=(source, 0)
    )
    return sock


def closed_after(sock: socket.socket, trickle: bytes = b"") -> float:
    """Seconds until the host closes `sock`, sending `trickle` a byte every 0.2 s meanwhile."""
    start = time.monotonic()
    sock.settimeout(0.2)
    i = 0
    while time.monotonic() - start < NEVER_S:
        if i < len(trickle):
            try:
                sock.sendall(trickle[i : i + 1])
            except OSError:
                return time.monotonic() - start
            i += 1
        try:
            if sock.recv(4096) == b"":
                return time.monotonic() - start
        except TimeoutError:
            continue
        except OSError:
            return time.monotonic() - start
    raise AssertionError(f"the host kept the connection {NEVER_S} s")


def served(port: int, source: str = "127.0.0.1") -> int:
    conn = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=NEVER_S, source_address=(source, 0)
    )
    try:
        conn.request("GET", "/api/v3/")
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


POST_BODY = b'{"query": "query { viewer { login } }"}'
POST_HEAD = (
    b"POST /api/graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n" % len(POST_BODY)
)


def send_slowly(sock: socket.socket, body: bytes) -> None:
    """`body` in pieces of 4 bytes, 0.25 s apart: 2.5 s in all, never a second idle."""
    for i in range(0, len(body), 4):
        time.sleep(0.25)
        sock.sendall(body[i : i + 4])


def tls_files(tmp_path: Path) -> tuple[trustme.CA, tuple[Path, Path]]:
    """A CA and the host's certificate chain and key, signed by it, for 127.0.0.1."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_pem, key_pem = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_pem))
    cert.private_key_pem.write_to_path(str(key_pem))
    return ca, (cert_pem, key_pem)


def trusted_get(host, ca: trustme.CA) -> int:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    conn = http.client.HTTPSConnection("127.0.0.1", host.port, timeout=NEVER_S, context=context)
    try:
        conn.request("GET", "/api/v3/")
        return conn.getresponse().status
    finally:
        conn.close()


def test_a_request_trickled_a_byte_at_a_time_is_cut_at_the_header_deadline(tmp_path):
    with running_host(tmp_path, limits=SHORT) as host:
        sock = connect(host.port)
        # Each byte comes well within idle_s of the last: only the deadline cuts it.
        endless = b"GET /api/v3/ HTTP/1.1\r\nX-Pad: " + b"a" * 200
        took = closed_after(sock, endless)
        assert SHORT.header_s <= took < SHORT.header_s + 2.0
        sock.close()
        assert served(host.port) == 200  # the host serves on


def test_a_connection_that_says_nothing_is_closed_after_the_idle_time(tmp_path):
    with running_host(tmp_path, limits=SHORT) as host:
        idle = connect(host.port)
        assert served(host.port) == 200  # meanwhile another client is served
        took = closed_after(idle)
        assert took < SHORT.idle_s + 2.0
        idle.close()


def test_a_kept_alive_connection_gets_the_idle_time_again_after_each_answer(tmp_path):
    with running_host(tmp_path, limits=SHORT) as host:
        conn = http.client.HTTPConnection("127.0.0.1", host.port, timeout=NEVER_S)
        for _ in range(3):
            # Longer in all than one idle time, each wait shorter: still one connection.
            time.sleep(SHORT.idle_s / 2)
            conn.request("GET", "/api/v3/")
            response = conn.getresponse()
            response.read()
            assert response.status == 200
        assert len({r.connection_id for r in host.requests}) == 1
        conn.close()


def test_a_slow_body_is_read_to_its_end_past_the_header_deadline(tmp_path):
    with running_host(tmp_path, limits=SHORT) as host:
        sock = connect(host.port)
        sock.sendall(POST_HEAD)
        start = time.monotonic()
        send_slowly(sock, POST_BODY)
        answer = sock.recv(4096)
        assert time.monotonic() - start > SHORT.header_s
        assert answer.startswith(b"HTTP/1.1 401 ")  # answered (no token), not cut
        sock.close()


def test_an_address_over_its_connections_is_answered_503_and_others_are_served(tmp_path):
    logged: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: logged.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("lcm.host").addHandler(handler)  # `lcm host` may have stopped propagation
    try:
        with running_host(tmp_path, limits=ConnectionLimits(per_ip=3, retry_after_s=7)) as host:
            held = [connect(host.port, "127.0.0.2") for _ in range(3)]
            time.sleep(0.3)  # each accepted and counted
            extra = connect(host.port, "127.0.0.2")
            extra.sendall(b"GET /api/v3/ HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = extra.makefile("rb").read()  # the host closes after its answer
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 503 ")
            assert b"\r\nRetry-After: 7\r\n" in head
            assert json.loads(body)["message"] == (
                "too many connections from 127.0.0.2 at once (at most 3); retry later"
            )
            assert logged == ["127.0.0.2: more than 3 connections at once: refusing the others"]
            extra.close()
            assert served(host.port, "127.0.0.1") == 200  # another address is not held up
            held.pop().close()
            time.sleep(0.3)  # the host sees the close
            assert served(host.port, "127.0.0.2") == 200
            for sock in held:
                sock.close()
    finally:
        logging.getLogger("lcm.host").removeHandler(handler)


def test_a_tls_client_that_never_finishes_its_handshake_is_cut(tmp_path: Path):
    ca, tls = tls_files(tmp_path)
    limits = ConnectionLimits(idle_s=30.0, header_s=1.0)
    with running_host(tmp_path, tls=tls, limits=limits) as host:
        silent = connect(host.port)
        # A ClientHello's first bytes, then nothing, within the idle time of each read.
        took = closed_after(silent, b"\x16\x03\x01\x02\x00\x01")
        assert took < limits.header_s + 2.0
        silent.close()
        assert trusted_get(host, ca) == 200


def test_a_tls_address_over_its_connections_is_closed_at_once(tmp_path: Path):
    """Over TLS a 503 needs a handshake, and a silent handshake held a thread and a file
    descriptor for header_s each: one address held any number of them (found from outside
    with 1100 silent connections). Over the limit, a TLS connection is now closed at once."""
    ca, tls = tls_files(tmp_path)
    limits = ConnectionLimits(idle_s=30.0, header_s=10.0, per_ip=3)
    with running_host(tmp_path, tls=tls, limits=limits) as host:
        held = [connect(host.port) for _ in range(3)]
        time.sleep(0.3)  # each accepted and counted
        extra = [connect(host.port) for _ in range(20)]
        for sock in extra:
            assert closed_after(sock) < limits.header_s / 2
            sock.close()
        for sock in held:
            sock.close()
        time.sleep(0.3)
        assert trusted_get(host, ca) == 200


@pytest.mark.parametrize("ending", ["Connection: close", "idle"])
def test_a_tls_connection_is_closed_when_its_handler_ends(tmp_path: Path, ending: str):
    """The TLS wrapper detaches the accepted socket, which is the one socketserver closes:
    a `Connection: close` answer (as mip's `requests` reads to the end) and an idle
    kept-alive connection stayed open until the garbage collector freed the handler."""
    ca, tls = tls_files(tmp_path)
    limits = ConnectionLimits(idle_s=1.5, header_s=1.0)
    context = ssl.create_default_context()
    ca.configure_trust(context)
    gc.disable()  # as between two of the collector's runs on a busy host
    try:
        with running_host(tmp_path, tls=tls, limits=limits) as host:
            sock = context.wrap_socket(connect(host.port), server_hostname="127.0.0.1")
            close = "Connection: close\r\n" if ending == "Connection: close" else ""
            sock.sendall(f"GET /api/v3/ HTTP/1.1\r\nHost: x\r\n{close}\r\n".encode())
            assert closed_after(sock) < limits.idle_s + 2.0
            sock.close()
    finally:
        gc.enable()


def test_failed_tls_handshakes_are_not_counted_against_their_address(tmp_path: Path):
    """A client that fails its handshake (it does not trust the certificate, or speaks
    plain HTTP to the TLS port) leaves nothing counted: the address's later clients are
    served (the count used to grow by one per failure, until the address was refused)."""
    ca, tls = tls_files(tmp_path)
    with running_host(tmp_path, tls=tls, limits=ConnectionLimits(per_ip=2)) as host:
        for _ in range(3):
            with connect(host.port) as plain:
                plain.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                closed_after(plain)
            untrusting = ssl.create_default_context()  # not the test CA
            with pytest.raises(ssl.SSLError), connect(host.port) as raw:
                untrusting.wrap_socket(raw, server_hostname="127.0.0.1")
        time.sleep(0.3)
        assert trusted_get(host, ca) == 200


def test_a_pipelined_requests_slow_body_is_read_past_the_header_deadline(tmp_path):
    with running_host(tmp_path, limits=SHORT) as host:
        sock = connect(host.port)
        # A GET and the POST's headers in one segment: the POST's line and headers are
        # read with the GET's, so its body must not inherit a header deadline.
        sock.sendall(b"GET /api/v3/ HTTP/1.1\r\nHost: x\r\n\r\n" + POST_HEAD)
        send_slowly(sock, POST_BODY)
        sock.settimeout(NEVER_S)
        answers = b""
        while answers.count(b"HTTP/1.1 ") < 2:
            data = sock.recv(65536)
            assert data, answers
            answers += data
        assert answers.startswith(b"HTTP/1.1 200 ") and b"HTTP/1.1 401 " in answers
        sock.close()


def test_the_request_log_is_bounded(tmp_path, monkeypatch):
    """Every request was kept in memory for ever, its query included (64 KB request
    lines are accepted): an anonymous client grew the host without bound."""
    monkeypatch.setattr(server, "MAX_RECORDS", 5)
    with running_host(tmp_path) as host:
        for _ in range(12):
            conn = http.client.HTTPConnection("127.0.0.1", host.port, timeout=NEVER_S)
            conn.request("GET", "/api/v3/?x=" + "A" * 60000)
            assert conn.getresponse().status == 200
            conn.close()
        assert 2 <= len(host.requests) <= 5
        assert all(len(r.query) <= server.MAX_RECORDED_CHARS for r in host.requests)
