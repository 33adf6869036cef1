"""Expiry of what is installed: with a known clock, an expired trusted sector authorises
nothing new, even when the server withholds the sector that renews it (404, or 304 to
the stored ETag). The running app stays; the next check looks for a newer sector again."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.device.attackserver import download, fetches, point, release_routes
from tests.device.enginekit import Repo, app_files, new_device, run, slot_is_complete, text
from tests.hostserver import running_host
from tests.keyfactory import make_sector
from tests.test_http_servers import RawServer, response

WITHHELD = {
    "404": [response(404, b"no such asset")],
    "304": [response(304, b"", length=False)],
}


@pytest.mark.parametrize("answer", list(WITHHELD))
def test_expired_installed_sector_authorises_nothing(answer: str, tmp_path: Path, mpy: Any) -> None:
    past = int(time.time()) - 3600
    with running_host(tmp_path) as host:
        repo = Repo(host)
        # Installed while the device had no clock: S7 could not apply then.
        repo.sector = make_sector(repo.name, [repo.root], [repo.release_key], expires=past)
        repo.publish("1.0.0", app_files("1.0.0", n=3))
        state = new_device(tmp_path, mpy, host, repo, http_timeout_ms=1000)
        assert run(state, mpy, env={"LCM_CLOCK": "unknown"}).state["app_tag"] == "v1.0.0"

    # A release signed by a key of that sector; the renewal withheld; the clock known.
    routes = release_routes(repo, "2.0.0", 2)
    routes[download("v2.0.0", "certs.sector")] = WITHHELD[answer]
    with RawServer(routes) as server:
        point(state, server.url())
        status = run(state, mpy)
        again = run(state, mpy)
    out = text(status)
    assert "app: refused v2.0.0: Refused: cert sector: sequence 1 in use: ExpiredError" in out, out
    assert status.state["app_tag"] == "v1.0.0" and "APP v1.0.0 running" in out
    assert slot_is_complete(state, "app0")
    # The next check asks for the sector again: a 404 once per check (the device's first
    # question, where the asset is served, hears it), a 304 to each check's fetch.
    asked = [r for r in server.requests if r.path.endswith("/certs.sector")]
    assert len(asked) == (2 if answer == "404" else 4), asked
    assert len(fetches(server.requests, "certs.sector")) == (0 if answer == "404" else 2)
    assert "sequence 1 in use: ExpiredError" in text(again)

    # The maintainer's renewed sector arrives: the next genuine release installs.
    repo.sector = make_sector(repo.name, [repo.root], [repo.release_key], seq=2)
    with RawServer(release_routes(repo, "3.0.0", 3)) as server:
        point(state, server.url())
        status = run(state, mpy)
    assert "cert sector: installed sequence 2" in text(status)
    assert status.state["app_tag"] == "v3.0.0" and "APP v3.0.0 running" in text(status)
