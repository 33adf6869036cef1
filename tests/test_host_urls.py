"""Absolute URLs from `lcm host`: the configured public URL, else the client's name and the
listen port, never the scheme's default port for a `Host` header without one."""

from __future__ import annotations

import gc
import io
import json
import socket
import subprocess

import pytest
from typer.testing import CliRunner

from publisher.cli import app
from publisher.host.errors import HostError
from publisher.host.server import start_host
from tests.hostserver import TEST_REPO, github_client, running_host


def publish(host, tag: str, assets: dict[str, bytes]) -> None:
    rel = github_client(host).get_repo(TEST_REPO).create_git_release(tag, tag, "", draft=True)
    for name, data in assets.items():
        rel.upload_asset_from_memory(io.BytesIO(data), len(data), name)
    rel.update_release(tag, "", draft=False)


def raw_get(port: int, target: str, host_header: str) -> tuple[str, dict[str, str], bytes]:
    """One request with exactly this `Host` header; (status line, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        request = f"GET {target} HTTP/1.1\r\nHost: {host_header}\r\nConnection: close\r\n\r\n"
        sock.sendall(request.encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status, *lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return status, headers, body


def test_mip_installs_a_package_through_the_redirects(tmp_path):
    """MicroPython's `mip` (its `requests` sends `Host: 127.0.0.1`, no port) follows the
    browser-URL redirects to the signed asset URLs and installs the package."""
    with running_host(tmp_path) as host:
        base = f"{host.url}/{TEST_REPO}/releases/download/v1.0.0/"
        code = b"GREETING = 'hello from lcm host'\n"
        package = {"urls": [["greet.py", base + "greet.py"]], "version": "1.0.0"}
        publish(host, "v1.0.0", {"greet.py": code, "package.json": json.dumps(package).encode()})
        target = tmp_path / "lib"
        run = subprocess.run(
            ["micropython", "-m", "mip", "install", "--target", str(target), base + "package.json"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        assert (target / "greet.py").read_bytes() == code
        objects = [r for r in host.requests if r.path.startswith("/api/objects/")]
        assert [r.status for r in objects] == [200, 200]


def test_a_host_header_without_a_port_gets_the_listen_port(tmp_path):
    with running_host(tmp_path) as host:
        publish(host, "v1.0.0", {"pack.lcm": b"pack"})
        status, headers, _ = raw_get(host.port, f"/{TEST_REPO}/releases/latest", "127.0.0.1")
        assert " 302 " in status
        assert (
            headers["location"] == f"http://127.0.0.1:{host.port}/{TEST_REPO}/releases/tag/v1.0.0"
        )
        status, _, body = raw_get(host.port, f"/api/v3/repos/{TEST_REPO}", "localhost")
        assert json.loads(body)["url"] == f"http://localhost:{host.port}/api/v3/repos/{TEST_REPO}"


def test_the_public_url_is_the_base_of_every_url(tmp_path):
    public = "https://updates.example.com"
    with running_host(tmp_path, public_url=public + "/") as host:
        assert host.url == public and host.api_url == public + "/api/v3"
        rel = raw_get(host.port, f"/api/v3/repos/{TEST_REPO}", f"127.0.0.1:{host.port}")[2]
        assert json.loads(rel)["releases_url"].startswith(public + "/api/v3/")
        _status, headers, _ = raw_get(host.port, f"/{TEST_REPO}/releases/latest", "127.0.0.1")
        assert headers["location"] == f"{public}/{TEST_REPO}/releases"


@pytest.mark.parametrize(
    "bad", ["updates.example.com", "ftp://x", "https://x/path", "https://x:port", "http://a b"]
)
def test_a_bad_public_url_is_refused_naming_it(tmp_path, bad):
    with pytest.raises(HostError, match="not a public URL"):
        start_host(tmp_path / "d", public_url=bad)
    result = CliRunner().invoke(
        app, ["host", "--data", str(tmp_path / "d"), "--port", "0", "--public-url", bad]
    )
    assert result.exit_code == 1 and "not a public URL" in result.output


@pytest.mark.parametrize("bad", [{"public_url": "ftp://x"}, {"repos": ("no-slash",)}])
def test_a_refused_start_leaves_the_data_folder_free(tmp_path, bad):
    """A refusal after the data folder was locked left it locked until the garbage
    collector ran: the next start on it was "another lcm host is serving" (seen in CI)."""
    gc.disable()  # as between two of the collector's runs
    try:
        with pytest.raises(HostError):
            start_host(tmp_path / "d", **bad)
        start_host(tmp_path / "d").shutdown()
    finally:
        gc.enable()
