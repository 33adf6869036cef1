"""`lcm release verify --certs` behind root rotations: it walks the release's certs.chain
where a device holding that sector would (docs/formats.md "Sector chain"), and names a
lying chain; with `--root` it walks it as a board pinned to those roots does on its first
install (imaged before the rotations)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from publisher.cli import app
from publisher.release.chain import build_chain
from tests.hostserver import TEST_REPO, running_host
from tests.keyfactory import make_sector, new_signer
from tests.test_host_mirror import ROOTS, release_with, replace_chain, rotations

runner = CliRunner()


def test_verify_with_an_older_sector_walks_the_chain_as_a_device_does(tmp_path: Path) -> None:
    sectors = rotations()
    old = tmp_path / "old.sector"
    old.write_bytes(sectors[0])
    root = tmp_path / "root0.pub"
    root.write_bytes(ROOTS[0].public_key)
    with running_host(tmp_path / "host") as host:
        for tag, sector in zip(("v1.0.0", "v1.1.0", "v1.2.0", "v2.0.0"), sectors, strict=True):
            release_with(host, tmp_path, tag, sector)

        def verify(*trust: str, code: int) -> str:
            args = ["release", "verify", "--repo", TEST_REPO, "--web-url", host.url, *trust]
            result = runner.invoke(app, args)
            assert result.exit_code == code, result.output
            return " ".join(result.output.split())

        # A device that installed sector 1 catches up through the chain: so does verify.
        assert f"valid: {TEST_REPO} v2.0.0" in verify("--certs", str(old), code=0)
        assert "cert sector 4" in verify("--certs", str(old), code=0)
        # A first install pinned to root 0 walks it from the first link root 0 signed.
        assert f"valid: {TEST_REPO} v2.0.0" in verify("--root", str(root), code=0)
        stranger_pub = tmp_path / "stranger.pub"
        stranger_pub.write_bytes(new_signer().public_key)
        out = verify("--root", str(stranger_pub), code=1)
        assert "no member is signed by the pinned roots" in out, out

        stranger = new_signer()
        forged = make_sector(TEST_REPO, [stranger], [stranger], seq=2)
        replace_chain(host, "v2.0.0", build_chain([sectors[0], forged, *sectors[2:3]], sectors[3]))
        out = verify("--certs", str(old), code=1)
        assert "certs.chain: link sequence 2: sector signed by 0 of the trusted roots" in out, out

        replace_chain(host, "v2.0.0", None)
        out = verify("--certs", str(old), code=1)
        assert "certs.sector: sector signed by 0 of the trusted roots" in out, out
        assert "no certs.chain in v2.0.0" in out, out
