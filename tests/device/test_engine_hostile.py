"""Hostile releases and servers: each refused with a logged reason, the installed app untouched."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.device.enginekit import Repo, app_files, new_device, run, slot_is_complete, text
from tests.hostserver import running_host
from tests.keyfactory import make_manifest, new_signer


@pytest.fixture
def device(tmp_path: Path, mpy: Any) -> Iterator[tuple[Any, Repo, Path]]:
    """A device running v1.0.0 of a 4-file app."""
    with running_host(tmp_path) as host:
        repo = Repo(host)
        repo.publish("1.0.0", app_files("1.0.0", n=4))
        state = new_device(tmp_path, mpy, host, repo, http_timeout_ms=500)
        assert run(state, mpy).state["app_tag"] == "v1.0.0"
        yield host, repo, state


def refused(state: Path, mpy: Any, *reasons: str) -> str:
    status = run(state, mpy)
    out = text(status)
    for reason in reasons:
        assert reason in out, out
    assert status.exits == [75, 0], out
    assert status.state["app_tag"] == "v1.0.0" and status.state["app"] == "app0", out
    assert "APP v1.0.0 running" in out
    assert slot_is_complete(state, "app0")
    return out


V2 = app_files("2.0.0", n=4)


def test_bad_signature(device: Any, mpy: Any) -> None:
    _, repo, state = device
    m, p = make_manifest(repo.name, repo.release_key, V2, seq=5, version="2.0.0")
    forged = m[:-1] + bytes([m[-1] ^ 1])
    repo.publish("2.0.0", V2, manifest=forged, pack=p)
    refused(state, mpy, "app: refused v2.0.0: ", "bad manifest signature")


def test_release_for_a_newer_manager(device: Any, mpy: Any) -> None:
    """A release whose manifest asks for a manager newer than the device's (it would not run
    under this one): refused on the device, the app untouched, until the manager updates."""
    _, repo, state = device
    repo.publish("2.0.0", V2, min_manager="99.0.0")
    refused(state, mpy, "app: refused v2.0.0: ", "needs manager 99.0.0")


def test_unknown_key(device: Any, mpy: Any) -> None:
    _, repo, state = device
    repo.publish("2.0.0", V2, key=new_signer())
    refused(state, mpy, "app: refused v2.0.0: ", "manifest signed by an unknown key")


def test_replayed_older_manifest(device: Any, mpy: Any) -> None:
    _, repo, state = device
    old, pack = make_manifest(repo.name, repo.release_key, app_files("1.0.0", n=4), seq=1)
    repo.publish("2.0.0", V2, manifest=old, pack=pack)
    refused(state, mpy, "RollbackError", "manifest sequence 1 is not above the installed 1")


def test_manifest_of_another_repo(device: Any, mpy: Any) -> None:
    _, repo, state = device
    m, p = make_manifest("other/repo", repo.release_key, V2, seq=5, version="2.0.0")
    repo.publish("2.0.0", V2, manifest=m, pack=p)
    refused(state, mpy, "MismatchError", "manifest is for other/repo, expected acme/widget")


def test_release_for_another_board(device: Any, mpy: Any) -> None:
    _, repo, state = device
    repo.publish("2.0.0", V2, boards=("esp8266",))
    refused(state, mpy, "release is for esp8266, not esp32")


def test_file_bytes_that_differ(device: Any, mpy: Any) -> None:
    _, repo, state = device
    m, p = make_manifest(repo.name, repo.release_key, V2, seq=5, version="2.0.0")
    tampered = p[:-10] + b"X" * 10
    repo.publish("2.0.0", V2, manifest=m, pack=tampered)
    refused(state, mpy, "downloaded bytes do not match the manifest sha256")


def test_more_bytes_than_declared(device: Any, mpy: Any) -> None:
    _, repo, state = device
    m, p = make_manifest(repo.name, repo.release_key, V2, seq=5, version="2.0.0")
    repo.publish("2.0.0", V2, manifest=m, pack=p + b"endless" * 1000)
    refused(state, mpy, f"pack is {len(p) + 7000} bytes on the server, the manifest says {len(p)}")


def test_oversized_manifest_is_cut_off(device: Any, mpy: Any) -> None:
    _, repo, state = device
    from cert_sector.manifest import MAX_MANIFEST_SIZE

    repo.publish("2.0.0", V2, manifest=b"LCMM" + b"\0" * MAX_MANIFEST_SIZE)
    refused(state, mpy, "check failed: LimitError", f"passes max_bytes {MAX_MANIFEST_SIZE}")


def test_server_that_stops_sending(device: Any, mpy: Any) -> None:
    host, repo, state = device
    repo.publish("2.0.0", V2)
    host.inject_fault("stall_download", 10)
    out = refused(state, mpy, "check failed: StalledError")
    assert "download: retrying" in out


def test_not_enough_flash_is_refused_before_writing(device: Any, mpy: Any) -> None:
    _, repo, state = device
    big = app_files("2.0.0", n=4, size=40_000)
    repo.publish("2.0.0", big)
    used = sum(p.stat().st_size for p in state.rglob("*") if p.is_file())
    out = refused_with_env(state, mpy, {"LCM_FLASH_KB": str(used // 1024 + 60)})
    assert "app: refused v2.0.0: Refused: not enough flash: " in out
    assert not any((state / "lcm/app1").rglob("*.py"))


def refused_with_env(state: Path, mpy: Any, env: dict[str, str]) -> str:
    status = run(state, mpy, env=env)
    out = text(status)
    assert status.exits == [75, 0], out
    assert status.state["app_tag"] == "v1.0.0" and "APP v1.0.0 running" in out
    assert slot_is_complete(state, "app0")
    return out
