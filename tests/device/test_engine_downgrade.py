"""No transport downgrade: from an https web URL, a redirect to http:// is refused with a
named reason (the content would still be verified, but the design promises HTTPS);
`allow_http_redirect: true` in the config allows it, for a LAN mirror that needs it."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import trustme

from publisher.device.simulate import der_from_pem
from tests.device.attackserver import download, point, release_routes
from tests.device.enginekit import Repo, app_files, new_device, run, slot_is_complete, text
from tests.hostserver import running_host
from tests.test_http_servers import RawServer, response

# mbedTLS keeps its context and the CAs in the MicroPython heap (test_engine_ca_rotation.py).
TLS_DATA_KB = 40


def installed_over_tls(tmp_path: Path, mpy: Any) -> tuple[Repo, Path, ssl.SSLContext]:
    """A device running v1.0.0, which trusts a test CA, and a server context of that CA."""
    ca = trustme.CA()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    with running_host(tmp_path) as host:
        repo = Repo(host)
        repo.publish("1.0.0", app_files("1.0.0", n=3))
        state = new_device(tmp_path, mpy, host, repo, http_timeout_ms=1000)
        assert run(state, mpy).state["app_tag"] == "v1.0.0"
    (state / "lcm/state/certs/bootstrap.der").write_bytes(der_from_pem(ca.cert_pem.bytes()))
    return repo, state, ctx


def refused_downgrade(status: Any) -> None:
    """The check refused a redirect to plain HTTP, named it, and the app ran on."""
    out = text(status)
    assert "app: check failed: ProtocolError: redirect from https to" in out, out
    assert "refused (no downgrade)" in out
    assert status.state["app_tag"] == "v1.0.0" and "APP v1.0.0 running" in out


def test_https_to_http_redirect_is_refused(tmp_path: Path, mpy: Any) -> None:
    repo, state, ctx = installed_over_tls(tmp_path, mpy)

    genuine = release_routes(repo, "2.0.0", 2)
    sector = download("v2.0.0", "certs.sector")
    with RawServer(genuine) as plain:
        hostile = dict(genuine)
        hostile[sector] = [response(302, b"", [("Location", plain.url(sector))])]
        with RawServer(hostile, tls=ctx) as server:
            point(state, server.url())
            refused_downgrade(run(state, mpy, data_at_least_kb=TLS_DATA_KB))
            assert slot_is_complete(state, "app0")
            assert not [r for r in plain.requests if r.path == sector]

            # The setting that allows it (a LAN mirror that redirects to plain HTTP).
            point(state, server.url(), allow_http_redirect=True)
            status = run(state, mpy, data_at_least_kb=TLS_DATA_KB)
            assert status.state["app_tag"] == "v2.0.0", text(status)

    # The next genuine release over HTTPS installs with the default (no downgrade).
    with RawServer(release_routes(repo, "3.0.0", 3), tls=ctx) as server:
        point(state, server.url(), allow_http_redirect=None)
        status = run(state, mpy, data_at_least_kb=TLS_DATA_KB)
    assert status.state["app_tag"] == "v3.0.0" and "APP v3.0.0 running" in text(status)


def test_a_signed_url_that_redirects_to_http_is_refused(tmp_path: Path, mpy: Any) -> None:
    """The download URL redirects to a long signed URL (kept in the client's URL slot, as
    GitHub's CDN URLs are), which redirects again, to a long http:// URL: the second
    redirect's Location replaces the first URL in that slot, and the refusal must still see
    where the redirect came from (https)."""
    repo, state, ctx = installed_over_tls(tmp_path, mpy)

    genuine = release_routes(repo, "2.0.0", 2)
    manifest = download("v2.0.0", "manifest.lcm")
    signed = "/cdn/" + "a" * 400 + "/manifest.lcm"  # over 256 bytes: the URL slot
    plain_path = "/plain/" + "b" * 400 + "/manifest.lcm"
    with RawServer({**genuine, plain_path: genuine[manifest]}) as plain:
        hostile = dict(genuine)
        hostile[manifest] = [response(302, b"", [("Location", signed)])]
        hostile[signed] = [response(302, b"", [("Location", plain.url(plain_path))])]
        with RawServer(hostile, tls=ctx) as server:
            point(state, server.url())
            refused_downgrade(run(state, mpy, data_at_least_kb=TLS_DATA_KB))
    assert not [r for r in plain.requests if r.path == plain_path], plain.requests
