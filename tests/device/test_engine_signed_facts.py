"""Only signed facts are recorded: the tag a device records is the signed version, and a
tag that failed its trial is known by its signed sequence.

The attacks: a server that serves genuine v2.0.0 under the tag v3.0.0 (before, the
device recorded v3.0.0 and later said "v3.0.0 is installed, nothing new" to the real
one); and a release that failed its trial, forced again under the same tag with a
higher sequence (`lcm release publish --force`), which must install.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.device.attackserver import point, release_routes
from tests.device.enginekit import Repo, app_files, new_device, run, slot_is_complete, text
from tests.hostserver import running_host
from tests.test_http_servers import RawServer


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Any]:
    with running_host(tmp_path) as h:
        yield h


def test_release_served_under_another_tag_is_refused(tmp_path: Path, mpy: Any, host: Any) -> None:
    repo = Repo(host)
    repo.publish("1.0.0", app_files("1.0.0", n=3))
    state = new_device(tmp_path, mpy, host, repo, http_timeout_ms=1000)
    assert run(state, mpy).state["app_tag"] == "v1.0.0"

    with RawServer(release_routes(repo, "2.0.0", 2, tag="v3.0.0")) as server:
        point(state, server.url())
        status = run(state, mpy)
    out = text(status)
    assert "app: refused v3.0.0: Refused: manifest: version 2.0.0 served under tag v3.0.0" in out
    assert status.state["app_tag"] == "v1.0.0" and "APP v1.0.0 running" in out
    assert slot_is_complete(state, "app0")

    # The real v3.0.0 is published: the device installs it.
    with RawServer(release_routes(repo, "3.0.0", 3)) as server:
        point(state, server.url())
        status = run(state, mpy)
    assert status.state["app_tag"] == "v3.0.0" and "APP v3.0.0 running" in text(status)
    assert status.state["app_seq"] == 3


def test_failed_tag_forced_again_with_a_higher_sequence_installs(
    tmp_path: Path, mpy: Any, host: Any
) -> None:
    repo = Repo(host)
    repo.publish("1.0.0", app_files("1.0.0", n=3))
    state = new_device(tmp_path, mpy, host, repo, http_timeout_ms=1000, trial_boots=1)
    assert run(state, mpy).state["app_tag"] == "v1.0.0"
    repo.publish("2.0.0", app_files("2.0.0", n=3, broken=True))
    status = run(state, mpy)
    assert status.state["app_bad"] == "v2.0.0" and status.state["app_bad_seq"] == 2, text(status)
    assert status.state["app_tag"] == "v1.0.0"

    # The same failed release again: refused by its signed sequence, the app runs.
    again = run(state, mpy)
    out = text(again)
    assert "v2.0.0 failed its trial before; waiting for a newer one (sequence 2)" in out
    assert again.exits == [75, 0] and "APP v1.0.0 running" in out

    # Forced again under the same tag, fixed, with a higher sequence: it installs.
    with RawServer(release_routes(repo, "2.0.0", 3)) as server:
        point(state, server.url())
        status = run(state, mpy)
    assert status.state["app_tag"] == "v2.0.0" and "APP v2.0.0 running" in text(status)
    assert status.state["app_seq"] == 3
