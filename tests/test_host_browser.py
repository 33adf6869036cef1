"""`lcm host` browser URLs and HTTP details, with a plain `http.client` as devices use it."""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import socket
import ssl
from pathlib import Path

import pytest
import trustme
from hypothesis import given, settings
from hypothesis import strategies as st

from publisher.host.server import start_host
from publisher.host.urlsign import UrlSigner
from tests.hostserver import TEST_REPO, TEST_TOKEN, github_client, running_host

PACK = bytes(range(256)) * 40  # 10240 bytes


@pytest.fixture
def host(tmp_path: Path):
    with running_host(tmp_path) as running:
        yield running


def publish(host, tag: str, assets: dict[str, bytes], **kw):
    repo = github_client(host).get_repo(TEST_REPO)
    rel = repo.create_git_release(tag, tag, "", draft=True, prerelease=kw.get("prerelease", False))
    for name, data in assets.items():
        rel.upload_asset_from_memory(io.BytesIO(data), len(data), name)
    if kw.get("draft"):
        return rel
    return rel.update_release(tag, "", draft=False, prerelease=kw.get("prerelease", False))


class Client:
    """One kept-alive connection, as a device holds it."""

    def __init__(self, host, **kw) -> None:
        self.host = host
        if host.url.startswith("https"):
            self.conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                "127.0.0.1", host.port, timeout=30, **kw
            )
        else:
            self.conn = http.client.HTTPConnection("127.0.0.1", host.port, timeout=30)

    def get(self, target: str, method: str = "GET", **headers: str):
        if target.startswith(self.host.url):
            target = target[len(self.host.url) :]
        self.conn.request(
            method, target, headers={k.replace("_", "-"): v for k, v in headers.items()}
        )
        response = self.conn.getresponse()
        return response, response.read()


def resolve(client: Client, target: str) -> str:
    """Follow the redirect chain to the signed asset URL."""
    response, _ = client.get(target)
    while response.status == 302:
        target = response.getheader("Location")
        if "/api/objects/" in target:
            return target
        response, _ = client.get(target)
    raise AssertionError(f"no signed URL: {response.status}")


def test_redirect_chain_to_a_signed_asset_url(host):
    publish(host, "v1.0.0", {"pack.lcm": PACK})
    client = Client(host)
    response, body = client.get(f"/{TEST_REPO}/releases/latest")
    assert response.status == 302 and body == b""
    assert response.getheader("Location") == f"{host.url}/{TEST_REPO}/releases/tag/v1.0.0"
    response, _ = client.get(f"/{TEST_REPO}/releases/latest/download/pack.lcm")
    assert response.status == 302
    download = f"{host.url}/{TEST_REPO}/releases/download/v1.0.0/pack.lcm"
    assert response.getheader("Location") == download
    response, _ = client.get(download)
    assert response.status == 302
    signed = response.getheader("Location")
    assert (
        signed.startswith(f"{host.url}/api/objects/") and "expires=" in signed and "sig=" in signed
    )
    response, body = client.get(signed)
    assert response.status == 200 and body == PACK
    assert response.getheader("Content-Length") == str(len(PACK))
    assert response.getheader("Accept-Ranges") == "bytes"
    assert response.getheader("ETag").startswith('"')
    # The tag page the latest redirect points at exists.
    response, body = client.get(f"/{TEST_REPO}/releases/tag/v1.0.0")
    assert response.status == 200 and b"pack.lcm" in body
    # All of it over one kept-alive connection.
    browser = [r for r in host.requests if not r.path.startswith(("/api/v3", "/api/uploads"))]
    assert len({r.connection_id for r in browser}) == 1


def test_idle_check_is_one_small_request(host):
    publish(host, "v1.0.0", {"pack.lcm": PACK})
    host.clear_requests()
    response, _ = Client(host).get(f"/{TEST_REPO}/releases/latest")
    assert response.status == 302
    [record] = host.requests
    assert record.status == 302 and record.bytes_sent < 400


def test_no_full_release_redirects_to_releases(host):
    client = Client(host)
    response, _ = client.get(f"/{TEST_REPO}/releases/latest")
    assert response.getheader("Location") == f"{host.url}/{TEST_REPO}/releases"
    publish(host, "v1.0.0-beta.1", {"pack.lcm": PACK}, prerelease=True)
    publish(host, "v1.0.0", {"pack.lcm": PACK}, draft=True)
    response, _ = client.get(f"/{TEST_REPO}/releases/latest")
    assert response.status == 302
    assert response.getheader("Location") == f"{host.url}/{TEST_REPO}/releases"
    response, body = client.get(f"/{TEST_REPO}/releases/latest/download/pack.lcm")
    assert response.status == 404 and json.loads(body)["message"] == "Not Found"
    response, body = client.get(f"/{TEST_REPO}/releases")
    assert response.status == 200 and b"v1.0.0-beta.1" in body and b"v1.0.0<" not in body
    # A prerelease is downloadable by its own tag.
    response, _ = client.get(f"/{TEST_REPO}/releases/download/v1.0.0-beta.1/pack.lcm")
    assert response.status == 302


def test_range_requests(host):
    publish(host, "v1.0.0", {"pack.lcm": PACK})
    client = Client(host)
    signed = resolve(client, f"/{TEST_REPO}/releases/latest/download/pack.lcm")
    size = len(PACK)
    response, body = client.get(signed, Range="bytes=100-199")
    assert response.status == 206 and body == PACK[100:200]
    assert response.getheader("Content-Range") == f"bytes 100-199/{size}"
    response, body = client.get(signed, Range="bytes=10000-")
    assert response.status == 206 and body == PACK[10000:]
    response, body = client.get(signed, Range="bytes=-16")
    assert response.status == 206 and body == PACK[-16:]
    response, body = client.get(signed, Range=f"bytes=10200-{size + 500}")
    assert response.status == 206 and body == PACK[10200:]
    response, body = client.get(signed, Range=f"bytes={size}-")
    assert response.status == 416 and "has 10240 bytes" in json.loads(body)["message"]
    assert response.getheader("Content-Range") == f"bytes */{size}"
    # Several ranges or nonsense: the whole asset, as RFC 9110 allows.
    for ignored in ["bytes=0-1,5-6", "items=0-1", "bytes=5-1"]:
        response, body = client.get(signed, Range=ignored)
        assert response.status == 200 and body == PACK, ignored
    # The connection survived all of that.
    assert len({r.connection_id for r in host.requests if r.path.startswith("/api/obj")}) == 1


def test_etag_conditionals_and_head(host):
    publish(host, "v1.0.0", {"pack.lcm": PACK})
    client = Client(host)
    signed = resolve(client, f"/{TEST_REPO}/releases/latest/download/pack.lcm")
    response, _ = client.get(signed, method="HEAD")
    etag = response.getheader("ETag")
    assert response.status == 200 and response.getheader("Content-Length") == str(len(PACK))
    response, body = client.get(signed, If_None_Match=etag)
    assert response.status == 304 and body == b""
    response, body = client.get(signed, Range="bytes=0-9", If_Range=etag)
    assert response.status == 206 and body == PACK[:10]
    # The asset changed since the client's first bytes: it gets the whole new asset.
    response, body = client.get(signed, Range="bytes=0-9", If_Range='"stale"')
    assert response.status == 200 and body == PACK


def test_drafts_are_invisible_anonymously(host):
    publish(host, "v1.0.0", {"pack.lcm": PACK})
    draft = publish(host, "v2.0.0", {"pack.lcm": b"new"}, draft=True)
    untagged = draft.get_assets()[0].browser_download_url
    assert "/download/untagged-" in untagged
    client = Client(host)
    response, _ = client.get(f"/{TEST_REPO}/releases/latest")
    assert response.getheader("Location").endswith("/tag/v1.0.0")
    for target in [
        untagged,
        f"/{TEST_REPO}/releases/download/v2.0.0/pack.lcm",
        f"/{TEST_REPO}/releases/tag/v2.0.0",
        draft.html_url,
    ]:
        response, body = client.get(target)
        assert response.status == 404, target
        assert json.loads(body)["message"] == "Not Found"
    # The maintainer (with the token) can fetch a draft's asset through its untagged link.
    response, _ = client.get(untagged, Authorization="token " + TEST_TOKEN)
    assert response.status == 302
    response, body = client.get(response.getheader("Location"))
    assert body == b"new"


def test_half_uploaded_assets_are_not_served(host):
    rel = publish(host, "v1.0.0", {"pack.lcm": PACK})
    host.inject_fault("drop_upload")
    partial = github_client(host, retry=None).get_repo(TEST_REPO).get_release(rel.id)
    with pytest.raises(Exception):  # noqa: B017 (connection cut mid-upload)
        partial.upload_asset_from_memory(io.BytesIO(b"m" * 5000), 5000, "manifest.lcm")
    response, _ = Client(host).get(f"/{TEST_REPO}/releases/download/v1.0.0/manifest.lcm")
    assert response.status == 404


def test_rate_limit_on_anonymous_api_only(tmp_path):
    with running_host(tmp_path, rate_limit=3) as host:
        publish(host, "v1.0.0", {"pack.lcm": PACK})
        client = Client(host)
        remaining = []
        for _ in range(3):
            response, _ = client.get(f"/api/v3/repos/{TEST_REPO}/releases/latest")
            assert response.status == 200
            assert response.getheader("X-RateLimit-Limit") == "3"
            assert int(response.getheader("X-RateLimit-Reset")) > 0
            remaining.append(response.getheader("X-RateLimit-Remaining"))
        assert remaining == ["2", "1", "0"]
        response, body = client.get(f"/api/v3/repos/{TEST_REPO}")
        assert response.status == 403
        assert response.getheader("X-RateLimit-Remaining") == "0"
        error = json.loads(body)
        assert error["message"].startswith("API rate limit exceeded for 127.0.0.1.")
        assert "rate-limit" in error["documentation_url"]
        # /rate_limit itself does not count and reports the state.
        response, body = client.get("/api/v3/rate_limit")
        assert response.status == 200 and json.loads(body)["rate"]["remaining"] == 0
        # Browser URLs and signed downloads are not limited.
        for _ in range(5):
            signed = resolve(client, f"/{TEST_REPO}/releases/latest/download/pack.lcm")
            response, body = client.get(signed)
            assert response.status == 200 and body == PACK
            assert response.getheader("X-RateLimit-Limit") is None
        # With the token the API still answers.
        response, _ = client.get(f"/api/v3/repos/{TEST_REPO}", Authorization="token " + TEST_TOKEN)
        assert response.status == 200
        assert response.getheader("X-RateLimit-Limit") == "5000"


def test_expired_or_forged_signed_urls_are_refused(host):
    publish(host, "v1.0.0", {"pack.lcm": PACK})
    client = Client(host)
    signed = resolve(client, f"/{TEST_REPO}/releases/latest/download/pack.lcm")
    sig = signed.split("&sig=")[1].split("&")[0]
    forged = signed.replace(sig, sig[:-4] + ("0000" if not sig.endswith("0000") else "1111"))
    response, body = client.get(forged)
    assert response.status == 403 and "does not match" in json.loads(body)["message"]
    response, body = client.get(signed.split("?")[0])
    assert response.status == 403 and "Signed URL required" in json.loads(body)["message"]
    other_asset = signed.replace("/api/objects/", "/api/objects/9")
    response, _ = client.get(other_asset)
    assert response.status == 403
    host.expire_signed_urls()
    response, body = client.get(signed)
    assert response.status == 403 and "expired" in json.loads(body)["message"]
    # Resolving again gives a URL that works.
    fresh = resolve(client, f"/{TEST_REPO}/releases/latest/download/pack.lcm")
    response, body = client.get(fresh)
    assert response.status == 200 and body == PACK


def test_signed_urls_are_as_long_as_githubs(host):
    # github.com's signed asset URLs carry a token of about a kilobyte: clients (a
    # device's HTTP buffer above all) meet URLs that long here too.
    publish(host, "v1.0.0", {"pack.lcm": PACK})
    client = Client(host)
    signed = resolve(client, f"/{TEST_REPO}/releases/latest/download/pack.lcm")
    assert 1200 <= len(signed) <= 1500, len(signed)
    response, body = client.get(signed)
    assert response.status == 200 and body == PACK


def test_signed_urls_expire_with_time():
    from publisher.host.errors import ApiError

    signer = UrlSigner(lifetime=-1)  # already past its expiry when issued
    query = dict(part.split("=") for part in signer.query(7).split("&"))
    with pytest.raises(ApiError) as caught:
        signer.check(7, query["expires"], query["sig"])
    assert caught.value.status == 403 and "expired" in caught.value.message
    fresh = UrlSigner()
    query = dict(part.split("=") for part in fresh.query(7).split("&"))
    fresh.check(7, query["expires"], query["sig"])
    with pytest.raises(ApiError):
        fresh.check(8, query["expires"], query["sig"])


def test_restart_keeps_releases_assets_and_latest(tmp_path):
    data = tmp_path / "data"
    with running_host(tmp_path, data_dir=data) as host:
        first = publish(host, "v1.0.0", {"pack.lcm": PACK, "manifest.lcm": b"m1"})
        publish(host, "v1.1.0-beta.1", {"pack.lcm": b"beta"}, prerelease=True)
        draft = publish(host, "v2.0.0", {"pack.lcm": b"draft"}, draft=True)
    with running_host(tmp_path, data_dir=data) as host:
        repo = github_client(host).get_repo(TEST_REPO)
        assert [r.tag_name for r in repo.get_releases()] == ["v2.0.0", "v1.1.0-beta.1", "v1.0.0"]
        assert repo.get_latest_release().id == first.id
        assert repo.get_release(draft.id).draft
        client = Client(host)
        signed = resolve(client, f"/{TEST_REPO}/releases/latest/download/pack.lcm")
        assert client.get(signed)[1] == PACK
        again = repo.create_git_release("v3.0.0", "v3", "")
        assert again.id > draft.id  # ids never repeat across restarts


def test_malformed_requests_get_json_errors(host):
    def raw(request: bytes) -> tuple[int, dict]:
        with socket.create_connection(("127.0.0.1", host.port), timeout=30) as sock:
            sock.sendall(request)
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
        head, _, body = reply.partition(b"\r\n\r\n")
        status = int(head.split(b" ")[1])
        return status, json.loads(body)

    status, body = raw(b"GARBAGE\r\n\r\n")
    assert status == 400 and "message" in body
    status, body = raw(b"BREW /coffee HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 501 and "message" in body
    status, body = raw(b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 70000 + b"\r\n\r\n")
    assert status in (400, 431) and "message" in body
    status, body = raw(
        b"POST /api/v3/repos/acme/widget/releases HTTP/1.1\r\nHost: x\r\n"
        b"Content-Length: nope\r\nConnection: close\r\n\r\n"
    )
    assert status == 400 and body["message"] == "Malformed Content-Length"
    client = Client(host)
    auth = "token " + TEST_TOKEN
    client.conn.request(
        "POST",
        f"/api/v3/repos/{TEST_REPO}/releases",
        body=b"{not json",
        headers={"Authorization": auth},
    )
    response = client.conn.getresponse()
    assert response.status == 400
    assert json.loads(response.read())["message"] == "Problems parsing JSON"
    client.conn.request(
        "POST", f"/api/v3/repos/{TEST_REPO}/releases", body=b"[1]", headers={"Authorization": auth}
    )
    response = client.conn.getresponse()
    assert response.status == 400 and b"expected an object" in response.read()
    for target in [
        "/nothing/here",
        "/api/v3/nothing",
        f"/api/v3/repos/{TEST_REPO}/releases/notanumber",
        f"/{TEST_REPO}/releases/download/v1/..%2F..%2Fmeta.json",
        "/api/objects/1/x?expires=1&sig=2",
    ]:
        response, body = client.get(target)
        assert response.status in (400, 403, 404), target
        assert "message" in json.loads(body), target
        assert b"Traceback" not in body
    response, body = client.get("/api/objects/../meta.json")
    assert response.status in (400, 404) and b'"format"' not in body


def test_chunked_upload_is_refused_with_411(host):
    rel = publish(host, "v1.0.0", {}, draft=True)
    upload_path = rel.upload_url.split("{")[0][len(host.url) :] + "?name=x.bin"
    conn = http.client.HTTPConnection("127.0.0.1", host.port, timeout=30)
    conn.request(
        "POST",
        upload_path,
        body=iter([b"abc"]),
        headers={"Authorization": "token " + TEST_TOKEN, "Transfer-Encoding": "chunked"},
        encode_chunked=True,
    )
    response = conn.getresponse()
    assert response.status == 411 and "Content-Length" in json.loads(response.read())["message"]


def test_dropped_download_resumes_with_range(host):
    publish(host, "v1.0.0", {"pack.lcm": PACK})
    client = Client(host)
    signed = resolve(client, f"/{TEST_REPO}/releases/latest/download/pack.lcm")
    host.inject_fault("drop_download")
    client.conn.request("GET", signed[len(host.url) :])
    response = client.conn.getresponse()
    with pytest.raises(http.client.IncompleteRead) as caught:
        response.read()
    got = caught.value.partial
    assert 0 < len(got) < len(PACK) and PACK.startswith(got)
    client.conn.close()
    response, rest = client.get(signed, Range=f"bytes={len(got)}-")
    assert response.status == 206 and got + rest == PACK


def test_stalled_download_sends_part_then_nothing(host):
    publish(host, "v1.0.0", {"pack.lcm": PACK})
    signed = resolve(Client(host), f"/{TEST_REPO}/releases/latest/download/pack.lcm")
    host.inject_fault("stall_download")
    conn = http.client.HTTPConnection("127.0.0.1", host.port, timeout=1)
    conn.request("GET", signed[len(host.url) :])
    response = conn.getresponse()
    got = b""
    with pytest.raises(TimeoutError):
        while True:
            chunk = response.read1(65536)
            if not chunk:
                break
            got += chunk
    assert 0 < len(got) < len(PACK)
    conn.close()


def test_json_urls_follow_the_host_header(host):
    publish(host, "v1.0.0", {"pack.lcm": PACK})
    response, body = Client(host).get(
        f"/api/v3/repos/{TEST_REPO}/releases/latest", Host=f"localhost:{host.port}"
    )
    rel = json.loads(body)
    assert rel["url"].startswith(f"http://localhost:{host.port}/api/v3/")
    assert rel["assets"][0]["browser_download_url"].startswith(f"http://localhost:{host.port}/")
    # A Host header that is not host[:port] is not echoed into URLs.
    for bad in ("evil host/x", "localhost:99999", "localhost:0"):
        response, body = Client(host).get(f"/api/v3/repos/{TEST_REPO}", Host=bad)
        assert response.status == 200 and json.loads(body)["url"].startswith(host.api_url)


def test_https_keeps_one_connection_per_client(tmp_path):
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_pem = tmp_path / "cert.pem"
    key_pem = tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_pem))
    cert.private_key_pem.write_to_path(str(key_pem))
    with running_host(tmp_path, tls=(cert_pem, key_pem)) as host:
        assert host.url.startswith("https://127.0.0.1:")
        context = ssl.create_default_context()
        ca.configure_trust(context)
        ca_pem = tmp_path / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_pem))
        repo = github_client(host, verify=str(ca_pem)).get_repo(TEST_REPO)
        rel = repo.create_git_release("v1.0.0", "v1", "", draft=True)
        rel.upload_asset_from_memory(io.BytesIO(PACK), len(PACK), "pack.lcm")
        rel.update_release("v1", "", draft=False)
        host.clear_requests()
        client = Client(host, context=context)
        signed = resolve(client, f"/{TEST_REPO}/releases/latest/download/pack.lcm")
        assert signed.startswith("https://")
        for start in range(0, len(PACK), 4096):
            _response, body = client.get(signed, Range=f"bytes={start}-{start + 4095}")
            assert body == PACK[start : start + 4096]
        assert len({r.connection_id for r in host.requests}) == 1  # one TLS handshake
        # A client that does not trust the CA is refused at the handshake.
        plain = http.client.HTTPSConnection("127.0.0.1", host.port, timeout=30)
        with pytest.raises(ssl.SSLError):
            plain.request("GET", f"/{TEST_REPO}/releases/latest")
        # The host still serves others afterwards.
        assert client.get(f"/{TEST_REPO}/releases/latest")[0].status == 302


def test_start_host_refuses_a_busy_port(tmp_path, host):
    from publisher.host.errors import HostError

    with pytest.raises(HostError, match=r"cannot listen on 127\.0\.0\.1"):
        start_host(tmp_path / "other", port=host.port)


def test_signed_urls_can_name_another_host(tmp_path):
    with running_host(tmp_path, asset_host="localhost") as host:
        publish(host, "v1.0.0", {"pack.lcm": PACK})
        client = Client(host)
        response, _ = client.get(f"/{TEST_REPO}/releases/download/v1.0.0/pack.lcm")
        signed = response.getheader("Location")
        assert signed.startswith(f"http://localhost:{host.port}/api/objects/")
        cdn = http.client.HTTPConnection("localhost", host.port, timeout=30)
        cdn.request("GET", signed.split(str(host.port), 1)[1])
        response = cdn.getresponse()
        assert response.status == 200 and response.read() == PACK


def test_refused_upload_body_is_drained_and_the_connection_kept(host):
    rel = publish(host, "v1.0.0", {}, draft=True)
    upload_path = rel.upload_url.split("{")[0][len(host.url) :] + "?name=big.bin"
    conn = http.client.HTTPConnection("127.0.0.1", host.port, timeout=30)
    conn.request("POST", upload_path, body=b"x" * 3_000_000)  # no token
    response = conn.getresponse()
    assert response.status == 401
    assert json.loads(response.read())["message"] == "Requires authentication"
    conn.request("GET", f"/{TEST_REPO}/releases/latest")
    assert conn.getresponse().status == 302
    assert len({r.connection_id for r in host.requests if not r.path.startswith("/api/v3")}) == 1


def test_download_count_and_api_download_redirect(host):
    rel = publish(host, "v1.0.0", {"pack.lcm": PACK})
    asset = rel.get_assets()[0]
    client = Client(host)
    for _ in range(2):
        signed = resolve(client, f"/{TEST_REPO}/releases/latest/download/pack.lcm")
        assert client.get(signed)[1] == PACK
    api_asset = f"/api/v3/repos/{TEST_REPO}/releases/assets/{asset.id}"
    response, body = client.get(api_asset)
    assert json.loads(body)["download_count"] == 2
    response, _ = client.get(api_asset, Accept="application/octet-stream")
    assert response.status == 302 and "/api/objects/" in response.getheader("Location")


def test_restart_after_a_cut_upload_and_a_cut_metadata_write(tmp_path):
    data = tmp_path / "data"
    with running_host(tmp_path, data_dir=data) as host:
        rel = publish(host, "v1.0.0", {"pack.lcm": PACK})
        host.inject_fault("drop_upload")
        cut = github_client(host, retry=None).get_repo(TEST_REPO).get_release(rel.id)
        with pytest.raises(Exception):  # noqa: B017 (connection cut mid-upload)
            cut.upload_asset_from_memory(io.BytesIO(b"s" * 9000), 9000, "SHA256SUMS")
    # What a crash leaves: a half-written upload and a metadata temp file never renamed.
    (data / "tmp" / "upload-crashed").write_bytes(b"half")
    (data / ".meta.json.crashed").write_bytes(b'{"format": 1, "torn')
    with running_host(tmp_path, data_dir=data) as host:
        assets = {
            a.name: a.state
            for a in github_client(host).get_repo(TEST_REPO).get_release(rel.id).get_assets()
        }
        assert assets == {"pack.lcm": "uploaded", "SHA256SUMS": "starter"}
        assert not list((data / "tmp").iterdir())
        assert not list(data.glob(".meta.json.*"))
        signed = resolve(Client(host), f"/{TEST_REPO}/releases/latest/download/pack.lcm")
        assert Client(host).get(signed)[1] == PACK


def test_an_internal_error_is_a_json_500_without_traceback(host, monkeypatch):
    def broken(repo):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(host.store, "latest", broken)
    response, body = Client(host).get(f"/{TEST_REPO}/releases/latest")
    assert response.status == 500
    assert json.loads(body)["message"] == "Server Error"
    assert b"disk on fire" not in body and b"Traceback" not in body


# Extra (headers, body) for fuzzed requests: each body matches its Content-Length.
EXTRAS = [
    (b"", b""),
    (b"Range: bytes=-\r\n", b""),
    (b"Range: bytes=99999999999-\r\n", b""),
    (b"Content-Length: 4\r\n", b'{"a"'),
    (b"Authorization: token\r\n", b""),
    (b"Authorization: token test-token\r\nContent-Length: 2\r\n", b"{}"),
    (b"Authorization: token test-token\r\nContent-Length: 6\r\n", b'{"x":['),
    (b"If-None-Match: *\r\n", b""),
    (b"Content-Length: -1\r\n", b""),
    (b"Host: [::1\r\n", b""),
]


def raw_exchange(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        # The host may answer and close before reading it all.
        with contextlib.suppress(OSError):
            sock.sendall(request)
        reply = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                reply += chunk
    return reply


def test_http_09_requests_are_refused_with_a_status_line(host):
    reply = raw_exchange(host.port, b"GET /\r\n\r\n")
    assert reply.startswith(b"HTTP/1.")
    head, _, body = reply.partition(b"\r\n\r\n")
    assert b" 400 " in head.split(b"\r\n")[0] and "HTTP/1" in json.loads(body)["message"]


def test_fuzzed_requests_always_get_an_answer_never_a_traceback(tmp_path):
    with running_host(tmp_path) as host:
        publish(host, "v1.0.0", {"pack.lcm": PACK})
        signed = resolve(Client(host), f"/{TEST_REPO}/releases/latest/download/pack.lcm")
        signed_path = signed[len(host.url) :]
        prefixes = ["/", f"/{TEST_REPO}/releases/", "/api/v3/repos/", "/api/uploads/repos/"]
        prefixes += ["/api/objects/", signed_path, f"/api/v3/repos/{TEST_REPO}/releases/"]

        @settings(max_examples=120, deadline=None, derandomize=True, database=None)
        @given(
            method=st.sampled_from(["GET", "HEAD", "POST", "PATCH", "DELETE", "PUT", "X"]),
            prefix=st.sampled_from(prefixes),
            tail=st.text(st.characters(min_codepoint=1, max_codepoint=0x2FF), max_size=40),
            extra=st.sampled_from(EXTRAS),
        )
        def check(method: str, prefix: str, tail: str, extra: tuple[bytes, bytes]) -> None:
            headers, body = extra
            target = (prefix + tail).encode("utf-8", "surrogateescape")
            request = method.encode() + b" " + target + b" HTTP/1.1\r\nHost: h\r\n" + headers
            request += b"Connection: close\r\n\r\n" + body
            reply = raw_exchange(host.port, request)
            assert reply.startswith(b"HTTP/1."), reply[:100]
            head, _, answer = reply.partition(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            assert status != 500 and b"Traceback" not in answer
            if status >= 400 and method != "HEAD":
                assert "message" in json.loads(answer)

        check()
        # Whatever came before, the host still works.
        response, body = Client(host).get(signed_path)
        assert response.status == 200 and body == PACK


def test_chunked_download_fault_sends_chunked_framing(host):
    publish(host, "v1.0.0", {"pack.lcm": PACK})
    client = Client(host)
    signed = resolve(client, f"/{TEST_REPO}/releases/latest/download/pack.lcm")
    host.inject_fault("chunked_download")
    host.clear_requests()
    response, body = client.get(signed, Range="bytes=5-2004")
    assert response.status == 206 and body == PACK[5:2005]
    assert response.getheader("Transfer-Encoding") == "chunked"
    assert response.getheader("Content-Length") is None
    [record] = host.requests
    assert record.bytes_sent > 2000 + len("3e8\r\n\r\n") * 2
    # The next download is framed with Content-Length again, on the same connection.
    response, body = client.get(signed)
    assert response.getheader("Content-Length") == str(len(PACK)) and body == PACK
    assert len({r.connection_id for r in host.requests}) == 1


def test_close_after_response_fault_drops_a_kept_alive_connection(host):
    publish(host, "v1.0.0", {"pack.lcm": PACK})
    client = Client(host)
    host.inject_fault("close_after_response")
    response, _ = client.get(f"/{TEST_REPO}/releases/latest")
    assert response.status == 302 and response.getheader("Connection") is None
    # Reusing it fails; the client must open a new connection (http.client does so
    # on the next request).
    # (RemoteDisconnected, or a reset if the request raced the close).
    with pytest.raises(ConnectionError):
        client.get(f"/{TEST_REPO}/releases/latest")
    response, _ = client.get(f"/{TEST_REPO}/releases/latest")
    assert response.status == 302
    assert len({r.connection_id for r in host.requests if r.path.endswith("/latest")}) == 2


def test_unknown_fault_kinds_are_refused(host):
    with pytest.raises(ValueError, match="unknown fault 'explode'"):
        host.inject_fault("explode")
    with pytest.raises(ValueError, match=">= 0"):
        host.inject_fault("status502", -1)


def test_head_on_the_api_answers_headers_only(host):
    client = Client(host)
    response, body = client.get(f"/api/v3/repos/{TEST_REPO}", method="HEAD")
    assert response.status == 200 and body == b""
    assert int(response.getheader("Content-Length")) > 100
    response, body = client.get(f"/api/v3/repos/{TEST_REPO}/releases/latest", method="HEAD")
    assert response.status == 404 and body == b""
    # The kept-alive connection is still in step.
    response, body = client.get(f"/api/v3/repos/{TEST_REPO}")
    assert response.status == 200 and json.loads(body)["full_name"] == TEST_REPO
