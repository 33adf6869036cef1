"""An expired cert sector is refused when the device knows the time, accepted when it does not
(a device without a clock must still reach the sector that renews it; rule S7)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.device.enginekit import Repo, app_files, new_device, run, text
from tests.hostserver import running_host
from tests.keyfactory import make_sector

FILES = {v: app_files(v, n=3) for v in ("1.0.0", "2.0.0")}


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Any]:
    with running_host(tmp_path) as h:
        yield h


def device_then_expired_release(tmp_path: Path, mpy: Any, host: Any) -> tuple[Repo, Path]:
    repo = Repo(host)
    repo.publish("1.0.0", FILES["1.0.0"])
    state = new_device(tmp_path, mpy, host, repo)
    assert run(state, mpy).state["app_tag"] == "v1.0.0"
    # The maintainer's next sector carries an expiry that is already past.
    repo.sector = make_sector(
        repo.name, [repo.root], [repo.release_key], seq=2, expires=int(time.time()) - 3600
    )
    repo.publish("2.0.0", FILES["2.0.0"])
    return repo, state


def test_expired_sector_refused_when_the_clock_is_known(
    tmp_path: Path, mpy: Any, host: Any
) -> None:
    _, state = device_then_expired_release(tmp_path, mpy, host)
    status = run(state, mpy)
    out = text(status)
    assert "sector expired at" in out, out
    assert status.state["app_tag"] == "v1.0.0"
    assert "APP v1.0.0 running" in out


def test_expired_sector_accepted_without_a_clock(tmp_path: Path, mpy: Any, host: Any) -> None:
    repo, state = device_then_expired_release(tmp_path, mpy, host)
    status = run(state, mpy, env={"LCM_CLOCK": "unknown"})
    assert status.state["app_tag"] == "v2.0.0", text(status)
    assert (state / "lcm/state/certs/app.sector").read_bytes() == repo.sector
