"""Catch up across root rotations: `lcm release publish` keeps every sector the repo has
published in `certs.chain`, and a device whose trusted sector is several rotations old
walks that chain, each link checked with the rotation rules (old roots' threshold, its
own roots' threshold, higher sequence). A missing or forged link is refused and the
device keeps running what it has; the genuine chain then brings it up to date."""

from __future__ import annotations

import shutil
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from publisher import sector_format as sf
from publisher.release import github as gh
from publisher.release.chain import build_chain, split_chain
from publisher.release.publish import PublishRequest, publish
from tests.device.attackserver import BASE, download, point, release_routes
from tests.device.conftest import MicroPython
from tests.device.enginekit import Repo, app_files, new_device, run, slot_is_complete, text
from tests.hostserver import TEST_TOKEN, running_host
from tests.keyfactory import make_sector, new_signer
from tests.test_http_servers import RawServer, response

ROOTS = [new_signer() for _ in range(4)]
KEY = new_signer()


def rotations(repo: str) -> list[bytes]:
    """Sector 1 (root 0), then three root rotations, each signed by the old and new root."""
    out = [make_sector(repo, [ROOTS[0]], [KEY])]
    for n in (1, 2, 3):
        signers = [ROOTS[n - 1], ROOTS[n]]
        out.append(make_sector(repo, [ROOTS[n]], [KEY], seq=n + 1, signers=signers))
    return out


def publish_app(host: Any, tmp: Path, version: str, sector: bytes) -> None:
    """`lcm release publish` of an app folder (the real publisher, through PyGithub)."""
    source = tmp / f"src-{version}"
    for path, data in app_files(version, n=3).items():
        (source / path).parent.mkdir(parents=True, exist_ok=True)
        (source / path).write_bytes(data)
    session = gh.Session(host.api_url, TEST_TOKEN, retry=gh.RetryPolicy(base_delay=0))
    req = PublishRequest(
        source=source, repo="acme/widget", tag=f"v{version}", signer=KEY, sector=sector
    )
    publish(session, req)


@pytest.fixture(scope="module")
def offline(
    tmp_path_factory: pytest.TempPathFactory, mpy_build: Path
) -> tuple[Path, Path, list[bytes]]:
    """A device on v1.0.0 (sector 1), then offline while the repo rotated its root three
    times; returns (its state, the host's data folder holding v1.0.0 to v2.0.0, sectors)."""
    tmp = tmp_path_factory.mktemp("chain")
    device = MicroPython(mpy_build, None, tmp)
    sectors = rotations("acme/widget")
    data = tmp / "host-data"
    with running_host(tmp, data_dir=data) as host:
        publish_app(host, tmp, "1.0.0", sectors[0])
        repo = Repo(host)
        repo.root = ROOTS[0]
        state = new_device(tmp, device, host, repo, http_timeout_ms=1000)
        assert run(state, device).state["app_tag"] == "v1.0.0"
        for version, sector in zip(("1.1.0", "1.2.0", "2.0.0"), sectors[1:], strict=True):
            publish_app(host, tmp, version, sector)
    return state, data, sectors


def copy(golden: Path, tmp_path: Path) -> Path:
    state = tmp_path / "device"
    shutil.copytree(golden, state)
    return state


def test_device_offline_across_three_root_rotations_catches_up(
    offline: tuple[Path, Path, list[bytes]], mpy: Any, tmp_path: Path
) -> None:
    golden, data, sectors = offline
    state = copy(golden, tmp_path)
    with running_host(tmp_path, data_dir=data) as host:
        # What the publisher put in v2.0.0: all four sectors, oldest first.
        url = f"{host.url}/acme/widget/releases/download/v2.0.0/certs.chain"
        with urllib.request.urlopen(url) as answer:
            assert split_chain(answer.read()) == sectors
        point(state, host.url)
        status = run(state, mpy)
    out = text(status)
    assert "cert sector: chain link sequence 2 verified" in out, out
    assert "cert sector: chain link sequence 3 verified" in out
    assert "cert sector: installed sequence 4" in out
    assert status.state["app_tag"] == "v2.0.0" and "APP v2.0.0 running" in out
    assert (state / "lcm/state/certs/app.sector").read_bytes() == sectors[3]


LINKS = {
    "missing link": (
        lambda s, forged: [s[0], s[2], s[3]],
        "chain link sequence 3: sector signed by 0 of the trusted roots",
    ),
    "forged link": (
        lambda s, forged: [s[0], forged, s[2], s[3]],
        "chain link sequence 2: sector signed by 0 of the trusted roots",
    ),
    "no chain": (
        None,
        "sector signed by 0 of the trusted roots, 1 required; no certs.chain in v2.0.0",
    ),
}


@pytest.mark.parametrize("case", list(LINKS))
def test_missing_or_forged_link_is_refused(
    case: str, offline: tuple[Path, Path, list[bytes]], mpy: Any, tmp_path: Path
) -> None:
    golden, _, sectors = offline
    state = copy(golden, tmp_path)
    stranger = new_signer()
    forged = make_sector("acme/widget", [stranger], [stranger], seq=2)
    members, reason = LINKS[case]
    with running_host(tmp_path) as host:
        repo = Repo(host)
    repo.release_key, repo.sector = KEY, sectors[3]
    # Above the sequence the publisher gave v1.0.0 (from the host clock).
    routes = release_routes(repo, "2.0.0", 0xF0000000)
    if members is not None:
        chain = build_chain(members(sectors, forged)[:-1], sectors[3])
        routes[download("v2.0.0", "certs.chain")] = [response(200, chain)]
    with RawServer(routes) as server:
        point(state, server.url())
        status = run(state, mpy)
        out = text(status)
        assert "app: refused v2.0.0: Refused: cert sector: SignatureError: " + reason in out, out
        assert status.state["app_tag"] == "v1.0.0" and "APP v1.0.0 running" in out
        assert slot_is_complete(state, "app0")
        assert (state / "lcm/state/certs/app.sector").read_bytes() == sectors[0]

        # The genuine chain next: the device catches up.
        routes[download("v2.0.0", "certs.chain")] = [
            response(200, build_chain(sectors, sectors[3]))
        ]
        status = run(state, mpy)
    assert status.state["app_tag"] == "v2.0.0" and "APP v2.0.0 running" in text(status)


@pytest.mark.parametrize("pinned", ["the first root", "a stranger"])
def test_a_new_device_pinned_before_the_rotations_walks_the_chain(
    pinned: str, offline: tuple[Path, Path, list[bytes]], mpy: Any, tmp_path: Path
) -> None:
    """A board imaged before three root rotations (its roots pinned, no sector yet) and
    first set up after them: a first install did not walk the chain, and such a board was
    refused for ever (found from outside). Links before the first one its roots signed
    are passed over; a board pinned to roots no link was signed by is still refused."""
    _, data, sectors = offline
    with running_host(tmp_path, data_dir=data) as host:
        repo = Repo(host)
        repo.root = ROOTS[0] if pinned == "the first root" else new_signer()
        state = new_device(tmp_path, mpy, host, repo, http_timeout_ms=1000)
        status = run(state, mpy)
    out = text(status)
    if pinned == "a stranger":
        assert "sector signed by 0 of the trusted roots" in out, out
        assert status.state.get("app_tag") is None
        return
    for seq in (1, 2, 3):
        assert f"cert sector: chain link sequence {seq} verified" in out, out
    assert status.state["app_tag"] == "v2.0.0" and "APP v2.0.0 running" in out
    assert (state / "lcm/state/certs/app.sector").read_bytes() == sectors[3]


def junk_link(repo: str, seq: int, owners: list[Any], named: bytes | None) -> bytes:
    """A well-formed sector signed by its own roots `owners` (keys of no one the device
    trusts), and, with `named`, a signature that names that key id and is not its."""
    body = sf.pack_body(
        sf.Sector(repo, seq, 0, len(owners), [o.public_key for o in owners], [], [])
    )
    sigs = [(o.key_id, o.sign(body)) for o in owners]
    if named is not None:
        sigs.insert(0, (named, sigs[0][1]))
    return sf.pack_sector(body, sigs)


def test_a_keyless_chain_costs_a_new_device_one_link_at_most(mpy: Any, tmp_path: Path) -> None:
    """A new device walks the chain from its pinned roots, so a keyless server can serve
    any chain to any such device. Links that do not name the pinned roots are passed over
    by their key ids alone; the first that names them is checked and must hold. Before,
    every failing link was passed over after its signature checks: 53 junk links of 9
    signatures held a check past its budget (found from outside)."""
    owners = [new_signer() for _ in range(4)]
    with running_host(tmp_path) as host:
        repo = Repo(host)
    state = new_device(tmp_path, mpy, host, repo, http_timeout_ms=2000)
    pinned = repo.root.key_id
    top = junk_link(repo.name, 0xFFFFFF00, owners, None)
    links = [junk_link(repo.name, seq, owners, pinned if seq >= 3 else None) for seq in range(1, 9)]
    routes = {
        BASE + "/latest": [response(302, b"", [("Location", f"{BASE}/tag/v9.0.0")])],
        download("v9.0.0", "certs.sector"): [response(200, top)],
        download("v9.0.0", "certs.chain"): [response(200, build_chain(links, top))],
    }
    with RawServer(routes) as server:
        point(state, server.url())
        status = run(state, mpy)
    out = text(status)
    assert "cert sector: SignatureError: chain link sequence 3: sector signed by 0" in out, out
    assert "chain link sequence 1 verified" not in out and status.state.get("app_tag") is None
