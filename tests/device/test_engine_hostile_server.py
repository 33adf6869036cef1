"""A hostile server behind the device's web URL: each misbehaviour is refused with a
logged reason, and the installed app is untouched and still runs.

The first release comes from a real `lcm host`; then the device is pointed at a
scripted raw-socket server (tests/test_http_servers.py) that answers the browser
URLs of release v2.0.0 with real signed assets, except for the one lie under test.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.device.enginekit import (
    Repo,
    app_files,
    install_first_release,
    run,
    slot_is_complete,
    text,
)
from tests.keyfactory import make_manifest
from tests.test_http_servers import RawServer, response

BASE = "/acme/widget/releases"
DL = BASE + "/download/v2.0.0/"
LATEST = [response(302, b"", [("Location", BASE + "/tag/v2.0.0")])]


def routes_for(repo: Repo, lie: dict[str, Any]) -> dict[str, Any]:
    files = app_files("2.0.0", n=3)
    manifest, pack = make_manifest(repo.name, repo.release_key, files, seq=7, version="2.0.0")
    routes: dict[str, Any] = {
        BASE + "/latest": LATEST,
        DL + "certs.sector": [response(200, repo.sector)],
        DL + "manifest.lcm": [response(200, manifest)],
        DL + "pack.lcm": pack_route(pack),
    }
    routes.update({k: (v(pack) if callable(v) else v) for k, v in lie.items()})
    return routes


def pack_route(pack: bytes) -> Callable[[Any], list[bytes]]:
    def answer(req: Any) -> list[bytes]:
        first, last = req.headers["range"].removeprefix("bytes=").split("-")
        a, b = int(first), int(last)
        rng = f"bytes {a}-{b}/{len(pack)}"
        return [response(206, pack[a : b + 1], [("Content-Range", rng)])]

    return answer


def ignoring_range(pack: bytes) -> Callable[[Any], list[bytes]]:
    def answer(req: Any) -> list[bytes]:
        first, last = req.headers["range"].removeprefix("bytes=").split("-")
        # A 200 as long as the range: only the status says it is not that range.
        return [response(200, pack[: int(last) - int(first) + 1])]

    return answer


def lying_range(pack: bytes) -> Callable[[Any], list[bytes]]:
    def answer(req: Any) -> list[bytes]:
        first, last = req.headers["range"].removeprefix("bytes=").split("-")
        a, b = int(first), int(last)
        # Claims the range asked for, but sends the bytes one further on.
        rng = f"bytes {a}-{b}/{len(pack)}"
        return [response(206, pack[a + 1 : b + 2].ljust(b - a + 1, b"x"), [("Content-Range", rng)])]

    return answer


def shifted_range(pack: bytes) -> Callable[[Any], list[bytes]]:
    def answer(req: Any) -> list[bytes]:
        first, last = req.headers["range"].removeprefix("bytes=").split("-")
        a, b = int(first), int(last)
        rng = f"bytes {a + 1}-{b + 1}/{len(pack)}"
        return [response(206, pack[a + 1 : b + 2], [("Content-Range", rng)])]

    return answer


CASES = {
    "garbage status line": (
        {BASE + "/latest": [b"HTTZ/1.1 302 Found\r\n\r\n"]},
        "app: check failed: ProtocolError: garbage status line",
    ),
    "ten thousand headers": (
        {BASE + "/latest": [b"HTTP/1.1 302 Found\r\n" + b"X-A: b\r\n" * 10000 + b"\r\n"]},
        "app: check failed: LimitError: more than 64 headers",
    ),
    "endless redirects": (
        {DL + "certs.sector": [response(302, b"", [("Location", DL + "certs.sector")])]},
        "app: check failed: LimitError: more than 5 redirects",
    ),
    "200 where 206 was asked": (
        {DL + "pack.lcm": ignoring_range},
        "app: check failed: ProtocolError: got 200 for range",
    ),
    "Content-Range that lies": (
        {DL + "pack.lcm": shifted_range},
        "does not answer bytes=",
    ),
    "bytes of the wrong range": (
        {DL + "pack.lcm": lying_range},
        "downloaded bytes do not match the manifest sha256",
    ),
    # A Location with another scheme is refused, not joined as a path on the same host
    # (where a 404 would read as "no such asset": the sector kept, the check going on).
    "redirect to a javascript: URL": (
        {DL + "certs.sector": [response(302, b"", [("Location", "javascript:alert(1)")])]},
        "app: check failed: HTTPError: unsupported URL 'javascript:alert(1)'",
    ),
    # A static host's pointer file (docs/formats.md) is read like the redirect it
    # replaces: only a valid tag, only 66 bytes.
    "pointer file naming a path": (
        {BASE + "/latest": [response(200, b"../../../etc/passwd\n")]},
        "app: refused None: FormatError: invalid release tag",
    ),
    "endless pointer file": (
        {BASE + "/latest": [response(200, b"v2.0.0" + b" " * 10000)]},
        "app: check failed: LimitError: body longer than 66 bytes",
    ),
}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, mpy_build: Path) -> tuple[Repo, Path]:
    tmp = tmp_path_factory.mktemp("hostile")

    # The module-scoped install runs at the port's default heap (the fixture's own is per test).
    return install_first_release(tmp, mpy_build)


def boot_against(
    installed: tuple[Repo, Path], mpy: Any, tmp_path: Path, lie: dict[str, Any], **settings: Any
) -> tuple[Path, Any]:
    """(the device's state folder, the simulate status) of the installed device, with
    `settings` added to its config, booted once against a server that tells `lie`."""
    import shutil

    repo, golden = installed
    state = tmp_path / "device"
    shutil.copytree(golden, state)
    with RawServer(routes_for(repo, lie)) as server:
        cfg_path = state / "lcm/state/config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["web_url"] = server.url()
        cfg.update(settings)
        cfg_path.write_text(json.dumps(cfg))
        return state, run(state, mpy)


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_server_is_refused_and_the_app_runs(
    case: str, installed: tuple[Repo, Path], mpy: Any, tmp_path: Path
) -> None:
    lie, reason = CASES[case]
    state, status = boot_against(installed, mpy, tmp_path, lie)
    out = text(status)
    assert reason in out, out
    assert status.exits == [75, 0], out
    assert status.state["app_tag"] == "v1.0.0" and "APP v1.0.0 running" in out
    assert slot_is_complete(state, "app0")


@pytest.mark.parametrize(
    ("asked", "low", "high"), [("5000", 5000, 7200), ("999999999999", 7200, 7200)]
)
def test_a_servers_retry_after_holds_the_next_check_no_longer_than_the_back_off_cap(
    asked: str, low: int, high: int, installed: tuple[Repo, Path], mpy: Any, tmp_path: Path
) -> None:
    """A 503 with Retry-After: the next check waits at least that long (a rate-limited fleet
    comes back when the server says), but at most 2 x the interval: a server asking for
    years does not freeze the device (docs/threat-model.md, docs/lifecycle.md)."""
    lie = {BASE + "/latest": [response(503, b"", [("Retry-After", asked)])]}
    state, status = boot_against(installed, mpy, tmp_path, lie, check_interval_s=3600)
    out = text(status)
    assert "app: check failed: StatusError: HTTP 503" in out, out
    asked_for = min(int(asked), 10**12)
    assert f"the server asked for {asked_for} s before the next check (Retry-After)" in out, out
    assert status.exits == [75, 0], out
    assert "APP v1.0.0 running" in out
    remaining = json.loads((state / "lcm/state/schedule.json").read_text())["remaining"]
    assert low - 60 <= remaining <= high, remaining  # less the seconds the app boot took
