"""`lcm certs cas` against a real `lcm host` speaking TLS (a trustme root, an intermediate,
the host's certificate), and the warning of `certs build` for a sector without CAs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from typer.testing import CliRunner

from publisher.cli import app
from publisher.tlsanchors import AnchorError, check_ca, parse_host
from tests.hostserver import running_host
from tests.test_release_publish import APP, REPO, TOKEN, write_app

runner = CliRunner()


def lcm(*args: str, code: int = 0, env: dict[str, str] | None = None):
    result = runner.invoke(app, list(args), env=env)
    assert result.exit_code == code, result.output
    return result


def keys(tmp_path: Path) -> tuple[Path, Path]:
    lcm("keys", "new", "root", "--dir", str(tmp_path / "keys"))
    lcm("keys", "new", "release", "--dir", str(tmp_path / "keys"))
    return tmp_path / "keys" / "root.pem", tmp_path / "keys" / "release.pem"


def test_cas_keeps_the_root_of_the_verified_chain_and_devices_trust_it(tmp_path: Path) -> None:
    root = trustme.CA()
    intermediate = root.create_child_ca()
    cert = intermediate.issue_cert("127.0.0.1")
    certfile, keyfile, root_pem = (
        tmp_path / "host.pem",
        tmp_path / "host.key",
        tmp_path / "root.pem",
    )
    cert.private_key_and_cert_chain_pem.write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    root.cert_pem.write_to_path(str(root_pem))
    root_key, release_key = keys(tmp_path)
    with running_host(tmp_path / "h", token=TOKEN, repos=(REPO,), tls=(certfile, keyfile)) as host:
        # The machine's trust store does not know the test root: refused, saying what to do.
        result = lcm("certs", "cas", host.url, "-o", str(tmp_path / "no.pem"), code=1)
        assert "does not verify against this machine's trust store" in result.output
        assert "--ca-file" in result.output and not (tmp_path / "no.pem").exists()

        cas = tmp_path / "cas.pem"
        out = lcm("certs", "cas", host.url, "--ca-file", str(root_pem), "-o", str(cas), "--json")
        info = json.loads(out.stdout)
        (row,) = info["hosts"]
        assert len(row["chain"]) == 3 and info["roots"] == 1
        # Kept: the root (from the bundle), not the host's certificate or its intermediate.
        (kept,) = x509.load_pem_x509_certificates(cas.read_bytes())
        assert kept == x509.load_pem_x509_certificate(root_pem.read_bytes())

        sector = tmp_path / "certs.sector"
        built = lcm("certs", "build", "--repo", REPO, "--root-key", str(root_key),
                    "--release-key", str(release_key), "--ca", str(cas),
                    "--web-url", host.url, "-o", str(sector))  # fmt: skip
        assert "warning" not in built.output
        # A device's view: the release verifies over HTTPS with the sector's CA alone.
        env = {"GITHUB_TOKEN": TOKEN, "LCM_GITHUB_API": host.api_url}
        app_dir = write_app(tmp_path / "app", APP)
        lcm("release", "publish", str(app_dir), "--repo", REPO, "--tag", "v1.0.0",
            "--key", str(release_key), "--certs", str(sector),
            env={**env, "REQUESTS_CA_BUNDLE": str(root_pem)})  # fmt: skip
        ok = lcm("release", "verify", "--repo", REPO, "--certs", str(sector), env=env)
        assert "valid: acme/widget v1.0.0" in ok.stdout


def test_build_warns_when_a_sector_has_no_ca(tmp_path: Path) -> None:
    root_key, release_key = keys(tmp_path)
    base = ["certs", "build", "--repo", REPO, "--root-key", str(root_key)]
    base += ["--release-key", str(release_key), "-o", str(tmp_path / "s.sector")]
    result = lcm(*base)
    assert "warning: the sector has no TLS trust anchor" in result.output
    assert "lcm certs cas github.com objects.githubusercontent.com" in result.output
    result = lcm(*base, "--web-url", "https://ghe.example", "--json")
    (warning,) = json.loads(result.stdout)["warnings"]
    assert "lcm certs cas ghe.example -o cas.pem" in warning
    assert "warning" not in lcm(*base, "--web-url", "http://192.168.1.2:8000").output


def test_host_names_and_ca_rule() -> None:
    assert parse_host("github.com") == ("github.com", 443)
    assert parse_host("https://ghe.example:8443/x") == ("ghe.example", 8443)
    assert parse_host("10.0.0.2:8443") == ("10.0.0.2", 8443)
    for bad in ("http://github.com", "https://", "host:port"):
        with pytest.raises(AnchorError):
            parse_host(bad)
    leaf = x509.load_pem_x509_certificate(
        trustme.CA().issue_cert("x.example").cert_chain_pems[0].bytes()
    )
    with pytest.raises(AnchorError, match="is not a CA certificate"):
        check_ca(leaf, "the root of x.example")
