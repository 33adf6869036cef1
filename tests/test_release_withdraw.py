"""`lcm release yank` and `lcm release delete` with a real simulated device.

A maintainer withdraws a bad release the two ways the docs offer; the device
that installed it keeps running it and takes the next release, and no device
that did not install it ever sees it (rules W1-W3 of publisher/release/withdraw.py).
Publishes run on the real clock: what the sequence rules guarantee is the point.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from publisher import sector_format as sf
from publisher.device.simulate import provision, simulate
from tests.device.enginekit import ENGINE_HEAP_KB, app_files
from tests.keyfactory import make_sector
from tests.test_release_publish import REPO, World, lcm, publish_cli, verify_cli, world, write_app

__all__ = ["world"]  # the fixture, shared with test_release_publish.py
HEAP = f"{ENGINE_HEAP_KB}k"


def release(world: World, tmp_path: Path, version: str, *extra: str, code: int = 0):
    source = write_app(tmp_path / version, app_files(version, n=3))
    return publish_cli(world, f"v{version}", "--board", "esp32", *extra, source=source, code=code)


def run_device(state: Path) -> str | None:
    return simulate(state, heap=HEAP).state.get("app_tag")


def listed(world: World, env: dict[str, str] | None = None) -> list[tuple[str, str]]:
    rows = json.loads(lcm(world, "release", "list", "--repo", REPO, "--json", env=env).stdout)
    return [(r["tag"], r["state"]) for r in rows]


def test_yank_and_delete_never_strand_a_device(world: World, tmp_path: Path) -> None:
    release(world, tmp_path, "1.0.0")
    state = tmp_path / "device"
    provision(
        state,
        web_url=world.host.url,
        repo=REPO,
        roots=[world.root.public_key],
        build=tmp_path / "mpy",
        settings={"log_host": "127.0.0.1"},
    )
    assert run_device(state) == "v1.0.0"
    release(world, tmp_path, "1.1.0")
    assert run_device(state) == "v1.1.0"

    result = lcm(world, "release", "yank", "v1.1.0", "--repo", REPO, "--reason", "bad sensor")
    assert "yanked: v1.1.0" in result.stdout and "latest release: v1.0.0" in result.stdout
    # W1: a device that has not installed it never will (verify resolves as devices do).
    assert json.loads(verify_cli(world, "--json").stdout)["tag"] == "v1.0.0"
    anonymous = {"LCM_GITHUB_API": world.host.api_url, "GITHUB_TOKEN": ""}
    assert listed(world, anonymous) == [("v1.0.0", "published")]
    assert listed(world) == [("v1.1.0", "yanked: bad sensor"), ("v1.0.0", "published")]
    # W3: the device on it keeps it (v1.0.0's sequence is lower: no going back).
    assert run_device(state) == "v1.1.0"
    again = lcm(world, "release", "yank", "v1.1.0", "--repo", REPO, "--json")
    assert json.loads(again.stdout)["action"] == "already yanked"
    # A re-run of the yanked tag's publish (a CI retry) does not un-yank it.
    assert (
        "v1.1.0 was yanked (yanked: bad sensor)" in release(world, tmp_path, "1.1.0", code=1).output
    )

    release(world, tmp_path, "1.1.1")
    assert run_device(state) == "v1.1.1"

    out = json.loads(lcm(world, "release", "delete", "v1.1.1", "--repo", REPO, "--json").stdout)
    assert (out["action"], out["latest"]) == ("deleted", "v1.0.0")
    assert out["beta_pointer"] == "v1.0.0/beta.tag -> v1.0.0"  # W2
    verify_cli(world, "--channel", "beta")
    assert run_device(state) == "v1.1.1"
    # The next release's sequence is above the deleted one's: the device takes it.
    assert release(world, tmp_path, "1.1.2", "--json")["sequence"] > out["sequence"]
    assert run_device(state) == "v1.1.2"
    missing = lcm(world, "release", "delete", "v9.9.9", "--repo", REPO, code=1)
    assert "acme/widget has no release v9.9.9" in missing.output


def test_list_shows_a_yanked_release_with_its_reason(world: World, tmp_path: Path) -> None:
    """`lcm release list` (table and --json) tells a yanked release, with the reason given
    to `lcm release yank`, from a draft still being published."""
    for version in ("1.0.0", "1.1.0", "1.2.0"):
        release(world, tmp_path, version)
    lcm(world, "release", "yank", "v1.1.0", "--repo", REPO, "--reason", "sensor driver crashes")
    lcm(world, "release", "yank", "v1.2.0", "--repo", REPO)  # no reason: the tag stands in
    world.github().get_repo(REPO).create_git_release("v2.0.0", "v2.0.0", "", draft=True)
    assert sorted(listed(world)) == [
        ("v1.0.0", "published"),
        ("v1.1.0", "yanked: sensor driver crashes"),
        ("v1.2.0", "yanked: v1.2.0"),
        ("v2.0.0", "draft"),
    ]
    # The table (one line a release, or stacked where it is wider than the terminal, as in
    # CI's): each state whole, on its release's line.
    lines = lcm(world, "release", "list", "--repo", REPO).stdout.splitlines()
    for state in ("published", "yanked: sensor driver crashes", "yanked: v1.2.0", "draft"):
        assert sum(f"  {state}" in line for line in lines) == 1, lines


def test_a_withdrawn_rotation_does_not_strand_its_devices(world: World, tmp_path: Path) -> None:
    """A yanked release that brought a newer cert sector: the next publish without
    --certs took the older sector of the releases left, which every device that had
    installed the yanked one refuses (S6); deleting it lost the sector for good (found
    from outside). A yanked release's sector counts; deleting the only release with the
    repo's newest sector is refused."""
    release(world, tmp_path, "1.0.0")
    sector2 = tmp_path / "certs2.sector"
    sector2.write_bytes(make_sector(REPO, [world.root], [world.signer], seq=2))
    source = write_app(tmp_path / "1.1.0", app_files("1.1.0", n=3))
    publish_cli(world, "v1.1.0", "--board", "esp32", source=source)  # sector 1 ...
    lcm(world, "release", "yank", "v1.1.0", "--repo", REPO)
    source = write_app(tmp_path / "1.2.0", app_files("1.2.0", n=3))
    args = ["release", "publish", str(source), "--repo", REPO, "--key", str(world.key),
            "--retry-delay", "0", "--board", "esp32"]  # fmt: skip
    lcm(world, *args, "--tag", "v1.2.0", "--certs", str(sector2))  # ... then sector 2
    lcm(world, "release", "yank", "v1.2.0", "--repo", REPO)
    source = write_app(tmp_path / "1.3.0", app_files("1.3.0", n=3))
    lcm(world, *args[:2], str(source), *args[3:], "--tag", "v1.3.0")  # no --certs
    published = {r.tag_name: r for r in world.releases()}
    sector = next(a for a in published["v1.3.0"].get_assets() if a.name == "certs.sector")
    assert sf.parse_sector(urllib.request.urlopen(sector.browser_download_url).read()).seq == 2
    # v1.3.0 carries sector 2 too: v1.2.0 may go. Then v1.3.0 holds the only copy.
    lcm(world, "release", "delete", "v1.2.0", "--repo", REPO)
    refused = lcm(world, "release", "delete", "v1.3.0", "--repo", REPO, code=1)
    assert "carries the repo's newest cert sector (sequence 2)" in " ".join(refused.output.split())
    lcm(world, "release", "yank", "v1.3.0", "--repo", REPO)  # the way the error names


def test_a_delete_of_a_tag_gone_already_repairs_the_beta_pointer(
    world: World, tmp_path: Path
) -> None:
    """A delete killed after the release went (or one made on the web page) left beta.tag
    naming it: beta devices failed on a 404, and the re-run only said there was no such
    release (found from outside). The re-run repairs, then says so."""
    release(world, tmp_path, "1.0.0")
    release(world, tmp_path, "1.1.0-beta.1", "--prerelease")
    verify_cli(world, "--channel", "beta")
    beta = next(r for r in world.releases() if r.tag_name == "v1.1.0-beta.1")
    beta.delete_release()  # as a killed run or the web page leaves it
    assert "v1.1.0-beta.1" in verify_cli(world, "--channel", "beta", code=1).output
    gone = lcm(world, "release", "delete", "v1.1.0-beta.1", "--repo", REPO, code=1)
    assert "has no release v1.1.0-beta.1 (deleted already?" in " ".join(gone.output.split())
    verify_cli(world, "--channel", "beta")  # beta.tag names v1.0.0 again
