"""Cert-sector self-update: key and root rotation without a cable; forged, replayed and
below-threshold sectors refused with the installed trust untouched."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.device.enginekit import Repo, app_files, new_device, run, text
from tests.hostserver import running_host
from tests.keyfactory import make_sector, new_signer

FILES = {v: app_files(v, n=3) for v in ("1.0.0", "2.0.0", "3.0.0", "4.0.0")}


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Any]:
    with running_host(tmp_path) as h:
        yield h


def installed_sector(state: Path) -> bytes:
    return (state / "lcm/state/certs/app.sector").read_bytes()


def device_on_v1(tmp_path: Path, mpy: Any, repo: Repo, **settings: Any) -> Path:
    repo.publish("1.0.0", FILES["1.0.0"])
    state = new_device(tmp_path, mpy, repo.host, repo, **settings)
    assert run(state, mpy).state["app_tag"] == "v1.0.0"
    assert installed_sector(state) == repo.sector
    return state


def test_release_key_rotation(tmp_path: Path, mpy: Any, host: Any) -> None:
    repo = Repo(host)
    state = device_on_v1(tmp_path, mpy, repo)
    old_key, new_key = repo.release_key, new_signer()
    repo.sector = make_sector(repo.name, [repo.root], [new_key], seq=2)
    repo.release_key = new_key
    repo.publish("2.0.0", FILES["2.0.0"])

    status = run(state, mpy)

    out = text(status)
    assert "cert sector: installed sequence 2" in out and "APP v2.0.0 running" in out
    assert status.state["app_tag"] == "v2.0.0"
    assert installed_sector(state) == repo.sector
    # The old key left the trust store: a release it signs is refused.
    repo.publish("3.0.0", FILES["3.0.0"], key=old_key)
    status = run(state, mpy)
    assert "manifest signed by an unknown key" in text(status)
    assert status.state["app_tag"] == "v2.0.0"


def test_root_rotation_then_old_root_is_no_longer_trusted(
    tmp_path: Path, mpy: Any, host: Any
) -> None:
    repo = Repo(host)
    state = device_on_v1(tmp_path, mpy, repo)
    old_root, new_root = repo.root, new_signer()
    # Signed by the old root (trusted) and the new one (accepting its role).
    repo.sector = make_sector(
        repo.name, [new_root], [repo.release_key], seq=2, signers=[old_root, new_root]
    )
    repo.publish("2.0.0", FILES["2.0.0"])
    out = text(run(state, mpy))
    assert "cert sector: installed sequence 2" in out and "APP v2.0.0 running" in out

    repo.sector = make_sector(repo.name, [new_root], [repo.release_key], seq=3)
    repo.publish("3.0.0", FILES["3.0.0"])
    assert run(state, mpy).state["app_tag"] == "v3.0.0"
    assert installed_sector(state) == repo.sector

    trusted = repo.sector
    repo.sector = make_sector(repo.name, [old_root], [repo.release_key], seq=4, signers=[old_root])
    repo.publish("4.0.0", FILES["4.0.0"])
    status = run(state, mpy)
    assert "sector signed by 0 of the trusted roots, 1 required" in text(status)
    assert status.state["app_tag"] == "v3.0.0" and installed_sector(state) == trusted


def test_forged_sector_is_refused(tmp_path: Path, mpy: Any, host: Any) -> None:
    repo = Repo(host)
    state = device_on_v1(tmp_path, mpy, repo)
    trusted = repo.sector
    mallory = new_signer()
    repo.sector = make_sector(repo.name, [mallory], [mallory], seq=9)
    repo.publish("2.0.0", FILES["2.0.0"], key=mallory)

    status = run(state, mpy)

    out = text(status)
    assert "app: refused v2.0.0: " in out
    assert "cert sector: SignatureError: sector signed by 0 of the trusted roots" in out
    assert status.state["app_tag"] == "v1.0.0" and "APP v1.0.0 running" in out
    assert installed_sector(state) == trusted


def test_replayed_old_sector_is_refused(tmp_path: Path, mpy: Any, host: Any) -> None:
    repo = Repo(host)
    state = device_on_v1(tmp_path, mpy, repo)
    first = repo.sector
    repo.sector = make_sector(repo.name, [repo.root], [repo.release_key], seq=2)
    repo.publish("2.0.0", FILES["2.0.0"])
    assert run(state, mpy).state["app_tag"] == "v2.0.0"
    second = repo.sector

    repo.sector = first
    repo.publish("3.0.0", FILES["3.0.0"])
    status = run(state, mpy)

    assert "RollbackError: sector sequence 1 is not above the trusted 2" in text(status)
    assert status.state["app_tag"] == "v2.0.0" and installed_sector(state) == second


def test_below_threshold_sector_is_refused(tmp_path: Path, mpy: Any, host: Any) -> None:
    roots = [new_signer(), new_signer()]
    repo = Repo(host, root=roots[0])
    repo.sector = make_sector(repo.name, roots, [repo.release_key], threshold=2)
    repo.publish("1.0.0", FILES["1.0.0"])
    state = tmp_path / "device"
    from publisher.device.simulate import provision

    provision(
        state,
        web_url=host.url,
        repo=repo.name,
        roots=[r.public_key for r in roots],
        build=mpy.build,
        settings={"app_threshold": 2, "gestures": False},
    )
    assert run(state, mpy).state["app_tag"] == "v1.0.0"
    trusted = repo.sector
    repo.sector = make_sector(
        repo.name, roots, [repo.release_key], seq=2, threshold=2, signers=[roots[0]]
    )
    repo.publish("2.0.0", FILES["2.0.0"])

    status = run(state, mpy)

    assert "sector signed by 1 of the trusted roots, 2 required" in text(status)
    assert status.state["app_tag"] == "v1.0.0" and installed_sector(state) == trusted
