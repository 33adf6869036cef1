"""A pull-through mirror: lcm host A over HTTPS is the upstream, mirror B serves plain HTTP
(as for an ESP8266 LAN), and a simulated device on B installs and updates. A tampered
upstream release is never mirrored, so the device never even sees it. A device several
root rotations behind catches up through the chain the mirror verified and serves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trustme

from cert_sector.assets import PACK_ASSET
from publisher.demo import make_repo
from publisher.host.mirror import MirrorConfig, MirrorSpec
from publisher.release.github import Session
from publisher.release.publish import PublishRequest, publish
from publisher.release.verify import Trust
from publisher.signing import load_signer
from tests.device.enginekit import Repo, app_files, new_device, run, text
from tests.hostserver import TEST_REPO, TEST_TOKEN, github_client, running_host
from tests.keyfactory import make_sector, new_signer


def source(tmp_path: Path, version: str) -> Path:
    folder = tmp_path / f"app-{version}"
    for name, data in app_files(version, n=4).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


def test_a_device_installs_and_updates_from_a_mirror(
    tmp_path: Path, mpy: Any, monkeypatch: Any
) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "ca.pem"))  # the publisher's PyGithub
    tls = (tmp_path / "cert.pem", tmp_path / "key.pem")
    keys = make_repo(TEST_REPO, tmp_path / "keys")
    signer = load_signer(keys.release_pem)

    def release(upstream: Any, version: str) -> None:
        request = PublishRequest(
            source(tmp_path, version), TEST_REPO, "v" + version, signer, sector=keys.sector
        )
        publish(Session(upstream.api_url, TEST_TOKEN), request)

    with running_host(tmp_path / "a", tls=tls) as upstream:
        release(upstream, "1.0.0")
        config = MirrorConfig(
            upstream.url,
            [MirrorSpec(TEST_REPO, Trust(roots=[keys.root.public_key]))],
            interval=3600,
            ca_file=str(tmp_path / "ca.pem"),
        )
        with running_host(tmp_path / "b", token=None, repos=(), mirror=config) as mirror:
            assert mirror.url.startswith("http://") and mirror.mirror is not None
            mirror.mirror.refresh()
            assert mirror.mirror.status[TEST_REPO].mirrored == ["v1.0.0"]
            state = new_device(tmp_path, mpy, mirror, keys)
            status = run(state, mpy)
            assert "APP v1.0.0 running" in text(status), text(status)

            release(upstream, "1.1.0")
            mirror.mirror.refresh()
            assert mirror.mirror.status[TEST_REPO].mirrored == ["v1.0.0", "v1.1.0"]
            status = run(state, mpy)
            assert "APP v1.1.0 running" in text(status), text(status)

            # Upstream v1.2.0's pack is swapped after publishing: the mirror refuses it.
            release(upstream, "1.2.0")
            rel = (
                github_client(upstream, verify=str(tmp_path / "ca.pem"))
                .get_repo(TEST_REPO)
                .get_release("v1.2.0")
            )
            pack = next(a for a in rel.get_assets() if a.name == PACK_ASSET)
            size = pack.size
            pack.delete_asset()
            rel.upload_asset_from_memory(b"\x00" * size, size, PACK_ASSET)
            mirror.mirror.refresh()
            status_of = mirror.mirror.status[TEST_REPO]
            assert status_of.mirrored == ["v1.0.0", "v1.1.0"]
            assert status_of.error is not None and PACK_ASSET in status_of.error
            assert not [r for r in mirror.requests if "v1.2.0" in r.path]
            status = run(state, mpy)
            assert "v1.1.0 is installed, nothing new" in text(status), text(status)
            # Nothing of v1.2.0 reached the mirror's store.
            tags = [
                r.tag_name
                for r in mirror.store.releases_of(mirror.store.repo(TEST_REPO), drafts=True)
            ]
            assert tags == ["v1.1.0", "v1.0.0"]


def test_a_device_behind_root_rotations_catches_up_through_a_mirror(
    tmp_path: Path, mpy: Any
) -> None:
    """The device installed v1.0.0 (sector 1) from the mirror; the repo then rotated its
    root three times before the mirror's next refresh. The mirror verifies v2.0.0 through
    certs.chain and serves the chain, and the device walks it link by link."""
    roots = [new_signer() for _ in range(4)]
    key = new_signer()
    sectors = [make_sector(TEST_REPO, [roots[0]], [key])]
    for n in (1, 2, 3):
        signers = [roots[n - 1], roots[n]]
        sectors.append(make_sector(TEST_REPO, [roots[n]], [key], seq=n + 1, signers=signers))

    def release(upstream: Any, version: str, sector: bytes) -> None:
        folder = tmp_path / f"app-{version}"
        for name, data in app_files(version, n=3).items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(data)
        request = PublishRequest(folder, TEST_REPO, "v" + version, key, sector=sector)
        publish(Session(upstream.api_url, TEST_TOKEN), request)

    with running_host(tmp_path / "a") as upstream:
        release(upstream, "1.0.0", sectors[0])
        spec = MirrorSpec(TEST_REPO, Trust(roots=[roots[0].public_key]))
        config = MirrorConfig(upstream.url, [spec], interval=3600)
        with running_host(tmp_path / "b", token=None, repos=(), mirror=config) as mirror:
            assert mirror.mirror is not None
            mirror.mirror.refresh()
            repo = Repo(upstream)
            repo.root = roots[0]  # what the device pins
            state = new_device(tmp_path, mpy, mirror, repo, http_timeout_ms=1000)
            assert "APP v1.0.0 running" in text(run(state, mpy))

            for version, sector in zip(("1.1.0", "1.2.0", "2.0.0"), sectors[1:], strict=True):
                release(upstream, version, sector)
            mirror.mirror.refresh()
            assert mirror.mirror.status[TEST_REPO].mirrored == ["v1.0.0", "v2.0.0"]
            status = run(state, mpy)
    out = text(status)
    assert "cert sector: chain link sequence 3 verified" in out, out
    assert "cert sector: installed sequence 4" in out
    assert status.state["app_tag"] == "v2.0.0" and "APP v2.0.0 running" in out
    assert (state / "lcm/state/certs/app.sector").read_bytes() == sectors[3]
