"""Helpers (no tests here) for device tests written as a server that attacks.

`release_routes` answers the browser URLs of one release of `repo` with genuine
signed assets (the lie under test is then patched into the routes), served by a
scripted `RawServer` (tests/test_http_servers.py); `point` aims a provisioned
device at such a server and changes its settings.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.device.enginekit import Repo, app_files
from tests.keyfactory import make_manifest
from tests.test_http_servers import Request, response

BASE = "/acme/widget/releases"


def download(tag: str, name: str) -> str:
    return f"{BASE}/download/{tag}/{name}"


def fetches(requests: list[Request], asset: str) -> list[Request]:
    """The requests that fetched `asset`: not the one-byte probes (`Range: bytes=0-0`) with
    which a device first asks where each asset is served (lcm_device.resolve)."""
    return [
        r
        for r in requests
        if r.path.endswith("/" + asset) and r.headers.get("range") != "bytes=0-0"
    ]


def ranged(pack: bytes) -> Callable[[Request], list[bytes]]:
    """An honest pack route: 206 with the bytes asked for."""

    def answer(req: Request) -> list[bytes]:
        first, last = req.headers["range"].removeprefix("bytes=").split("-")
        a, b = int(first), int(last)
        return [response(206, pack[a : b + 1], [("Content-Range", f"bytes {a}-{b}/{len(pack)}")])]

    return answer


def release_routes(
    repo: Repo,
    version: str,
    seq: int,
    *,
    tag: str | None = None,
    sector: bytes | None = None,
    sector_headers: list[tuple[str, str]] | None = None,
    manifest: bytes | None = None,
) -> dict[str, Any]:
    """Routes for release `tag` (default v`version`) as `lcm release publish` would serve it:
    /releases/latest names the tag; certs.sector, manifest.lcm and pack.lcm are genuine
    (`manifest`, if given, replaces the manifest made here with the repo's release key)."""
    tag = tag or f"v{version}"
    made, pack = make_manifest(
        repo.name, repo.release_key, app_files(version, n=3), seq=seq, version=version
    )
    return {
        BASE + "/latest": [response(302, b"", [("Location", f"{BASE}/tag/{tag}")])],
        download(tag, "certs.sector"): [
            response(200, repo.sector if sector is None else sector, sector_headers or [])
        ],
        download(tag, "manifest.lcm"): [response(200, manifest or made)],
        download(tag, "pack.lcm"): ranged(pack),
    }


def point(state: Path, url: str, **settings: Any) -> None:
    """Aim the device at `url`; a setting given as None is removed (its default applies)."""
    path = state / "lcm/state/config.json"
    cfg = json.loads(path.read_text())
    cfg["web_url"] = url
    for key, value in settings.items():
        if value is None:
            cfg.pop(key, None)
        else:
            cfg[key] = value
    path.write_text(json.dumps(cfg))
