"""`lcm release verify` against a hostile web server (a real HTTP server on loopback).

The server serves a genuinely signed release but misbehaves on purpose:
endless bodies, lying or missing Content-Length, truncation, redirect loops,
odd Location headers. Every case must end in a clear error naming the asset.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler

import pytest

from cert_sector.assets import MANIFEST_ASSET, PACK_ASSET, SECTOR_ASSET, SUMS_ASSET
from publisher.release.build import release_assets
from publisher.release.errors import VerifyError
from publisher.release.verify import Trust, verify_release
from tests.keyfactory import make_manifest, make_sector, new_signer
from tests.threadserver import serving

REPO = "acme/widget"
TAG = "v1.0.0"
FILES = {"main.py": b"print('hi')\n", "lib/a.py": b"A = 1\n" * 50}

Behaviour = Callable[[BaseHTTPRequestHandler, bytes], None]


def honest(handler: BaseHTTPRequestHandler, body: bytes) -> None:
    """The whole asset, or the one byte range asked (`Range: bytes=F-L`, as devices ask)."""
    asked = handler.headers.get("Range", "")
    if not asked.startswith("bytes="):
        ignores_range(handler, body)
        return
    first, _, last = asked.removeprefix("bytes=").partition("-")
    start, end = int(first), min(int(last or len(body) - 1), len(body) - 1)
    ranged(handler, body[start : end + 1], f"bytes {start}-{end}/{len(body)}")


def ignores_range(handler: BaseHTTPRequestHandler, body: bytes) -> None:
    """200 and the whole asset whatever was asked (Python's http.server does so)."""
    handler.send_response(200)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def ranged(handler: BaseHTTPRequestHandler, part: bytes, content_range: str) -> None:
    handler.send_response(206)
    handler.send_header("Content-Range", content_range)
    handler.send_header("Content-Length", str(len(part)))
    handler.end_headers()
    handler.wfile.write(part)


def lying_range(handler: BaseHTTPRequestHandler, body: bytes) -> None:
    """206 to a Range request, with a Content-Range that does not answer it."""
    if "Range" not in handler.headers:
        honest(handler, body)
        return
    ranged(handler, body[1:2], f"bytes 1-1/{len(body)}")


def wrong_range_bytes(handler: BaseHTTPRequestHandler, body: bytes) -> None:
    """206 and the right Content-Range, but another byte than the asset's."""
    if "Range" not in handler.headers:
        honest(handler, body)
        return
    ranged(handler, bytes([body[0] ^ 0xFF]), f"bytes 0-0/{len(body)}")


def endless(handler: BaseHTTPRequestHandler, body: bytes) -> None:
    """No Content-Length, and the body never ends (until the client hangs up)."""
    handler.send_response(200)
    handler.send_header("Connection", "close")
    handler.end_headers()
    try:
        handler.wfile.write(body)
        while True:
            handler.wfile.write(b"\0" * 65536)
    except OSError:
        pass


def truncated(handler: BaseHTTPRequestHandler, body: bytes) -> None:
    """Announces the full length, sends half, closes."""
    handler.send_response(200)
    handler.send_header("Content-Length", str(len(body)))
    handler.send_header("Connection", "close")
    handler.end_headers()
    handler.wfile.write(body[: len(body) // 2])
    handler.close_connection = True


def huge_length(handler: BaseHTTPRequestHandler, body: bytes) -> None:
    handler.send_response(200)
    handler.send_header("Content-Length", str(1 << 40))
    handler.send_header("Connection", "close")
    handler.end_headers()
    handler.close_connection = True


def redirect_loop(handler: BaseHTTPRequestHandler, body: bytes) -> None:
    handler.send_response(302)
    handler.send_header("Location", handler.path)
    handler.send_header("Content-Length", "0")
    handler.end_headers()


class Release:
    def __init__(self) -> None:
        root, key = new_signer(), new_signer()
        self.sector = make_sector(REPO, [root], [key])
        manifest, pack = make_manifest(REPO, key, FILES, version=TAG[1:])
        self.assets = release_assets(manifest, pack, self.sector, TAG)
        self.behaviour: dict[str, Behaviour] = {}
        self.latest_location: str | None = f"/{REPO}/releases/tag/{TAG}"


@contextmanager
def hostile_server(release: Release) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            if self.path == f"/{REPO}/releases/latest":
                self.send_response(302)
                if release.latest_location is not None:
                    self.send_header("Location", release.latest_location)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            prefix = f"/{REPO}/releases/download/{TAG}/"
            name = self.path[len(prefix) :] if self.path.startswith(prefix) else None
            if name not in release.assets:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            release.behaviour.get(name, honest)(self, release.assets[name])

    with serving(Handler) as url:
        yield url


def verify(release: Release, url: str):
    return verify_release(url, REPO, Trust(sector=release.sector))


def test_the_honest_server_verifies():
    release = Release()
    with hostile_server(release) as url:
        result = verify(release, url)
    assert (result.tag, result.files, result.beta_pointer) == (TAG, 2, TAG)


@pytest.mark.parametrize(
    ("asset", "behaviour", "message"),
    [
        (PACK_ASSET, endless, "more than the"),
        (MANIFEST_ASSET, endless, "more than the"),
        (SECTOR_ASSET, endless, "more than the 4096 bytes allowed"),
        (SUMS_ASSET, endless, "more than the 4096 bytes allowed"),
        (PACK_ASSET, truncated, "download from"),
        (MANIFEST_ASSET, truncated, "download from"),
        (PACK_ASSET, huge_length, "is 1099511627776 bytes, more than"),
        (SECTOR_ASSET, redirect_loop, "download from"),
    ],
)
def test_misbehaving_asset_downloads_are_refused_by_name(asset, behaviour, message):
    release = Release()
    release.behaviour[asset] = behaviour
    with hostile_server(release) as url, pytest.raises(VerifyError) as info:
        verify(release, url)
    assert info.value.asset == asset
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("behaviour", "answered"),
    [
        (ignores_range, "answered 200 (the whole file)"),
        (lying_range, "answered 206 with Content-Range 'bytes 1-1/"),
        (wrong_range_bytes, "answered 206 with 1 byte(s) that are not the pack's first"),
    ],
)
def test_a_pack_not_served_by_byte_ranges_is_refused_naming_the_host(behaviour, answered):
    """Every byte of the pack is right, but devices read it by ranges: a host that does
    not answer `Range: bytes=0-0` with exactly that byte (206) is refused, named."""
    release = Release()
    release.behaviour[PACK_ASSET] = behaviour
    with hostile_server(release) as url, pytest.raises(VerifyError) as info:
        verify(release, url)
    assert info.value.asset == PACK_ASSET
    message = str(info.value)
    assert f"{url.removeprefix('http://')} does not serve byte ranges" in message, message
    assert answered in message, message
    assert "devices read the pack by ranges and cannot install from this host" in message


@pytest.mark.parametrize(
    ("location", "message"),
    [
        (None, "no Location in the latest-release redirect"),
        ("/evil/repo/releases/tag/v1.0.0", "unexpected latest-release redirect"),
        (f"/{REPO}/releases/tag/v1.0.0;rm -rf", "invalid release tag"),
        (f"/{REPO}/releases", "has no published full release"),
    ],
)
def test_odd_latest_redirects_are_refused(location, message):
    release = Release()
    release.latest_location = location
    with hostile_server(release) as url, pytest.raises(VerifyError) as info:
        verify(release, url)
    assert info.value.asset == "latest release"
    assert message in str(info.value)
