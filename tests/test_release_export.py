"""`lcm release export`: the static tree, re-runs, drafts, prereleases and bad tags; and
`lcm release verify` against the export served by nginx, as a device reads it."""

from __future__ import annotations

import io
import json
from contextlib import AbstractContextManager
from functools import partial
from http.server import SimpleHTTPRequestHandler
from pathlib import Path

import pytest
from typer.testing import CliRunner

from publisher.cli import app
from publisher.demo import make_repo
from publisher.release import export as export_module
from publisher.release.github import Session
from publisher.release.publish import PublishRequest, publish
from publisher.signing import load_signer
from tests.hostserver import TEST_REPO, TEST_TOKEN, github_client, running_host
from tests.lyingproxy import answer, lying_proxy
from tests.staticserver import running_nginx
from tests.threadserver import serving

runner = CliRunner()


def release(host, tag: str, assets: dict[str, bytes], **kw):
    rel = github_client(host).get_repo(TEST_REPO).create_git_release(tag, tag, "", draft=True)
    for name, data in assets.items():
        rel.upload_asset_from_memory(io.BytesIO(data), len(data), name)
    if not kw.get("draft"):
        rel.update_release(tag, "", draft=False, prerelease=kw.get("prerelease", False))


def export(host, to: Path) -> dict:
    result = runner.invoke(
        app,
        ["release", "export", "--repo", TEST_REPO, "--to", str(to), "--json",
         "--api-url", host.api_url, "--token-env", "EXPORT_TOKEN"],
        env={"EXPORT_TOKEN": TEST_TOKEN},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_the_tree_has_the_device_layout_and_re_runs_fetch_only_news(tmp_path):
    www = tmp_path / "www"
    releases = www / TEST_REPO / "releases"
    with running_host(tmp_path) as host:
        release(host, "v1.0.0", {"pack.lcm": b"one" * 100, "manifest.lcm": b"m1"})
        release(host, "v1.1.0-beta.1", {"pack.lcm": b"beta"}, prerelease=True)
        release(host, "v2.0.0", {"pack.lcm": b"draft"}, draft=True)
        first = export(host, www)
        assert first["latest"] == "v1.0.0" and first["kept"] == 0
        assert sorted(first["downloaded"]) == [
            "v1.0.0/manifest.lcm", "v1.0.0/pack.lcm", "v1.1.0-beta.1/pack.lcm"
        ]  # fmt: skip
        assert (releases / "latest").read_bytes() == b"v1.0.0\n"
        assert (releases / "download" / "v1.0.0" / "pack.lcm").read_bytes() == b"one" * 100
        assert not (releases / "download" / "v2.0.0").exists()  # drafts never leave the host
        again = export(host, www)
        assert again["downloaded"] == [] and again["kept"] == 3

        # A changed asset (same name, other bytes) is fetched again.
        rel = github_client(host).get_repo(TEST_REPO).get_release("v1.0.0")
        next(a for a in rel.get_assets() if a.name == "manifest.lcm").delete_asset()
        rel.upload_asset_from_memory(io.BytesIO(b"m2"), 2, "manifest.lcm")
        assert export(host, www)["downloaded"] == ["v1.0.0/manifest.lcm"]
        assert (releases / "download" / "v1.0.0" / "manifest.lcm").read_bytes() == b"m2"
        assert not [p for p in www.rglob(".*")]  # no temp file left behind


def test_a_tag_a_device_would_refuse_is_not_exported(tmp_path):
    with running_host(tmp_path) as host:
        release(host, "release/1", {"pack.lcm": b"x"})
        result = runner.invoke(
            app,
            ["release", "export", "--repo", TEST_REPO, "--to", str(tmp_path / "www"),
             "--api-url", host.api_url],
        )  # fmt: skip
    assert result.exit_code == 1
    assert "release tag 'release/1' cannot be exported" in result.output
    assert not (tmp_path / "www" / TEST_REPO / "releases" / "latest").exists()


def signed_export(tmp_path: Path) -> tuple[Path, Path]:
    """Signed releases v1.0.0 and v1.1.0-beta.1 published to an lcm host, then written by
    `lcm release export`: the tree, and the root public key that verifies it."""
    keys = make_repo(TEST_REPO, tmp_path / "keys")
    www = tmp_path / "www"

    def signed(host, tag: str, prerelease: bool = False) -> None:
        source = tmp_path / f"src-{tag}"
        source.mkdir()
        (source / "main.py").write_text(f"print({tag!r})\n")
        request = PublishRequest(
            source, TEST_REPO, tag, load_signer(keys.release_pem), sector=keys.sector,
            prerelease=prerelease,
        )  # fmt: skip
        publish(Session(host.api_url, TEST_TOKEN), request)

    with running_host(tmp_path / "host") as host:
        signed(host, "v1.0.0")
        signed(host, "v1.1.0-beta.1", prerelease=True)
        export(host, www)
    return www, keys.root_pub


def verify_at(url: str, root: Path, *extra: str, code: int = 0) -> str:
    result = runner.invoke(
        app,
        ["release", "verify", "--repo", TEST_REPO, "--root", str(root), "--web-url", url, *extra],
    )
    assert result.exit_code == code, result.output
    return result.output


def test_verify_reads_a_static_export_as_a_device_does(tmp_path):
    """A static host cannot redirect: `lcm release verify` reads its pointer file, as the
    device does, then checks every asset; the beta channel follows beta.tag; a tampered
    pack in the tree is named."""
    www, root = signed_export(tmp_path)
    with running_nginx(www, tmp_path / "nginx") as web:

        def verify(*extra: str, code: int = 0) -> str:
            return verify_at(web.url, root, *extra, code=code)

        assert "valid: " + TEST_REPO + " v1.0.0 sequence " in verify()
        assert "beta pointer -> v1.1.0-beta.1" in verify()
        assert "v1.1.0-beta.1 sequence " in verify("--channel", "beta")
        pack = www / TEST_REPO / "releases" / "download" / "v1.0.0" / "pack.lcm"
        pack.write_bytes(b"x" + pack.read_bytes()[1:])
        out = verify(code=1)
        assert "pack.lcm" in out and "SHA-256" in out, out


def python_http_server(root: Path) -> AbstractContextManager[str]:
    """Python's http.server serving `root` (it answers a Range request with the whole
    file, 200), in a thread on a free loopback port."""
    return serving(partial(SimpleHTTPRequestHandler, directory=str(root)))


def test_verify_refuses_a_static_host_that_does_not_serve_byte_ranges(tmp_path):
    """Devices read the pack by byte ranges and refuse a 200 to a Range request: a web
    server that ignores Range (Python's http.server) serves every byte right, yet no device
    can install from it. `lcm release verify` asks for a range as a device does and says
    so, naming the host; nginx serving the same tree answers 206 and verifies."""
    www, root = signed_export(tmp_path)
    pack = f"/{TEST_REPO}/releases/download/v1.0.0/pack.lcm"
    with python_http_server(www) as url:
        out = verify_at(url, root, code=1)
        host = url.removeprefix("http://")
        assert f"error: pack.lcm: {host} does not serve byte ranges" in out, out
        assert "answered 200 (the whole file)" in out and url + pack in out, out
        assert "devices read the pack by ranges and cannot install from this host" in out, out
        assert "valid:" not in out
        as_json = runner.invoke(
            app,
            ["release", "verify", "--repo", TEST_REPO, "--root", str(root), "--web-url", url,
             "--json"],
        )  # fmt: skip
        assert as_json.exit_code == 1 and as_json.stdout == ""
        assert "does not serve byte ranges" in as_json.output
    with running_nginx(www, tmp_path / "nginx") as web:
        assert "valid: " + TEST_REPO + " v1.0.0 sequence " in verify_at(web.url, root)
        ranged = [r for r in web.requests() if r[0].startswith(f"GET {pack} ")]
        assert [(status, r) for _, status, _, r in ranged if r] == [(206, "bytes=0-0")]


def export_through(url: str, to: Path):
    """`lcm release export` against the API and browser URLs at `url` (a lying proxy)."""
    return runner.invoke(
        app,
        ["release", "export", "--repo", TEST_REPO, "--to", str(to), "--api-url", f"{url}/api/v3"],
    )


def rewrite_assets(change):
    """A lie: the genuine asset listings, each asset's JSON passed through `change`."""

    def lie(handler, path, forward):
        if "/assets" not in path.split("?")[0]:
            return False
        status, headers, body = forward(path)
        assets = [change(a) for a in json.loads(body)]
        answer(handler, status, headers, json.dumps(assets).encode())
        return True

    return lie


def test_assets_are_fetched_where_devices_fetch_them_not_where_the_api_says(tmp_path):
    """An API that names another server's URL for an asset (an internal service, a cloud
    metadata endpoint): the export fetches the asset from the web host as devices do, and
    never asks the other server."""
    asked = []

    class Secret(SimpleHTTPRequestHandler):
        def do_GET(self):
            asked.append(self.path)
            answer(self, 200, {}, b"INTERNAL-SECRET")

    with running_host(tmp_path) as host, serving(Secret) as secret:
        release(host, "v1.0.0", {"SHA256SUMS": b"sums\n", "pack.lcm": b"pack"})
        redirect = rewrite_assets(lambda a: {**a, "browser_download_url": f"{secret}/iam"})
        with lying_proxy(host.url, redirect) as url:
            result = export_through(url, tmp_path / "www")
    assert result.exit_code == 0, result.output
    assert asked == []
    folder = tmp_path / "www" / TEST_REPO / "releases" / "download" / "v1.0.0"
    assert (folder / "SHA256SUMS").read_bytes() == b"sums\n"
    assert (folder / "pack.lcm").read_bytes() == b"pack"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda a: {**a, "name": 5}, "asset name 5 cannot be a file name"),
        (lambda a: {**a, "name": "a\x00b"}, "cannot be a file name"),
        (lambda a: {**a, "name": "\x1b[31mred"}, "asset name '\\x1b[31mred'"),
        (lambda a: {**a, "size": "big"}, "the host lists a size of 'big'"),
        (lambda a: {**a, "size": 10**13}, "more than 16777216 allowed"),
        (lambda a: {**a, "digest": 7}, "the host lists a digest of 7"),
    ],
    ids=["name-int", "name-nul", "name-escape", "size-str", "size-huge", "digest-int"],
)
def test_an_asset_listing_that_lies_is_refused_by_name(tmp_path, change, named):
    with running_host(tmp_path) as host:
        release(host, "v1.0.0", {"pack.lcm": b"pack"})
        with lying_proxy(host.url, rewrite_assets(change)) as url:
            result = export_through(url, tmp_path / "www")
    assert result.exit_code == 1, result.output
    assert named in result.output and "Traceback" not in result.output
    assert "\x1b" not in result.output  # shown as an escape, never sent to the terminal
    assert not (tmp_path / "www" / TEST_REPO / "releases" / "download" / "v1.0.0").exists()


def test_a_listing_that_pages_for_ever_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(export_module, "MAX_RELEASES", 40)

    def lie(handler, path, forward):
        if not path.split("?")[0].endswith("/releases"):
            return False
        status, headers, body = forward(path)
        url = f"http://{handler.headers['Host']}{path}"
        answer(handler, status, {**headers, "Link": f'<{url}>; rel="next"'}, body)
        return True

    with running_host(tmp_path) as host:
        release(host, "v1.0.0", {"pack.lcm": b"pack"})
        with lying_proxy(host.url, lie) as url:
            result = export_through(url, tmp_path / "www")
    assert result.exit_code == 1, result.output
    assert "more than 40 releases listed: refused" in result.output


def test_a_hosts_error_message_cannot_drive_the_terminal(tmp_path):
    def lie(handler, path, forward):
        if not path.split("?")[0].endswith("/releases"):
            return False
        message = {"message": "\x1b]0;owned\x07\x1b[2Jgone"}
        answer(handler, 422, {"Content-Type": "application/json"}, json.dumps(message).encode())
        return True

    with running_host(tmp_path) as host, lying_proxy(host.url, lie) as url:
        result = export_through(url, tmp_path / "www")
    assert result.exit_code == 1
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert "\\x1b]0;owned\\x07\\x1b[2Jgone" in result.output
