"""The update engine end to end: the manager in the MicroPython unix port against `lcm host`."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from publisher.device.simulate import board_code
from tests.device.enginekit import (
    Repo,
    app_files,
    new_device,
    run,
    slot_is_complete,
    text,
)
from tests.hostserver import running_host, signed_url


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Any]:
    with running_host(tmp_path) as h:
        yield h


def pack_bytes(host: Any, since: int) -> int:
    """Bytes the host sent for asset objects (status, headers, body) since request `since`."""
    return sum(r.bytes_sent for r in host.requests[since:] if r.path.startswith("/api/objects/"))


def test_blank_device_installs_v1_and_confirms_it(tmp_path: Path, mpy: Any, host: Any) -> None:
    repo = Repo(host)
    repo.publish("1.0.0", app_files("1.0.0"))
    state = new_device(tmp_path, mpy, host, repo)

    status = run(state, mpy)

    out = text(status)
    assert status.exits == [75, 0], out
    assert "app: switched to app0 (v1.0.0), trial boot next" in out
    # Nothing installed yet reads "none", not Python's None.
    assert "app: v1.0.0 available (installed none)" in out and "app none" in out
    assert "None" not in out, out
    assert "app: trial boot 1 of 3 for v1.0.0" in out
    assert "APP v1.0.0 running" in out
    assert "app: confirmed v1.0.0" in out
    assert status.state["app"] == "app0" and status.state["app_trial"] is None
    assert slot_is_complete(state, "app0")


def test_a_device_with_its_manager_frozen_boots_from_an_empty_slot(
    tmp_path: Path, mpy: Any, host: Any
) -> None:
    """An ESP8266 image's slot holds only the `lcm` shim: the imports fall through to
    the frozen manager (here the compiled modules behind the slot on sys.path, where
    `.frozen` sits on a board), and `import lcm` still finds the shim, not /lcm."""
    repo = Repo(host)
    repo.publish("1.0.0", app_files("1.0.0"))
    state = new_device(tmp_path, mpy, host, repo)
    frozen = tmp_path / "frozen"
    frozen.mkdir()
    for package in ("lcm_device", "cert_sector"):
        shutil.move(state / "lcm" / "m0" / package, frozen / package)

    path = [".frozen", str(frozen), str(board_code())]  # board_code: the simulated board
    status = run(state, mpy, env={"MICROPYPATH": os.pathsep.join(path)})

    out = text(status)
    assert status.exits == [75, 0], out
    assert "APP v1.0.0 running" in out and "app: confirmed v1.0.0" in out
    assert [p.name for p in (state / "lcm" / "m0").iterdir()] == ["lcm.py"]


def test_one_changed_file_of_twenty_downloads_only_its_bytes(
    tmp_path: Path, mpy: Any, host: Any
) -> None:
    repo = Repo(host)
    v1 = app_files("1.0.0")
    repo.publish("1.0.0", v1)
    state = new_device(tmp_path, mpy, host, repo)
    assert run(state, mpy).state["app_tag"] == "v1.0.0"
    v2 = dict(v1)
    v2["lib/m07.py"] = v1["lib/m07.py"].replace(b"VALUE = 7", b"VALUE = 8")
    manifest, _ = repo.publish("1.0.1", v2)
    since = len(host.requests)

    status = run(state, mpy)

    out = text(status)
    assert status.state["app_tag"] == "v1.0.1", out
    changed = len(v2["lib/m07.py"])
    assert f"download: {changed} bytes of the pack, " in out
    body = [r for r in host.requests[since:] if r.path.startswith("/api/objects/")]
    # certs.sector unchanged: 304 with no body (If-None-Match); manifest: 200; pack: one 206.
    assert sorted(r.status for r in body) == [200, 206, 304], body
    headers_allowance = 600 * len(body)
    assert pack_bytes(host, since) <= changed + len(manifest) + headers_allowance
    (ranged,) = [r for r in body if r.status == 206]
    # The one range request carries that file's bytes and its headers, nothing more.
    assert changed < ranged.bytes_sent < changed + 600
    assert slot_is_complete(state, "app1")


def test_idle_check_is_one_small_request(tmp_path: Path, mpy: Any, host: Any) -> None:
    repo = Repo(host)
    repo.publish("1.0.0", app_files("1.0.0", n=3))
    state = new_device(tmp_path, mpy, host, repo)
    run(state, mpy)
    since = len(host.requests)

    status = run(state, mpy)

    assert "app: v1.0.0 is installed, nothing new" in text(status)
    idle = host.requests[since:]
    assert len(idle) == 1, idle
    assert idle[0].path == "/acme/widget/releases/latest" and idle[0].status == 302
    assert idle[0].bytes_sent <= 2048


def test_broken_v3_rolls_back_to_v2_and_is_not_offered_again(
    tmp_path: Path, mpy: Any, host: Any
) -> None:
    repo = Repo(host)
    repo.publish("2.0.0", app_files("2.0.0", n=4))
    state = new_device(tmp_path, mpy, host, repo, trial_boots=2)
    assert run(state, mpy).state["app_tag"] == "v2.0.0"
    repo.publish("3.0.0", app_files("3.0.0", n=4, broken=True))

    status = run(state, mpy)

    out = text(status)
    # install + reset, two failed trial boots (reset each), then the roll-back boot.
    assert status.exits == [75, 75, 75, 0], out
    assert out.count("RuntimeError: v3.0.0 is broken") == 2
    assert (
        "app: v3.0.0 failed its trial (crashed or reset in 2 trial boots); rolled back to v2.0.0"
        in out
    )
    assert "APP v2.0.0 running" in out
    assert status.state["app_tag"] == "v2.0.0" and status.state["app_bad"] == "v3.0.0"
    again = run(state, mpy)
    assert "v3.0.0 failed its trial before; waiting for a newer one" in text(again)
    assert again.exits == [75, 0]
    repo.publish("3.0.1", app_files("3.0.1", n=4))
    assert run(state, mpy).state["app_tag"] == "v3.0.1"


def test_a_broken_first_release_leaves_no_app_and_says_so(
    tmp_path: Path, mpy: Any, host: Any
) -> None:
    """Nothing was installed before it: the log says there is no release to go back to
    (not "rolled back to None"), and the device waits for a newer release."""
    repo = Repo(host)
    repo.publish("1.0.0", app_files("1.0.0", n=2, broken=True))
    state = new_device(tmp_path, mpy, host, repo, trial_boots=2)

    status = run(state, mpy)

    out = text(status)
    assert (
        "app: v1.0.0 failed its trial (crashed or reset in 2 trial boots); no release before it"
        in out
    ), out
    assert "rolled back to None" not in out, out
    assert status.state["app"] is None and status.state["app_bad"] == "v1.0.0"
    repo.publish("1.0.1", app_files("1.0.1", n=2))
    assert run(state, mpy).state["app_tag"] == "v1.0.1"


def test_dropped_pack_transfer_resumes_from_the_last_byte(
    tmp_path: Path, mpy: Any, host: Any
) -> None:
    repo = Repo(host)
    _, pack = repo.publish("1.0.0", app_files("1.0.0", n=10, size=2000))
    url = f"{host.url}/{repo.name}/releases/download/v1.0.0/pack.lcm"
    host.clear_requests()
    host.inject_fault("drop_download", 2)

    code = f"""
import hashlib
from lcm_device.fetch import PackStream
from lcm_device.http import Client
buf = memoryview(bytearray(3072))  # as the engine's: 2 KB for HTTP (a signed URL), 1 KB data
client = Client(buf[:2048], timeout_ms=2000)
pack = PackStream(client, {url!r}, {len(pack)}, 100, log=print)
pack.open(0, {len(pack)})
h = hashlib.sha256()
got = 0
while got < {len(pack)}:
    n = pack.readinto(buf[2048 : 2048 + min(1024, {len(pack)} - got)])
    h.update(buf[2048 : 2048 + n])
    got += n
print("read", got, "resumes", pack.resumes, "sha", h.digest() == {hashlib.sha256(pack).digest()!r})
"""
    out = mpy.run(code, rom=True).stdout
    assert out.count("download: resuming pack at byte") == 2, out
    # Every byte was read once: each resume starts at the first byte not yet received.
    assert f"read {len(pack)} resumes 2 sha True" in out, out
    ranged = [r for r in host.requests if r.status == 206]
    assert len(ranged) == 3, host.requests


def test_beta_channel_follows_the_pointer_and_stable_devices_do_not(
    tmp_path: Path, mpy: Any, host: Any
) -> None:
    repo = Repo(host)
    repo.publish("1.0.0", app_files("1.0.0", n=3))
    stable = new_device(tmp_path / "s", mpy, host, repo)
    beta = new_device(tmp_path / "b", mpy, host, repo, channel="beta")
    # No pointer yet: a beta device installs the latest full release.
    assert run(beta, mpy).state["app_tag"] == "v1.0.0"
    assert run(stable, mpy).state["app_tag"] == "v1.0.0"
    repo.publish("1.1.0-beta.1", app_files("1.1.0-beta.1", n=3), channel="beta", prerelease=True)
    repo.point_beta("1.0.0", "v1.1.0-beta.1")

    assert run(beta, mpy).state["app_tag"] == "v1.1.0-beta.1"
    status = run(stable, mpy)
    assert "app: v1.0.0 is installed, nothing new" in text(status)
    assert status.state["app_tag"] == "v1.0.0"


def test_expired_signed_asset_url_is_renewed(tmp_path: Path, mpy: Any, host: Any) -> None:
    repo = Repo(host)
    _, pack = repo.publish("1.0.0", app_files("1.0.0", n=4))
    url = f"{host.url}/{repo.name}/releases/download/v1.0.0/pack.lcm"
    signed = signed_url(url)
    host.expire_signed_urls()
    host.clear_requests()

    code = f"""
from lcm_device.fetch import PackStream
from lcm_device.http import Client
buf = memoryview(bytearray(3072))  # as the engine's: 2 KB for HTTP (a signed URL), 1 KB data
client = Client(buf[:2048], timeout_ms=2000)
pack = PackStream(client, {url!r}, {len(pack)}, 100, log=print)
pack.cdn = {signed!r}  # resolved earlier; expired since
pack.open(0, {len(pack)})
got = 0
while got < {len(pack)}:
    got += pack.readinto(buf[2048 : 2048 + min(1024, {len(pack)} - got)])
print("read", got)
"""
    out = mpy.run(code, rom=True).stdout
    assert "download: asset URL expired (HTTP 403), renewing" in out, out
    assert f"read {len(pack)}" in out
    assert [r.status for r in host.requests] == [403, 302, 206], host.requests


def test_pointing_the_device_at_another_repo_installs_it_afresh(tmp_path: Path, mpy: Any) -> None:
    import json

    with running_host(tmp_path, repos=("acme/widget", "acme/gadget")) as host:
        widget = Repo(host)
        for i in range(3):  # the widget's sequence is 3 when the owner switches
            widget.publish(f"1.0.{i}", app_files(f"1.0.{i}", n=2))
        state = new_device(tmp_path, mpy, host, widget)
        assert run(state, mpy).state["app_tag"] == "v1.0.2"
        gadget = Repo(host, name="acme/gadget")
        gadget.publish("0.1.0", app_files("0.1.0", n=2))
        cfg_path = state / "lcm/state/config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["repo"] = gadget.name
        cfg["app_roots"] = [gadget.root.public_key.hex()]
        cfg_path.write_text(json.dumps(cfg))

        status = run(state, mpy)

        out = text(status)
        assert "app: repo changed to acme/gadget, installing it afresh" in out
        assert status.state["app_tag"] == "v0.1.0" and status.state["app_repo"] == "acme/gadget"
