"""The GitHub Actions workflow in docs/ really publishes: its shell steps run against `lcm host`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from cert_sector.assets import MANIFEST_ASSET
from publisher import signing
from publisher.manifest_format import parse_manifest
from tests.hostserver import github_client, running_host
from tests.keyfactory import make_sector

DOCS = Path(__file__).resolve().parent.parent / "docs"
WORKFLOW = DOCS / "github-actions-publish.yml"
TOKEN = "actions-token-7d1e"
REPO = "acme/widget"
SECRET = re.compile(r"\$\{\{\s*secrets\.(\w+)\s*\}\}")


def run_workflow(workspace: Path, env: dict[str, str], secrets: dict[str, str]) -> None:
    """Run the workflow's `run:` steps like a runner (bash -e), skipping setup actions."""
    workflow = yaml.safe_load(WORKFLOW.read_text())
    job = workflow["jobs"]["publish"]
    env = {**env, **{k: str(v) for k, v in workflow.get("env", {}).items()}}
    for step in job["steps"]:
        if "run" not in step or step["name"] == "Install lcm":
            continue  # checkout/setup-python/pip: the test already runs inside lcm's env
        step_env = {**env}
        for name, value in step.get("env", {}).items():
            step_env[name] = SECRET.sub(lambda m: secrets.get(m.group(1), ""), str(value))
        proc = subprocess.run(
            ["bash", "-e", "-c", step["run"]],
            cwd=workspace,
            env=step_env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, f"step {step['name']!r} failed:\n{proc.stdout}\n{proc.stderr}"


def test_workflow_triggers_on_version_tags_with_least_privilege():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    on = workflow.get("on", workflow.get(True))  # YAML 1.1 reads the key `on` as True
    assert on == {"push": {"tags": ["v*.*.*"]}}
    assert workflow["permissions"] == {"contents": "write"}
    text = WORKFLOW.read_text()
    assert "secrets.LCM_RELEASE_KEY" in text and "secrets.GITHUB_TOKEN" in text
    assert "--token" not in text.replace("--token-env", "")  # never a token argument


def test_workflow_publishes_verifies_and_removes_the_key(tmp_path):
    _, _, root = signing.generate(tmp_path / "keys", "root", None)
    key, _, signer = signing.generate(tmp_path / "keys", "release", None)
    workspace = tmp_path / "checkout"
    (workspace / "app" / "lib").mkdir(parents=True)
    (workspace / "app" / "main.py").write_text("import lib.blink\n")
    (workspace / "app" / "lib" / "blink.py").write_text("def run():\n    return 1\n")
    (workspace / "certs.sector").write_bytes(make_sector(REPO, [root], [signer]))
    runner_temp = tmp_path / "runner-temp"
    runner_temp.mkdir()
    with running_host(tmp_path, token=TOKEN, repos=(REPO,)) as host:
        env = {
            **os.environ,
            "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"],
            "GITHUB_REPOSITORY": REPO,
            "GITHUB_SHA": "0123456789abcdef0123",
            "RUNNER_TEMP": str(runner_temp),
            "LCM_GITHUB_API": host.api_url,
        }
        secrets = {"LCM_RELEASE_KEY": key.read_text(), "GITHUB_TOKEN": TOKEN}
        for tag in ("v1.0.0", "v1.1.0-beta.1"):
            run_workflow(workspace, {**env, "GITHUB_REF_NAME": tag}, secrets)
            published = json.loads((workspace / "publish.json").read_text())
            assert (published["tag"], published["state"]) == (tag, "published")
        assert not (runner_temp / "lcm" / "release.pem").exists()
        releases = {r.tag_name: r for r in github_client(host, TOKEN).get_repo(REPO).get_releases()}
        assert sorted(releases) == ["v1.0.0", "v1.1.0-beta.1"]
        assert releases["v1.1.0-beta.1"].prerelease and not releases["v1.0.0"].prerelease
        assert releases["v1.0.0"].body == "Release v1.0.0 (0123456789ab)"
        # --compile-mpy: modules ship as .mpy, the entry point main.py as source.
        (asset,) = [a for a in releases["v1.0.0"].get_assets() if a.name == MANIFEST_ASSET]
        _, _, chunks = asset.download_asset()
        manifest = parse_manifest(b"".join(chunks))
        assert [f.path for f in manifest.files] == ["lib/blink.mpy", "main.py"]
        assert published["sequence"] > manifest.seq  # the prerelease came after v1.0.0
