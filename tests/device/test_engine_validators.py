"""Validators that cannot hurt: an ETag the device could not send back is never stored,
and a stored one it cannot use is dropped, so no server can stop all later checks.

The attack: a genuine new cert sector served with an ETag of 600 characters, a TAB,
non-ASCII or invalid UTF-8 bytes. Before, the device stored it and replayed it in
If-None-Match, and every later check failed, for ever.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.device.attackserver import download, fetches, point, release_routes
from tests.device.enginekit import Repo, install_first_release, run, text
from tests.keyfactory import make_sector
from tests.test_http_servers import RawServer

ETAGS = {
    "600 characters": '"' + "e" * 598 + '"',
    "a TAB": '"ab\tcd"',
    "non-ASCII": '"caf\u00e9"',
}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, mpy_build: Path) -> tuple[Repo, Path]:
    tmp = tmp_path_factory.mktemp("etag")
    repo, state = install_first_release(tmp, mpy_build)
    repo.sector = make_sector(repo.name, [repo.root], [repo.release_key], seq=2)
    return repo, state


def copy(golden: Path, tmp_path: Path) -> Path:
    state = tmp_path / "device"
    shutil.copytree(golden, state)
    return state


def etag_file(state: Path) -> Path:
    return state / "lcm/state/certs/app.etag"


def next_release_installs(repo: Repo, state: Path, mpy: Any) -> list[str]:
    """v3.0.0 from an honest server installs; returns the If-None-Match values it got."""
    with RawServer(release_routes(repo, "3.0.0", 3, sector_headers=[("ETag", '"s2"')])) as server:
        point(state, server.url())
        status = run(state, mpy)
    assert status.state["app_tag"] == "v3.0.0", text(status)
    return [r.headers.get("if-none-match", "") for r in fetches(server.requests, "certs.sector")]


@pytest.mark.parametrize("kind", list(ETAGS))
def test_unusable_etag_is_not_stored(
    kind: str, installed: tuple[Repo, Path], mpy: Any, tmp_path: Path
) -> None:
    repo, golden = installed
    state = copy(golden, tmp_path)
    routes = release_routes(repo, "2.0.0", 2, sector_headers=[("ETag", ETAGS[kind])])
    with RawServer(routes) as server:
        point(state, server.url())
        status = run(state, mpy)
    out = text(status)
    assert "cert sector: installed sequence 2" in out, out
    assert status.state["app_tag"] == "v2.0.0" and "APP v2.0.0 running" in out
    assert not etag_file(state).exists()
    # The next check sends no validator, and the next genuine release installs.
    assert next_release_installs(repo, state, mpy) == [""]
    assert etag_file(state).read_bytes() == b'"s2"'


def test_etag_of_invalid_utf8_is_ignored(
    installed: tuple[Repo, Path], mpy: Any, tmp_path: Path
) -> None:
    repo, golden = installed
    state = copy(golden, tmp_path)
    routes = release_routes(repo, "2.0.0", 2)
    # The response written by hand: bytes a str could not hold.
    routes[download("v2.0.0", "certs.sector")] = [
        b'HTTP/1.1 200 OK\r\nETag: "\xff\xfe"\r\nContent-Length: %d\r\n\r\n' % len(repo.sector)
        + repo.sector
    ]
    with RawServer(routes) as server:
        point(state, server.url())
        status = run(state, mpy)
    assert status.state["app_tag"] == "v2.0.0", text(status)
    assert not etag_file(state).exists()
    assert next_release_installs(repo, state, mpy) == [""]


@pytest.mark.parametrize("stored", [b"x" * 600, b'"ab\tcd"', b'"caf\xc3\xa9"'])
def test_unusable_stored_etag_is_dropped(
    stored: bytes, installed: tuple[Repo, Path], mpy: Any, tmp_path: Path
) -> None:
    """A device that stored such an ETag before this rule recovers at its next check."""
    repo, golden = installed
    state = copy(golden, tmp_path)
    etag_file(state).write_bytes(stored)
    with RawServer(release_routes(repo, "2.0.0", 2, sector_headers=[("ETag", '"s2"')])) as server:
        point(state, server.url())
        status = run(state, mpy)
    assert status.state["app_tag"] == "v2.0.0", text(status)
    sector = fetches(server.requests, "certs.sector")
    assert [r.headers.get("if-none-match", "") for r in sector] == [""]
    assert etag_file(state).read_bytes() == b'"s2"'
    assert next_release_installs(repo, state, mpy) == ['"s2"']
