"""A release host whose download URLs redirect to a CDN host, as github.com's do.

The install asks where each asset is served (lcm_device.resolve) on the
connection the tag's request opened, then fetches them in a row from the CDN:
two TLS handshakes, where asking and fetching asset by asset switched hosts
six times (the brief's bar: at most three). A signed URL that expired between
the asking and the fetch is asked for again.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import trustme

from publisher.device.simulate import der_from_pem
from tests.device.enginekit import Repo, app_files, new_device, run, text
from tests.hostserver import running_host, signed_url
from tests.test_http_servers import CLOSE, RawServer, Request, response

TLS_DATA_KB = 40  # as tests/device/test_engine_ca_rotation.py: mbedTLS's heap


def tls_files(tmp_path: Path) -> tuple[tuple[Path, Path], Path, bytes]:
    """A CA and a certificate for both names: the host (127.0.0.1) and its CDN (localhost)."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_pem, key_pem, ca_pem = (tmp_path / f"{x}.pem" for x in ("cert", "key", "ca"))
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_pem))
    cert.private_key_pem.write_to_path(str(key_pem))
    ca.cert_pem.write_to_path(str(ca_pem))
    return (cert_pem, key_pem), ca_pem, der_from_pem(ca_pem.read_bytes())


def download_stored(mpy: Any, root: Path, stored: str, url: str) -> str:
    """lcm_device.fetch.download of certs.sector (browser URL `url`) in MicroPython, as
    lcm_device.resolve leaves an install: the asset's signed URL `stored` kept on flash under
    `root`; the device's output."""
    (root / "lcm/state").mkdir(parents=True, exist_ok=True)
    code = f"""
from lcm_device.fetch import URL_FILE, download
from lcm_device.http import Client
from lcm_sim.unix import UnixHal

class Check:  # what download() uses of an Updater, as lcm_device.resolve left it
    pass

buf = memoryview(bytearray(5120))  # as the engine's: 2 KB HTTP, 2 KB URL slot, 1 KB data
u = Check()
u.hal, u.kind, u.log = UnixHal({str(root)!r}), "app", print
u.slot, u.io = buf[2048:4096], buf[4096:]
u.client = Client(buf[:2048], slot=u.slot, timeout_ms=2000)
u.resolved = " certs.sector"
with open(URL_FILE % (u.hal.root, "app", "certs.sector"), "wb") as f:
    f.write({stored!r}.encode())
print("size", download(u, {url!r}, u.hal.root + "/sector.new", 4096, None)[0])
"""
    return mpy.run(code, rom=True).stdout


def asked(host: Any) -> list[tuple[int, str, int]]:
    """(connection, asset or page, status) of each request the host served."""
    return [(r.connection_id, r.path.rsplit("/", 1)[-1], r.status) for r in host.requests]


def test_an_install_and_an_update_from_a_cdn_take_two_handshakes_each(
    tmp_path: Path, mpy: Any
) -> None:
    tls, ca_pem, der = tls_files(tmp_path)
    with running_host(tmp_path, tls=tls, asset_host="localhost") as host:
        repo = Repo(host, verify=str(ca_pem), cas=[der])
        repo.publish("1.0.0", app_files("1.0.0", n=20))
        state = new_device(tmp_path, mpy, host, repo)
        (state / "lcm/state/certs").mkdir(parents=True)
        (state / "lcm/state/certs/bootstrap.der").write_bytes(der)
        host.clear_requests()
        status = run(state, mpy, data_at_least_kb=TLS_DATA_KB)
        assert status.state["app_tag"] == "v1.0.0", text(status)
        requests = asked(host)
        first = requests[0][0]
        # The tag, then where each asset is (a redirect, or 404: no roll-out), on the
        # first connection; then every asset from the CDN on a second one.
        assert [(page, code) for conn, page, code in requests if conn == first] == [
            ("latest", 302),
            ("certs.sector", 302),
            ("rollout.lcm", 404),
            ("manifest.lcm", 302),
            ("pack.lcm", 302),
        ], requests
        assert [page for conn, page, _ in requests if conn != first] == [
            "certs.sector",
            "manifest.lcm",
            "pack.lcm",
        ], requests
        assert len({conn for conn, _, _ in requests}) == 2, requests
        # The signed URLs kept for the install are gone with it.
        assert not list((state / "lcm/state").glob("*.url"))

        v2 = app_files("1.0.0", n=20)
        v2["lib/m05.py"] += b"# changed\n"
        repo.publish("1.0.1", v2)
        host.clear_requests()
        status = run(state, mpy, data_at_least_kb=TLS_DATA_KB)
        assert status.state["app_tag"] == "v1.0.1", text(status)
        # The sector unchanged: 304 from the CDN; still two handshakes.
        assert ("certs.sector", 304) in [(p, c) for _, p, c in asked(host)], asked(host)
        assert len({conn for conn, _, _ in asked(host)}) == 2, asked(host)


def test_a_download_cut_after_a_redirect_from_its_signed_url_tries_that_url_again(
    tmp_path: Path, mpy: Any
) -> None:
    """The stored signed URL redirects once more to a long URL, which takes its place in
    the client's URL slot; the body is then cut: the retry asks the stored URL again (read
    from flash again), not what the slot holds by then."""
    served = []

    def moved(req: Request) -> list[bytes]:
        return [response(302, b"", [("Location", server.url("/t?" + "b" * 300))])]

    def body(req: Request) -> list[Any]:
        served.append(req.path)
        if len(served) == 1:  # the first answer breaks off: a retry
            return [b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789", CLOSE]
        return [response(200, b"x" * 100)]

    with RawServer({"/s": moved, "/t": body}) as server:
        stored, url = server.url("/s?" + "a" * 400), server.url("/dl/certs.sector")
        out = download_stored(mpy, tmp_path / "device", stored, url)
    assert "size 100" in out, out
    assert [r.path.split("?")[0] for r in server.requests] == ["/s", "/t", "/s", "/t"], out
    assert server.requests[2].path.endswith("a" * 400), server.requests[2].path[:80]


def test_the_pack_keeps_reading_from_where_a_second_redirect_led(tmp_path: Path, mpy: Any) -> None:
    """The pack's download URL redirects to a long signed URL that redirects again to
    another (both kept in the client's URL slot, one replacing the other): the next range
    is asked of the last one, whole, not of what was left of the first in the slot."""
    pack = bytes(range(256)) * 8
    first, last = "/s?" + "a" * 400, "/t?" + "b" * 300

    def ranged_pack(req: Request) -> list[bytes]:
        a, b = (int(x) for x in req.headers["range"].removeprefix("bytes=").split("-"))
        return [response(206, pack[a : b + 1], [("Content-Range", f"bytes {a}-{b}/{len(pack)}")])]

    routes = {
        "/dl/pack.lcm": lambda req: [response(302, b"", [("Location", server.url(first))])],
        "/s": lambda req: [response(302, b"", [("Location", server.url(last))])],
        "/t": ranged_pack,
    }
    with RawServer(routes) as server:
        code = f"""
from lcm_device.fetch import PackStream
from lcm_device.http import Client

buf = memoryview(bytearray(5120))
client = Client(buf[:2048], slot=buf[2048:4096], timeout_ms=2000)
pack = PackStream(client, {server.url("/dl/pack.lcm")!r}, {len(pack)}, 10, print)
got = bytearray()
for start in (0, 1024):  # two ranges: two requests
    pack.open(start, start + 1024)
    while len(got) < start + 1024:
        n = pack.readinto(buf[4096:])
        got += buf[4096 : 4096 + n]
print("sha", __import__("hashlib").sha256(got).digest().hex())
"""
        out = mpy.run(code, rom=True).stdout
    assert "sha " + hashlib.sha256(pack).hexdigest() in out, out
    paths = [r.path for r in server.requests]
    assert paths == ["/dl/pack.lcm", first, last, last], paths


def test_a_signed_url_that_expired_after_the_asking_is_asked_for_again(
    tmp_path: Path, mpy: Any
) -> None:
    with running_host(tmp_path, asset_host="localhost") as host:
        repo = Repo(host)
        repo.publish("1.0.0", app_files("1.0.0", n=2))
        url = f"{host.url}/{repo.name}/releases/download/v1.0.0/certs.sector"
        signed = signed_url(url)
        host.expire_signed_urls()
        host.clear_requests()
        root = tmp_path / "device"
        out = download_stored(mpy, root, signed, url)
    assert "download: asset URL expired (HTTP 403), renewing" in out, out
    assert f"size {len(repo.sector)}" in out, out
    assert [code for _, _, code in asked(host)] == [403, 302, 200], asked(host)
    assert (root / "sector.new").read_bytes() == repo.sector
