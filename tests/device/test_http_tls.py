"""HTTPS in the MicroPython unix port (mbedTLS) with certificates from trustme.

What GitHub has changed under hand-written clients before: SNI required, EC
certificates instead of RSA, CA rotation. Here: an EC P-256 CA and an RSA CA,
the SNI name checked on the server side, a client that trusts only the old CA
refused by a server whose certificate comes from the new one (with a clear
error), both trusted during a rotation, a name mismatch refused, and one
handshake for several requests on a kept-alive connection.
"""

import contextlib
import socket
import ssl
import threading

import pytest
import trustme

from tests.test_http_servers import RawServer, driver_script, parse_lines, response

BODY = b"over tls " * 100


def _der(ca: trustme.CA) -> bytes:
    return ssl.PEM_cert_to_DER_cert(ca.cert_pem.bytes().decode())


def _server(ca: trustme.CA, name: str = "localhost") -> RawServer:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert(name).configure_cert(ctx)
    return RawServer({"/asset": [response(200, BODY)], "/small": [response(200, b"ok")]}, tls=ctx)


@pytest.fixture(scope="module")
def cas(tmp_path_factory):
    """The old (RSA) and the new (EC P-256) CA, their DER files for the device."""
    folder = tmp_path_factory.mktemp("cas")
    old = trustme.CA(key_type=trustme.KeyType.RSA)
    new = trustme.CA(key_type=trustme.KeyType.ECDSA)
    (folder / "old.der").write_bytes(_der(old))
    (folder / "new.der").write_bytes(_der(new))
    return old, new, folder


def run(mpy, folder, body):
    # The CA files are read inside main, as the engine reads them from the cert sector.
    prelude = "".join(f'{n} = open("{folder}/{n}.der", "rb").read()\n' for n in ("old", "new"))
    # mbedTLS keeps its context and the parsed CAs in the MicroPython heap: TLS
    # needs more data heap than the 24 KB bar of plain HTTP, so a smaller
    # --mpy-heap is raised to TLS_DATA_KB here instead of failing for lack of it
    # (the code is "in ROM", as for the engine: tests/device/conftest.py).
    proc = mpy.run(driver_script(prelude + body), timeout=60, heap=f"{TLS_DATA_KB}k", rom=True)
    return parse_lines(proc.stdout), proc.stdout


TLS_DATA_KB = 40


def test_ec_and_rsa_certificates_verified_with_sni_and_keep_alive(mpy, cas):
    old, new, folder = cas
    with _server(new) as ec_server, _server(old) as rsa_server:
        lines, out = run(
            mpy,
            folder,
            f"""
c = Client(BUF, timeout_ms=5000, ca_ders=[new])
for _ in range(3):
    fetch(c, "{ec_server.url("/asset", "localhost")}")
print("STATS", c.requests, c.connections, c.verifies_tls)
c.close()
c = Client(BUF, timeout_ms=5000, ca_ders=[old])
fetch(c, "{rsa_server.url("/small", "localhost")}")
""",
        )
        assert ec_server.sni == ["localhost"], ec_server.sni
        assert rsa_server.sni == ["localhost"]
    assert [line[:3] for line in lines[:3]] == [["OK", "200", str(len(BODY))]] * 3, out
    # Three requests, one TLS handshake.
    assert lines[3] == ["STATS", "3", "1", "True"], out
    assert lines[4][:3] == ["OK", "200", "2"], out


def test_ca_rotation_old_ca_refuses_new_certificate_both_accept(mpy, cas):
    _old, new, folder = cas
    with _server(new) as server:
        lines, out = run(
            mpy,
            folder,
            f"""
c = Client(BUF, timeout_ms=5000, ca_ders=[old])
fetch(c, "{server.url("/small", "localhost")}")
c = Client(BUF, timeout_ms=5000, ca_ders=[old, new])
fetch(c, "{server.url("/small", "localhost")}")
""",
        )
    assert lines[0][:2] == ["ERR", "NetworkError"], out
    assert lines[0][2] == (
        f"TLS with localhost:{server.port} failed: "
        "The certificate is not correctly signed by the trusted CA"
    ), out
    assert lines[1][:3] == ["OK", "200", "2"], out


def test_name_mismatch_is_refused_and_no_ca_means_no_verification(mpy, cas):
    _old, new, folder = cas
    with _server(new, name="other.example") as server:
        lines, out = run(
            mpy,
            folder,
            f"""
c = Client(BUF, timeout_ms=5000, ca_ders=[new])
fetch(c, "{server.url("/small", "localhost")}")
c = Client(BUF, timeout_ms=5000)
fetch(c, "{server.url("/small", "localhost")}")
print("VERIFIES", c.verifies_tls)
""",
        )
    assert lines[0][:2] == ["ERR", "NetworkError"], out
    assert "does not match with the expected CN" in lines[0][2], out
    assert lines[1][:3] == ["OK", "200", "2"], out
    assert lines[2] == ["VERIFIES", "False"], out


def test_tls_handshake_stall_and_plain_http_on_an_https_url(mpy, cas):
    _old, _new, folder = cas
    # One TCP server never answers the ClientHello; the other answers in plain
    # HTTP at once and hangs up.
    plain = socket.socket()
    plain.bind(("127.0.0.1", 0))
    plain.listen(4)

    def answer_in_plain_http():
        with contextlib.suppress(OSError):
            conn, _ = plain.accept()
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            conn.close()

    thread = threading.Thread(target=answer_in_plain_http, daemon=True)
    thread.start()
    plain_port = plain.getsockname()[1]
    try:
        with RawServer({}) as silent:
            lines, out = run(
                mpy,
                folder,
                f"""
c = Client(BUF, timeout_ms=800, ca_ders=[new])
fetch(c, "https://127.0.0.1:{silent.port}/")
fetch(c, "https://127.0.0.1:{plain_port}/")
print("STATS", c.connections)
""",
            )
    finally:
        plain.close()
        thread.join(5)
    assert lines[0] == ["ERR", "StalledError", f"TLS with 127.0.0.1:{silent.port} timed out"], out
    assert lines[1][:2] == ["ERR", "NetworkError"], out
    assert lines[1][2].startswith(f"TLS with 127.0.0.1:{plain_port} failed: "), out
    assert lines[2] == ["STATS", "0"], out
