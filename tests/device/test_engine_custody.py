"""Key custody end to end on the MicroPython device: a release key made in a real
PKCS#11 token (SoftHSM) signs releases published with `lcm release publish`; a
2-of-3 root rotation co-signed by holders in separate folders (one root in the
token) installs; a stable release signed by a beta-only key is refused, naming
the scope."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from publisher import signing
from publisher.cli import app
from tests.device.enginekit import Repo, app_files, new_device, run, text
from tests.hostserver import TEST_TOKEN, running_host
from tests.softhsm import softhsm


def lcm(*args: str, env: dict[str, str] | None = None) -> str:
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exit_code == 0, result.output
    return result.output


def write_app(folder: Path, version: str) -> Path:
    for path, data in app_files(version, n=3).items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(data)
    return folder


def test_token_key_rotation_and_scope_on_the_device(
    tmp_path: Path, mpy: Any, monkeypatch: Any
) -> None:
    hsm = softhsm()
    for name, value in hsm.env.items():
        monkeypatch.setenv(name, value)
    release_uri = hsm.uri(hsm.new_label("release"))
    root_c = hsm.uri(hsm.new_label("root-c"))
    keys = tmp_path / "keys"
    lcm("keys", "new", "release", "--dir", str(keys / "release"), "--pkcs11", release_uri)
    lcm("keys", "new", "root", "--dir", str(keys / "c"), "--pkcs11", root_c)
    old_pem, _, old_root = signing.generate(keys / "old", "root", None)
    a_pem, a_pub, _ = signing.generate(keys / "a", "root", None)
    b_pem, b_pub, _ = signing.generate(keys / "b", "root", None)
    _, ci_pub, ci = signing.generate(keys / "ci", "ci", None)
    release_pub = str(keys / "release" / "release.pub")
    sector1, sector2, sector3 = (tmp_path / f"s{n}.sector" for n in (1, 2, 3))
    lcm("certs", "build", "--repo", "acme/widget", "--root-key", str(old_pem),
        "--release-key", release_pub, "-o", str(sector1))  # fmt: skip

    with running_host(tmp_path) as host:
        repo = Repo(host, root=old_root, release_key=signing.open_signer(release_uri))
        env = {"GITHUB_TOKEN": TEST_TOKEN, "LCM_GITHUB_API": host.api_url}

        def publish(version: str, sector: Path) -> None:
            lcm("release", "publish", str(write_app(tmp_path / f"app-{version}", version)),
                "--repo", repo.name, "--tag", f"v{version}", "--key", release_uri,
                "--certs", str(sector), "--board", "esp32", "--retry-delay", "0",
                env=env)  # fmt: skip

        # 1. The token's key signs v1; the device (pinned to the old root) installs it.
        publish("1.0.0", sector1)
        state = new_device(tmp_path, mpy, host, repo)
        status = run(state, mpy)
        assert status.state["app_tag"] == "v1.0.0", text(status)

        # 2. The ceremony: a 2-of-3 root set (C in the token), each holder signing a
        #    copy on their own; the old root authorises the change.
        lcm("certs", "build", "--repo", repo.name, "--unsigned", "--previous", str(sector1),
            "--threshold", "2", "--root-key", str(a_pub), "--root-key", str(b_pub),
            "--root-key", str(keys / "c" / "root.pub"), "--release-key", release_pub,
            "-o", str(sector2))  # fmt: skip
        copies = []
        for holder, key in (("old", str(old_pem)), ("a", str(a_pem)), ("c", root_c)):
            copy = tmp_path / f"{holder}.sector"
            copy.write_bytes(sector2.read_bytes())
            lcm("certs", "sign", str(copy), "--key", key, "--previous", str(sector1))
            copies.append(str(copy))
        lcm("certs", "combine", *copies, "-o", str(sector2))
        publish("2.0.0", sector2)
        status = run(state, mpy)
        out = text(status)
        assert "cert sector: installed sequence 2 (2 of 3 roots" in out, out
        assert status.state["app_tag"] == "v2.0.0"

        # 3. Roots A and B (2 of 3) add a CI key limited to beta; the token key publishes v3.
        lcm("certs", "build", "--repo", repo.name, "--previous", str(sector2), "--threshold", "2",
            "--root-key", str(a_pem), "--root-key", str(b_pem),
            "--root-key", str(keys / "c" / "root.pub"), "--old-root-key", str(a_pem),
            "--release-key", release_pub, "--release-key", str(ci_pub),
            "--scope", f"{ci_pub}:beta", "-o", str(sector3))  # fmt: skip
        shown = json.loads(lcm("certs", "show", str(sector3), "--json"))
        assert shown["scopes"] == {ci.key_id.hex(): {"channels": ["beta"], "boards": []}}
        publish("3.0.0", sector3)
        status = run(state, mpy)
        assert status.state["app_tag"] == "v3.0.0", text(status)

        # 4. A stable release signed by the beta-only key (uploaded around the
        #    publisher, which refuses it): the device refuses it, naming the scope.
        repo.sector = sector3.read_bytes()
        repo.publish("4.0.0", app_files("4.0.0", n=3), seq=4, key=ci)
        status = run(state, mpy)
        out = text(status)
        assert f"release key {ci.key_id.hex()} is limited to channel beta" in out, out
        assert "ScopeError" in out and status.state["app_tag"] == "v3.0.0"
