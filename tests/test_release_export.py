"""`lcm release export`: the static tree, re-runs, drafts, prereleases and bad tags."""

from __future__ import annotations

import io
import json
from pathlib import Path

from typer.testing import CliRunner

from publisher.cli import app
from tests.hostserver import TEST_REPO, TEST_TOKEN, github_client, running_host

runner = CliRunner()


def release(host, tag: str, assets: dict[str, bytes], **kw):
    rel = github_client(host).get_repo(TEST_REPO).create_git_release(tag, tag, "", draft=True)
    for name, data in assets.items():
        rel.upload_asset_from_memory(io.BytesIO(data), len(data), name)
    if not kw.get("draft"):
        rel.update_release(tag, "", draft=False, prerelease=kw.get("prerelease", False))


def export(host, to: Path) -> dict:
    result = runner.invoke(
        app,
        ["release", "export", "--repo", TEST_REPO, "--to", str(to), "--json",
         "--api-url", host.api_url, "--token-env", "EXPORT_TOKEN"],
        env={"EXPORT_TOKEN": TEST_TOKEN},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_the_tree_has_the_device_layout_and_re_runs_fetch_only_news(tmp_path):
    www = tmp_path / "www"
    releases = www / TEST_REPO / "releases"
    with running_host(tmp_path) as host:
        release(host, "v1.0.0", {"pack.lcm": b"one" * 100, "manifest.lcm": b"m1"})
        release(host, "v1.1.0-beta.1", {"pack.lcm": b"beta"}, prerelease=True)
        release(host, "v2.0.0", {"pack.lcm": b"draft"}, draft=True)
        first = export(host, www)
        assert first["latest"] == "v1.0.0" and first["kept"] == 0
        assert sorted(first["downloaded"]) == [
            "v1.0.0/manifest.lcm", "v1.0.0/pack.lcm", "v1.1.0-beta.1/pack.lcm"
        ]  # fmt: skip
        assert (releases / "latest").read_bytes() == b"v1.0.0\n"
        assert (releases / "download" / "v1.0.0" / "pack.lcm").read_bytes() == b"one" * 100
        assert not (releases / "download" / "v2.0.0").exists()  # drafts never leave the host
        again = export(host, www)
        assert again["downloaded"] == [] and again["kept"] == 3

        # A changed asset (same name, other bytes) is fetched again.
        rel = github_client(host).get_repo(TEST_REPO).get_release("v1.0.0")
        next(a for a in rel.get_assets() if a.name == "manifest.lcm").delete_asset()
        rel.upload_asset_from_memory(io.BytesIO(b"m2"), 2, "manifest.lcm")
        assert export(host, www)["downloaded"] == ["v1.0.0/manifest.lcm"]
        assert (releases / "download" / "v1.0.0" / "manifest.lcm").read_bytes() == b"m2"
        assert not [p for p in www.rglob(".*")]  # no temp file left behind


def test_a_tag_a_device_would_refuse_is_not_exported(tmp_path):
    with running_host(tmp_path) as host:
        release(host, "release/1", {"pack.lcm": b"x"})
        result = runner.invoke(
            app,
            ["release", "export", "--repo", TEST_REPO, "--to", str(tmp_path / "www"),
             "--api-url", host.api_url],
        )  # fmt: skip
    assert result.exit_code == 1
    assert "release tag 'release/1' cannot be exported" in result.output
    assert not (tmp_path / "www" / TEST_REPO / "releases" / "latest").exists()
