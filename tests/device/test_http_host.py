"""The device HTTP client in the MicroPython unix port against a real `lcm host`.

Over HTTP and HTTPS (trustme EC CA): the idle check (one request, the tag in
the 302), the redirect chain from the browser download URL to a signed asset
URL on another host name (as github.com -> objects.githubusercontent.com),
Range 206 on the signed URL, a download cut or stalled by the host and resumed
with Range, an expired signed URL refused and renewed, and the heap bar: one
64 KB asset through a 2 KB buffer with 24 KB of data heap.
"""

import hashlib
import random
import ssl

import pytest
import trustme

from tests.hostserver import TEST_REPO, github_client, running_host
from tests.test_http_servers import driver_script, parse_lines

PACK = random.Random(7).randbytes(65536)
PACK_SHA = hashlib.sha256(PACK).hexdigest()
TAG = "v1.0.0"


def _publish(host, tmp_path, **kw):
    repo = github_client(host, **kw).get_repo(TEST_REPO)
    rel = repo.create_git_release(TAG, "one", "notes", draft=True)
    path = tmp_path / "pack.lcm"
    path.write_bytes(PACK)
    rel.upload_asset(str(path))
    rel.update_release(name="one", message="notes", draft=False)


@pytest.fixture
def host(tmp_path):
    with running_host(tmp_path, asset_host="localhost") as running:
        _publish(running, tmp_path)
        running.clear_requests()
        yield running


# The small-heap pass runs the client with its code "in ROM" and the pass's heap
# for data (tests/device/conftest.py); HTTPS raises the data heap to TLS_DATA_KB.
TLS_DATA_KB = 40


def run(mpy, body, data_kb=None):
    return mpy.run(
        driver_script(body), heap=f"{data_kb}k" if data_kb else None, timeout=60, rom=True
    )


def _download(web):
    return f"{web}/{TEST_REPO}/releases/download/{TAG}/pack.lcm"


def test_idle_check_is_one_small_request_with_the_tag(mpy, host):
    proc = run(
        mpy,
        f"""
c = Client(BUF, timeout_ms=5000)
r = c.get("{host.url}/{TEST_REPO}/releases/latest", follow=False)
print("IDLE", r.status, r.location, c.requests, c.connections, c.bytes_in)
r.close()
""",
    )
    fields = parse_lines(proc.stdout)[0]
    assert fields[:3] == ["IDLE", "302", f"{host.url}/{TEST_REPO}/releases/tag/{TAG}"], proc.stdout
    assert fields[3:5] == ["1", "1"], proc.stdout
    # The bar: an idle check costs at most 2 KB received.
    assert 0 < int(fields[5]) <= 2048, proc.stdout
    assert [(r.path, r.status) for r in host.requests] == [(f"/{TEST_REPO}/releases/latest", 302)]


def test_redirect_chain_to_the_signed_asset_url_and_range(mpy, host):
    proc = run(
        mpy,
        f"""
c = Client(BUF, timeout_ms=5000)
r = c.get("{_download(host.url)}", max_bytes=65536)
print("URL", bytes(r.url).decode())  # a long URL: a memoryview of the client's URL slot
r.close()
fetch(c, "{_download(host.url)}", max_bytes=65536)
fetch(c, "{_download(host.url)}", start=1000, end=1999)
fetch(c, "{_download(host.url)}", start=65000)
print("STATS", c.requests, c.connections)
""",
    )
    lines = parse_lines(proc.stdout)
    signed = lines[0][1]
    assert signed.startswith(f"http://localhost:{host.port}/api/objects/"), proc.stdout
    assert "sig=" in signed and "expires=" in signed
    assert lines[1][:4] == ["OK", "200", "65536", PACK_SHA], proc.stdout
    assert lines[2] == [
        "OK",
        "206",
        "1000",
        hashlib.sha256(PACK[1000:2000]).hexdigest(),
        "1000",
        "65536",
        "None",
    ], proc.stdout
    assert lines[3][:6] == [
        "OK",
        "206",
        "536",
        hashlib.sha256(PACK[65000:]).hexdigest(),
        "65000",
        "65536",
    ], proc.stdout
    # Two requests per download (302 then the asset). Connections: the web name
    # and the asset name each stay alive (a new one when the name changes).
    assert lines[4][1] == "8", proc.stdout
    assert [r.status for r in host.requests].count(302) == 4


RESUME = """
import hashlib
from lcm_device.http import NetworkError, StalledError
c = Client(BUF, timeout_ms=800)
h = hashlib.sha256()
n = 0
for attempt in range(3):
    try:
        r = c.get(URL, start=n or None, max_bytes=65536)
        while True:
            k = r.readinto(data)
            if not k:
                break
            h.update(data[:k])
            n += k
        break
    except (NetworkError, StalledError) as e:
        print("CUT", type(e).__name__, n, e)
print("DONE", n, h.digest() == EXPECTED)
"""


@pytest.mark.parametrize(
    ("fault", "error", "words"),
    [
        ("drop_download", "NetworkError", "connection closed after"),
        ("stall_download", "StalledError", "read from localhost timed out"),
    ],
)
def test_a_cut_or_stalled_download_resumes_with_range(mpy, host, fault, error, words):
    host.inject_fault(fault, 1)
    body = RESUME.replace("URL", repr(_download(host.url))).replace(
        "EXPECTED", repr(hashlib.sha256(PACK).digest())
    )
    proc = run(mpy, body)
    lines = parse_lines(proc.stdout)
    assert lines[0][:2] == ["CUT", error], proc.stdout
    assert words in proc.stdout
    cut = int(lines[0][2])
    assert 0 < cut < len(PACK)
    assert lines[1] == ["DONE", "65536", "True"], proc.stdout
    # The resume asked for the rest only.
    assert any(r.status == 206 for r in host.requests)


def test_an_expired_signed_url_is_refused_then_renewed(mpy, host):
    first = run(
        mpy,
        f"""
from lcm_device.http import join_url
c = Client(BUF, timeout_ms=5000)
r = c.get("{_download(host.url)}", follow=False)
print(bytes(join_url(r.url, r.location)).decode())
r.close()
""",
    )
    signed = first.stdout.strip()
    host.expire_signed_urls()
    proc = run(
        mpy,
        f"""
from lcm_device.http import StatusError
c = Client(BUF, timeout_ms=5000)
try:
    c.get("{signed}", start=0, end=99)
except StatusError as e:
    print("REFUSED", e.status)
fetch(c, "{_download(host.url)}", start=0, end=99)
""",
    )
    lines = parse_lines(proc.stdout)
    assert lines[0] == ["REFUSED", "403"], proc.stdout
    assert lines[1][:4] == ["OK", "206", "100", hashlib.sha256(PACK[:100]).hexdigest()]


def test_one_64k_asset_through_a_2k_buffer_in_24k_of_data_heap(mpy, host):
    # The heap bar itself, whatever --mpy-heap says: with the code "in ROM", the
    # client, its 2 KB buffer (headers and body share it; a github-length signed
    # URL must fit a header line), its URL slot and a SHA-256 of the 64 KB body
    # in 24 KB.
    proc = mpy.run(
        f"""
buf = bytearray(2048)
import hashlib
from lcm_device.http import Client


def main():
    io = memoryview(buf)
    c = Client(io, timeout_ms=5000)
    r = c.get("{_download(host.url)}", max_bytes=65536)
    h = hashlib.sha256()
    n = 0
    while True:
        k = r.readinto(io)
        if not k:
            break
        h.update(io[:k])
        n += k
    print(n, h.digest() == {hashlib.sha256(PACK).digest()!r}, c.requests)


main()
""",
        heap="24k",
        timeout=60,
        rom=True,
    )
    assert proc.stdout.split()[-3:] == ["65536", "True", "2"], proc.stdout


@pytest.fixture
def tls_host(tmp_path):
    ca = trustme.CA(key_type=trustme.KeyType.ECDSA)
    cert = ca.issue_cert("localhost", "127.0.0.1")
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    for pem in cert.cert_chain_pems[1:]:
        pem.write_to_path(str(tmp_path / "cert.pem"), append=True)
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    (tmp_path / "ca.der").write_bytes(ssl.PEM_cert_to_DER_cert(ca.cert_pem.bytes().decode()))
    with running_host(
        tmp_path, tls=(tmp_path / "cert.pem", tmp_path / "key.pem"), asset_host="localhost"
    ) as running:
        _publish(running, tmp_path, verify=str(tmp_path / "ca.pem"))
        running.clear_requests()
        yield running, tmp_path / "ca.der"


def test_https_host_download_with_verified_ec_certificate(mpy, tls_host):
    host, ca = tls_host
    web = host.url.replace("127.0.0.1", "localhost")
    proc = run(
        mpy,
        f"""
ca = open("{ca}", "rb").read()
c = Client(BUF, timeout_ms=5000, ca_ders=[ca])
r = c.get("{web}/{TEST_REPO}/releases/latest", follow=False)
print("IDLE", r.status, r.location, c.bytes_in)
r.close()
fetch(c, "{_download(web)}", max_bytes=65536)
fetch(c, "{_download(web)}", start=60000, end=60999)
print("STATS", c.requests, c.connections, c.verifies_tls)
""",
        data_kb=TLS_DATA_KB,
    )
    lines = parse_lines(proc.stdout)
    assert lines[0][:3] == ["IDLE", "302", f"{web}/{TEST_REPO}/releases/tag/{TAG}"], proc.stdout
    assert int(lines[0][3]) <= 2048
    assert lines[1][:4] == ["OK", "200", "65536", PACK_SHA], proc.stdout
    assert lines[2][:4] == [
        "OK",
        "206",
        "1000",
        hashlib.sha256(PACK[60000:61000]).hexdigest(),
    ], proc.stdout
    # Web and asset names are the same host here: one handshake for all five requests.
    assert lines[3] == ["STATS", "5", "1", "True"], proc.stdout


def test_https_host_refuses_a_client_that_trusts_only_the_old_ca(mpy, tls_host, tmp_path):
    host, ca = tls_host
    old = trustme.CA(key_type=trustme.KeyType.RSA)
    (tmp_path / "old.der").write_bytes(ssl.PEM_cert_to_DER_cert(old.cert_pem.bytes().decode()))
    web = host.url.replace("127.0.0.1", "localhost")
    proc = run(
        mpy,
        f"""
old = open("{tmp_path / "old.der"}", "rb").read()
new = open("{ca}", "rb").read()
c = Client(BUF, timeout_ms=5000, ca_ders=[old])
fetch(c, "{web}/{TEST_REPO}/releases/latest", follow=False)
c = Client(BUF, timeout_ms=5000, ca_ders=[old, new])
fetch(c, "{web}/{TEST_REPO}/releases/latest", follow=False)
""",
        data_kb=TLS_DATA_KB,
    )
    lines = parse_lines(proc.stdout)
    assert lines[0] == [
        "ERR",
        "NetworkError",
        f"TLS with localhost:{host.port} failed: "
        "The certificate is not correctly signed by the trusted CA",
    ], proc.stdout
    assert lines[1][:2] == ["OK", "302"], proc.stdout
    # The refused handshake never reached HTTP: one request recorded, the second client's.
    assert len(host.requests) == 1
