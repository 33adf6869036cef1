"""`lcm device simulate` from the command line (CPython side; the device runs in the unix port)."""

from __future__ import annotations

import json
from pathlib import Path

import trustme
from typer.testing import CliRunner

from publisher.cli import app
from publisher.device.simulate import der_from_pem
from tests.device.enginekit import ENGINE_HEAP_KB, Repo, app_files
from tests.hostserver import running_host

runner = CliRunner()
HEAP = f"{ENGINE_HEAP_KB}k"


def write_root(tmp_path: Path, repo: Repo) -> Path:
    pub = tmp_path / "root.pub"
    pub.write_bytes(repo.root.public_key)
    return pub


def simulate_args(state: Path, url: str, pub: Path, *more: str) -> list[str]:
    return [
        "device",
        "simulate",
        "--state",
        str(state),
        "--web-url",
        url,
        "--repo",
        "acme/widget",
        "--root",
        str(pub),
        "--heap",
        HEAP,
        *more,
    ]


def test_once_installs_and_prints_timeline_and_json(tmp_path: Path) -> None:
    with running_host(tmp_path) as host:
        repo = Repo(host)
        repo.publish("1.0.0", app_files("1.0.0", n=5))
        pub = write_root(tmp_path, repo)
        state = tmp_path / "dev"

        result = runner.invoke(app, simulate_args(state, host.url, pub, "--once", "--json"))

        assert result.exit_code == 0, result.output
        lines = result.output.splitlines()
        assert lines[0] == f"provisioned a blank device in {state}"
        assert "boot 1" in lines
        switched = "app: switched to app0 (v1.0.0), trial boot next"
        assert any(line.endswith(switched) for line in lines)
        assert "exit 75 (reset)" in lines and "exit 0 (app returned)" in lines
        assert "  | APP v1.0.0 running" in lines
        status = json.loads(lines[-1])
        assert status["app"] == "v1.0.0" and status["trial"] is False and status["exits"] == [75, 0]

        again = runner.invoke(app, simulate_args(state, host.url, pub, "--once", "--json"))
        assert again.exit_code == 0, again.output
        assert again.output.startswith(f"booting the device in {state} (its configuration is kept)")
        assert any(line.endswith("nothing new") for line in again.output.splitlines())


def test_full_install_over_https_costs_few_handshakes(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_pem, key_pem, ca_pem = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_pem))
    cert.private_key_pem.write_to_path(str(key_pem))
    ca.cert_pem.write_to_path(str(ca_pem))
    with running_host(tmp_path, tls=(cert_pem, key_pem)) as host:
        der = der_from_pem(ca_pem.read_bytes())
        repo = Repo(host, verify=str(ca_pem), cas=[der])
        repo.publish("1.0.0", app_files("1.0.0"))
        pub = write_root(tmp_path, repo)
        host.clear_requests()

        result = runner.invoke(
            app,
            simulate_args(
                tmp_path / "dev", host.url, pub, "--once", "--json", "--https-ca", str(ca_pem)
            ),
        )

        assert result.exit_code == 0, result.output
        assert json.loads(result.output.splitlines()[-1])["app"] == "v1.0.0"
        handshakes = {r.connection_id for r in host.requests}
        assert len(handshakes) <= 3, host.requests


def test_refuses_bad_arguments_with_a_clear_error(tmp_path: Path) -> None:
    pub = tmp_path / "root.pub"
    from tests.keyfactory import new_signer

    pub.write_bytes(new_signer().public_key)
    url = "http://127.0.0.1:9"
    cases = [
        (["--repo", "not-a-repo"], "repo must be owner/name"),
        (["--heap", "lots"], "--heap must look like 160k"),
        (["--root", str(tmp_path / "missing.pub")], "missing.pub"),
        (["--https-ca", str(pub)], "--https-ca is not a PEM certificate"),
        (["--web-url", "ftp://example.org"], "--web-url must be an http(s) URL"),
        (["--manager-repo", "acme/manager"], "--manager-repo needs at least one --manager-root"),
    ]
    for extra, message in cases:
        args = simulate_args(tmp_path / "dev", url, pub, "--once") + extra
        result = runner.invoke(app, args)
        assert result.exit_code != 0, (extra, result.output)
        assert message in result.output, (extra, result.output)
        assert not (tmp_path / "dev" / "main.py").exists()
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "precious.txt").write_text("keep me")
    result = runner.invoke(app, simulate_args(tmp_path / "busy", url, pub, "--once"))
    assert result.exit_code == 1 and "is not empty and holds no simulated device" in result.output
    assert (tmp_path / "busy" / "precious.txt").read_text() == "keep me"


def test_without_once_the_device_keeps_booting_until_max_boots(tmp_path: Path) -> None:
    with running_host(tmp_path) as host:
        repo = Repo(host)
        repo.publish("1.0.0", app_files("1.0.0", n=2))
        pub = write_root(tmp_path, repo)

        result = runner.invoke(
            app, simulate_args(tmp_path / "dev", host.url, pub, "--max-boots", "3", "--json")
        )

        assert result.exit_code == 0, result.output
        lines = result.output.splitlines()
        boots = [line for line in lines if line.startswith("boot ")]
        assert boots == ["boot 1", "boot 2", "boot 3"]
        # After the install and the trial boot, the app simply runs again: no check is due.
        assert any("check: not due for" in line for line in lines[lines.index("boot 3") :])
        status = json.loads(lines[-1])
        assert status["exits"] == [75, 0, 0] and status["app"] == "v1.0.0"
