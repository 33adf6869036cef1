"""`lcm release publish|verify|list` end to end against a real `lcm host`, through PyGithub.

Nothing is faked: the host is the real one on loopback, the publisher talks
to it with PyGithub, and `verify` downloads through the browser URLs a device
uses. Faults (502 storms, dropped uploads) are injected by the host itself.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from github import Github, GithubException
from typer.testing import CliRunner

import publisher
from cert_sector.assets import (
    BETA_POINTER_ASSET,
    CHAIN_ASSET,
    MANIFEST_ASSET,
    PACK_ASSET,
    ROLLOUT_ASSET,
    SECTOR_ASSET,
    SUMS_ASSET,
)
from cert_sector.version import MANAGER_VERSION
from publisher import manifest_format as mf
from publisher import signing
from publisher.cli import app
from publisher.host.server import HostServer
from publisher.release import github as gh
from publisher.release.errors import HostError, VerifyError
from publisher.release.publish import PublishRequest, publish
from publisher.release.sequence import Ticker
from publisher.release.verify import Trust, verify_release
from tests.hostserver import github_client, running_host
from tests.keyfactory import make_manifest, make_sector, new_signer
from tests.test_release_build import esp32_image

TOKEN = "lcm-test-token-5f2c9a"
REPO = "acme/widget"
APP = {
    "main.py": b"import widget\nwidget.run()\n",
    "widget/__init__.py": b"def run():\n    print('widget 1')\n",
    "widget/led.py": b"PIN = 2\n",
    "data/config.json": b'{"blink": 3}\n',
}


class FastTicker(Ticker):
    """A local clock whose sleeps take no time: rule Q2's waits (two releases within one
    second) cost nothing in tests that publish many releases through the library."""

    def __init__(self) -> None:
        self.skipped = 0.0
        super().__init__(lambda: time.monotonic() + self.skipped, self._skip)

    def _skip(self, seconds: float) -> None:
        self.skipped += seconds


FAST = FastTicker()


class WaitingTicker(Ticker):
    """A local clock that stands still but for the waits (so rule Q2 waits once, surely),
    running `meanwhile` at each: another run working on the same draft."""

    def __init__(self, meanwhile: Callable[[], None]) -> None:
        self.skipped = 0.0
        self.meanwhile = meanwhile
        super().__init__(lambda: self.skipped, self._skip)

    def _skip(self, seconds: float) -> None:
        self.skipped += seconds
        self.meanwhile()


@pytest.fixture(autouse=True)
def fast_clock(monkeypatch):
    """Every publish in this module skips rule Q2's wait (sequences still go up by Q1);
    test_release_refusals.py checks, on the real clock, what the wait guarantees."""
    monkeypatch.setattr("publisher.release.publish.Ticker", FastTicker)


@dataclass
class World:
    tmp: Path
    host: HostServer
    root_pub: Path
    key: Path
    sector: Path
    signer: signing.Signer
    root: signing.Signer
    app: Path

    @property
    def env(self) -> dict[str, str]:
        return {"GITHUB_TOKEN": TOKEN, "LCM_GITHUB_API": self.host.api_url}

    def github(self) -> Github:
        return github_client(self.host, TOKEN, retry=None)

    def releases(self, repo: str = REPO) -> list:
        return list(self.github().get_repo(repo).get_releases())


def write_app(root: Path, files: dict[str, bytes]) -> Path:
    for path, data in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return root


@pytest.fixture
def world(tmp_path):
    with running_host(tmp_path, token=TOKEN, repos=(REPO, "acme/other")) as host:
        _, root_pub, root = signing.generate(tmp_path / "keys", "root", None)
        key, _, signer = signing.generate(tmp_path / "keys", "release", None)
        sector = tmp_path / "certs.sector"
        sector.write_bytes(make_sector(REPO, [root], [signer]))
        app_dir = write_app(tmp_path / "app", APP)
        yield World(tmp_path, host, root_pub, key, sector, signer, root, app_dir)


def lcm(world: World, *args: str, code: int = 0, env: dict[str, str] | None = None):
    result = CliRunner().invoke(app, list(args), env=world.env if env is None else env)
    assert result.exit_code == code, result.output
    return result


def publish_cli(world: World, tag: str, *extra: str, source: Path | None = None, code: int = 0):
    args = [
        "release",
        "publish",
        str(source or world.app),
        "--repo",
        REPO,
        "--tag",
        tag,
        "--key",
        str(world.key),
        "--certs",
        str(world.sector),
        "--retry-delay",
        "0",
        *extra,
    ]
    result = lcm(world, *args, code=code)
    return json.loads(result.stdout) if code == 0 and "--json" in extra else result


def verify_cli(world: World, *extra: str, code: int = 0):
    args = ["release", "verify", "--repo", REPO, "--root", str(world.root_pub), *extra]
    return lcm(world, *args, code=code)


def test_publish_then_verify_and_list(world):
    before = int(time.time())
    out = publish_cli(world, "v1.0.0", "--board", "esp32", "--json")
    seq = out["sequence"]
    # Rule Q1: the sequence is the host's clock (Unix seconds).
    assert before <= seq < time.time()
    assert (out["state"], out["channel"], out["kind"]) == ("published", "stable", "files")
    assert set(out["assets"]) == {
        PACK_ASSET,
        SECTOR_ASSET,
        CHAIN_ASSET,
        SUMS_ASSET,
        BETA_POINTER_ASSET,
        MANIFEST_ASSET,
    }
    assert out["url"].endswith(f"/{REPO}/releases/tag/v1.0.0")

    (release,) = world.releases()
    assert (release.tag_name, release.draft, release.prerelease) == ("v1.0.0", False, False)

    ok = json.loads(verify_cli(world, "--json", "--web-url", world.host.url).stdout)
    assert (ok["valid"], ok["tag"], ok["sequence"], ok["files"]) == (True, "v1.0.0", seq, len(APP))
    assert ok["boards"] == ["esp32"]
    # The same with the trusted sector instead of pinned roots, and by tag.
    lcm(world, "release", "verify", "--repo", REPO, "--certs", str(world.sector), "--tag", "v1.0.0")

    rows = json.loads(lcm(world, "release", "list", "--repo", REPO, "--json").stdout)
    assert [(r["tag"], r["sequence"], r["channel"], r["kind"], r["state"]) for r in rows] == [
        ("v1.0.0", seq, "stable", "files", "published")
    ]
    assert rows[0]["assets"][PACK_ASSET] == sum(len(d) for d in APP.values())
    table = lcm(world, "release", "list", "--repo", REPO).stdout
    assert "v1.0.0" in table and "stable" in table
    # Notes as the host has them (anyone with the token wrote them): text, not terminal codes.
    (release,) = world.releases()
    release.update_release(release.tag_name, "notes \x1b[2J\x1b]0;x\x07 [b]end")
    table = lcm(world, "release", "list", "--repo", REPO).stdout
    assert "\x1b" not in table and "\\x1b[2J" in table and "[b]end" in table, repr(table)


def test_the_token_is_never_printed(world):
    result = publish_cli(world, "v1.0.0")
    assert TOKEN not in result.output
    assert "published" in result.output


def test_verify_with_another_root_names_both_sides_key_ids(world, tmp_path):
    """The usual cause of "signed by 0 of the trusted roots": a --root that is not the
    repo's. The refusal shows the sector's roots and the trusted ones by key id."""
    from cert_sector.keys import key_id_hex
    from publisher.signing import load_public_key

    publish_cli(world, "v1.0.0")
    _, other, _ = signing.generate(tmp_path / "other", "root", None)
    args = ["release", "verify", "--repo", REPO, "--root", str(other)]
    result = lcm(world, *args, code=1)
    repo_root = key_id_hex(load_public_key(world.root_pub))
    given = key_id_hex(load_public_key(other))
    assert "signed by 0 of the trusted roots, 1 required" in result.output, result.output
    assert f"its roots are {repo_root}, the trusted ones {given}" in result.output, result.output


@pytest.mark.parametrize(
    ("asset", "tamper", "named"),
    [
        (PACK_ASSET, lambda b: b[:5] + bytes([b[5] ^ 1]) + b[6:], "file data/config.json"),
        (MANIFEST_ASSET, lambda b: b[:12] + b"\xff" + b[13:], "bad manifest signature"),
        (SECTOR_ASSET, lambda b: b[:-1] + bytes([b[-1] ^ 1]), "signed by 0 of the trusted roots"),
        # Flip a bit of the first digit (writing a fixed digit left it unchanged 1 time in 16).
        (SUMS_ASSET, lambda b: bytes([b[0] ^ 1]) + b[1:], "does not list the SHA-256"),
        (BETA_POINTER_ASSET, lambda b: b"v0.0.1\n", "points at v0.0.1"),
        (PACK_ASSET, lambda b: b + b"extra", "more than the"),
    ],
)
def test_tampering_any_asset_fails_verify_naming_it(world, asset, tamper, named):
    publish_cli(world, "v1.0.0")
    verify_cli(world)
    # Someone with the token but not the release key replaces an asset.
    release = world.github().get_repo(REPO).get_release("v1.0.0")
    (old,) = [a for a in release.get_assets() if a.name == asset]
    _, _, chunks = old.download_asset()
    original = b"".join(chunks)
    old.delete_asset()
    forged = tamper(original)
    release.upload_asset_from_memory(
        io.BytesIO(forged), len(forged), asset, "application/octet-stream"
    )
    result = verify_cli(world, code=1)
    assert f"error: {asset}: " in result.output
    assert named in result.output


def test_publishing_twice_is_idempotent(world):
    first = publish_cli(world, "v1.0.0", "--json")
    world.host.clear_requests()
    second = publish_cli(world, "v1.0.0", "--json")
    assert second["state"] == "already published"
    assert second["sequence"] == first["sequence"]
    assert set(second["assets"].values()) == {"kept"}
    uploads = [r for r in world.host.requests if r.method == "POST"]
    assert uploads == []
    assert [r.tag_name for r in world.releases()] == ["v1.0.0"]
    verify_cli(world)


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs, no exception handler sees it."""


def _kill_at(monkeypatch, k: int, after: bool) -> list[str]:
    """Make the process "die" at its k-th HTTP request: before it is sent, or after the
    host answered but before the answer is used. Returns the requests seen ("GET /path")."""
    original = requests.adapters.HTTPAdapter.send
    counter = itertools.count()
    seen: list[str] = []

    def send(self, request, *args, **kwargs):
        n = next(counter)
        seen.append(f"{request.method} {request.path_url.split('?')[0]}")
        if n == k and not after:
            raise Killed(seen[-1])
        response = original(self, request, *args, **kwargs)
        if n == k and after:
            raise Killed(seen[-1])
        return response

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", send)
    return seen


def _interrupt_at(monkeypatch, wanted: str) -> None:
    """A Ctrl-C (KeyboardInterrupt) just before the first HTTP request "METHOD /path..."
    starting with `wanted` is sent."""
    original = requests.adapters.HTTPAdapter.send

    def send(self, request, *args, **kwargs):
        if f"{request.method} {request.path_url}".startswith(wanted):
            raise KeyboardInterrupt
        return original(self, request, *args, **kwargs)

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", send)


@pytest.mark.parametrize(
    ("request_line", "said"),
    [
        ("GET /api/v3/repos/", "nothing was written to the host for v1.0.0"),
        ("POST /api/uploads/", "v1.0.0 is not published: a draft may hold what was uploaded"),
        ("PATCH /api/v3/repos/", "stopped while making v1.0.0 live: it is a draft or published"),
    ],
)
def test_ctrl_c_during_publish_says_what_is_left_and_a_rerun_finishes(
    world, monkeypatch, request_line, said
):
    _interrupt_at(monkeypatch, request_line)
    result = publish_cli(world, "v1.0.0", code=130)
    monkeypatch.undo()
    line = next(line for line in result.stderr.splitlines() if "interrupted:" in line)
    assert said in line, result.stderr
    if "nothing was written" not in said:
        assert line.endswith("run the same command again to finish"), line
    again = publish_cli(world, "v1.0.0", "--json")
    assert again["state"] == "published"
    assert [(r.tag_name, r.draft) for r in world.releases()] == [("v1.0.0", False)]


def _session(world: World) -> gh.Session:
    return gh.Session(world.host.api_url, TOKEN, retry=gh.RetryPolicy(base_delay=0))


def _request(
    world: World, tag: str, repo: str = REPO, sector: bytes | None = None
) -> PublishRequest:
    return PublishRequest(
        source=world.app,
        repo=repo,
        tag=tag,
        signer=world.signer,
        sector=sector or world.sector.read_bytes(),
    )


@pytest.mark.parametrize("tag", ["v1.1.0", "v1.1.0-beta.1"])
def test_publish_killed_at_any_step_then_rerun_ends_with_one_release(world, monkeypatch, tag):
    """Killed at every HTTP request of a publish, then re-run: one complete release (for
    a prerelease, the beta pointer on v1.0.0 is moved too, by delete + upload)."""
    beta = "-" in tag

    def request(repo: str, sector: bytes) -> PublishRequest:
        req = _request(world, tag, repo, sector)
        req.prerelease = beta
        return req

    # The steps of a publish when a release exists already.
    publish(_session(world), _request(world, "v1.0.0"), ticker=FAST)
    steps = _kill_at(monkeypatch, -1, False)
    publish(_session(world), request(REPO, world.sector.read_bytes()), ticker=FAST)
    monkeypatch.undo()
    # Every request: before it leaves, and after the host acted on it (answer lost).
    kills = list(itertools.product(range(len(steps)), (False, True)))
    assert len(steps) > 8

    for n, (k, after) in enumerate(kills):
        # A fresh repo each time, with a published release already there.
        repo = f"acme/kill{n}"
        world.host.create_repo(repo)
        sector = make_sector(repo, [world.root], [world.signer])
        publish(_session(world), _request(world, "v1.0.0", repo, sector), ticker=FAST)
        _kill_at(monkeypatch, k, after)
        with pytest.raises(Killed):
            publish(_session(world), request(repo, sector), ticker=FAST)
        monkeypatch.undo()
        result = publish(_session(world), request(repo, sector), ticker=FAST)
        assert result.state in ("published", "already published"), (steps[k], after)
        releases = world.releases(repo)
        assert sorted((r.tag_name, r.draft, r.prerelease) for r in releases) == [
            ("v1.0.0", False, False),
            (tag, False, beta),
        ], (steps[k], after)
        seqs = {r.tag_name: mf.parse_manifest(_manifest_of(world, r)).seq for r in releases}
        assert seqs[tag] > seqs["v1.0.0"], (steps[k], after)
        channel = "beta" if beta else "stable"
        newest = verify_release(world.host.url, repo, Trust(sector=sector), channel=channel)
        assert (newest.tag, newest.sequence) == (tag, seqs[tag]), (steps[k], after)
        stable = verify_release(world.host.url, repo, Trust(sector=sector))
        assert stable.beta_pointer == tag, (steps[k], after)


def test_force_killed_at_any_step_never_reuses_the_sequence(world, monkeypatch, tmp_path):
    """--force replaces v1.0.0 with new files; killed anywhere and re-run, the result has
    a sequence above the old one, so devices that installed the old content update."""
    changed = write_app(tmp_path / "changed", {**APP, "widget/led.py": b"PIN = 5\n"})

    def forced(repo: str, sector: bytes) -> PublishRequest:
        req = _request(world, "v1.0.0", repo, sector)
        req.source, req.force = changed, True
        return req

    def prepare(repo: str) -> tuple[bytes, int]:
        world.host.create_repo(repo)
        sector = make_sector(repo, [world.root], [world.signer])
        first = publish(_session(world), _request(world, "v1.0.0", repo, sector), ticker=FAST)
        return sector, first.sequence

    sector, _ = prepare("acme/force-count")
    steps = _kill_at(monkeypatch, -1, False)
    publish(_session(world), forced("acme/force-count", sector), ticker=FAST)
    monkeypatch.undo()
    assert any(s.startswith("PATCH /api/v3/repos/acme/force-count/releases/assets/") for s in steps)
    kills = list(itertools.product(range(len(steps)), (False, True)))

    for n, (k, after) in enumerate(kills):
        repo = f"acme/force{n}"
        sector, old = prepare(repo)
        _kill_at(monkeypatch, k, after)
        with pytest.raises(Killed):
            publish(_session(world), forced(repo, sector), ticker=FAST)
        monkeypatch.undo()
        result = publish(_session(world), forced(repo, sector), ticker=FAST)
        assert result.sequence > old, (steps[k], after, result.sequence)
        releases = world.releases(repo)
        assert [(r.tag_name, r.draft) for r in releases] == [("v1.0.0", False)], (steps[k], after)
        verified = verify_release(world.host.url, repo, Trust(sector=sector), installed_seq=old)
        assert (verified.tag, verified.sequence) == ("v1.0.0", result.sequence)
        names = {a.name for r in releases for a in r.get_assets()}
        assert "manifest.lcm.replaced" not in names


def _manifest_of(world: World, release) -> bytes:
    (asset,) = [a for a in release.get_assets() if a.name == MANIFEST_ASSET]
    _, _, chunks = asset.download_asset()
    return b"".join(chunks)


def test_a_wrong_source_key_or_sector_is_named_before_a_missing_token(world):
    env = {**{k: v for k, v in world.env.items() if k != "GITHUB_TOKEN"}, "GITHUB_TOKEN": ""}
    good = {"source": str(world.app), "--key": str(world.key), "--certs": str(world.sector)}
    for wrong, words in [
        ("source", "does not exist"),
        ("--key", "typo"),
        ("--certs", "typo"),
    ]:
        given = {**good, wrong: good[wrong] + ".typo"}
        args = ["release", "publish", given.pop("source"), "--repo", REPO, "--tag", "v1.0.0"]
        args += [part for pair in given.items() for part in pair]
        output = lcm(world, *args, code=1, env=env).output
        assert words in output and "GITHUB_TOKEN" not in output, output
    assert world.releases() == []


def test_wrong_or_missing_token(world):
    env = {**world.env, "GITHUB_TOKEN": "not-the-token"}
    args = ["release", "publish", str(world.app), "--repo", REPO, "--tag", "v1.0.0"]
    args += ["--key", str(world.key), "--certs", str(world.sector)]
    result = lcm(world, *args, code=1, env=env)
    assert "rejected the token in $GITHUB_TOKEN (401" in result.output
    assert "not-the-token" not in result.output
    env = {k: v for k, v in world.env.items() if k != "GITHUB_TOKEN"}
    env_clean = {**env, "GITHUB_TOKEN": ""}
    assert "$GITHUB_TOKEN is not set" in lcm(world, *args, code=1, env=env_clean).output
    result = lcm(world, *args, "--token-env", "MY_TOKEN", code=1, env={**env, "MY_TOKEN": "x"})
    assert "$MY_TOKEN" in result.output
    assert world.releases() == []


def test_missing_repo(world):
    args = ["release", "publish", str(world.app), "--repo", "acme/nope", "--tag", "v1.0.0"]
    args += ["--key", str(world.key), "--certs", str(world.sector)]
    assert "repository acme/nope not found" in lcm(world, *args, code=1).output
    result = lcm(
        world, "release", "verify", "--repo", "acme/nope", "--root", str(world.root_pub), code=1
    )
    assert "error: latest release: " in result.output


def test_mistakes_in_where_to_look_are_named_with_what_to_fix(world):
    """An --api-url without /api/v3, a --tag that has no release: each error says what the
    user likely got wrong (found by a new user following the docs)."""
    no_v3 = world.host.url
    result = lcm(world, "release", "list", "--repo", REPO, "--api-url", no_v3, code=1)
    assert f"repository {REPO} not found at {no_v3}" in result.output
    assert "an lcm host's (or GitHub Enterprise's) API URL ends in /api/v3" in result.output
    publish_cli(world, "v1.0.0")
    result = verify_cli(world, "--web-url", world.host.url, "--tag", "v9.9.9", code=1)
    assert "certs.sector: missing from the release" in result.output
    assert "is there a release tagged 'v9.9.9'?" in " ".join(result.output.split())


def test_an_unreachable_github_points_at_web_url():
    """`lcm release verify` without --web-url talks to github.com; when that cannot be
    reached (no network, or the releases are elsewhere) the error names the option. The
    transport fails here without a network: no request leaves the machine."""
    import requests

    from publisher.release.errors import VerifyError
    from publisher.release.web import Browser

    class Unreachable(requests.adapters.BaseAdapter):
        def send(self, request, **kwargs):
            raise requests.ConnectionError("Name or service not known")

        def close(self):
            pass

    browser = Browser([], None)
    browser.http.mount("https://github.com/", Unreachable())
    url = "https://github.com/me/app/releases/latest"
    with pytest.raises(VerifyError) as caught:
        browser.location(url, "latest release")
    assert f"cannot reach {url} (another host than GitHub: --web-url)" in str(caught.value)


def test_sequence_must_exceed_every_release_drafts_included(world):
    publish_cli(world, "v1.0.0", "--seq", "5")
    result = publish_cli(world, "v1.1.0", "--seq", "3", code=1)
    assert "--seq 3 is not above sequence 5 of release v1.0.0" in result.output
    assert "--seq 5 is not above" in publish_cli(world, "v1.1.0", "--seq", "5", code=1).output
    assert [r.tag_name for r in world.releases()] == ["v1.0.0"]  # refused before any write
    # A draft's manifest counts too (a publish that died before publishing).
    # Its sequence is ahead of the clock, so the dry run (which does not wait) shows it.
    ahead = int(time.time()) + 5
    draft = world.github().get_repo(REPO).create_git_release("v9.0.0", "v9.0.0", "", draft=True)
    manifest, _ = make_manifest(REPO, world.signer, {"main.py": b"x"}, seq=ahead, version="9.0.0")
    draft.upload_asset_from_memory(io.BytesIO(manifest), len(manifest), MANIFEST_ASSET)
    assert publish_cli(world, "v1.1.0", "--dry-run", "--json")["sequence"] == ahead + 1
    # --seq above the host's clock is refused: deleting that release would free its sequence.
    result = publish_cli(world, "v1.1.0", "--seq", str(ahead + 100), code=1)
    assert "is above the host's clock" in result.output


@pytest.mark.parametrize("claimed", [0xFFFFFF00, 0xFFFFFFFF])
def test_a_sequence_far_past_the_clock_counts_only_if_signed_by_the_sector(world, claimed):
    """Anyone with the repo's token can plant a draft whose manifest (signed by a key of
    their own) claims a sequence far ahead: counted, the next publish had the release key
    sign a fast-forwarded sequence, or could not publish at all (found from outside)."""
    publish_cli(world, "v1.0.0")
    draft = world.github().get_repo(REPO).create_git_release("v9.0.0", "v9.0.0", "", draft=True)
    planted, _ = make_manifest(REPO, new_signer(), {"main.py": b"x"}, seq=claimed, version="9.0.0")
    draft.upload_asset_from_memory(io.BytesIO(planted), len(planted), MANIFEST_ASSET)
    result = publish_cli(
        world, "v1.1.0", "--json", source=write_app(world.tmp / "b", {"main.py": b"y"})
    )
    assert result["sequence"] < int(time.time()) + 10
    assert any("v9.0.0: sequence" in w and "ignored" in w for w in result["warnings"]), result
    # Signed by a release key of the sector, it counts (an old --seq ahead of the clock).
    draft.delete_release()
    ahead = int(time.time()) + 2 * 86400
    draft = world.github().get_repo(REPO).create_git_release("v9.0.1", "v9.0.1", "", draft=True)
    own, _ = make_manifest(REPO, world.signer, {"main.py": b"x"}, seq=ahead, version="9.0.1")
    draft.upload_asset_from_memory(io.BytesIO(own), len(own), MANIFEST_ASSET)
    dry = publish_cli(
        world, "v1.2.0", "--dry-run", "--json", source=write_app(world.tmp / "c", {"main.py": b"z"})
    )
    assert dry["sequence"] == ahead + 1


def test_same_tag_different_content_needs_force_and_a_new_sequence(world):
    first = publish_cli(world, "v1.0.0", "--json")["sequence"]
    (world.app / "widget" / "led.py").write_bytes(b"PIN = 4\n")
    result = publish_cli(world, "v1.0.0", code=1)
    assert (
        "v1.0.0 is already published with different content "
        f"(sequence {first}: file widget/led.py differs)" in result.output
    )
    assert "--force" in result.output
    result = publish_cli(world, "v1.0.0", "--prerelease", code=1)
    assert "its channel is 'stable'" in result.output
    out = publish_cli(world, "v1.0.0", "--force", "--json")
    assert out["state"] == "published" and out["sequence"] > first
    # The same files with a rotated cert sector are different content too.
    rotated = world.tmp / "rotated.sector"
    rotated.write_bytes(make_sector(REPO, [world.root], [world.signer], seq=2))
    result = lcm(
        world,
        "release",
        "publish",
        str(world.app),
        "--repo",
        REPO,
        "--tag",
        "v1.0.0",
        "--key",
        str(world.key),
        "--certs",
        str(rotated),
        code=1,
    )
    assert "its certs.sector differs" in result.output
    assert [r.tag_name for r in world.releases()] == ["v1.0.0"]
    ok = json.loads(verify_cli(world, "--json", "--installed-seq", str(first)).stdout)
    assert ok["sequence"] == out["sequence"]


def test_a_certs_file_that_is_no_sector_is_named(world):
    garbage = world.tmp / "garbage.sector"
    garbage.write_bytes(b"not a sector at all")
    args = ["release", "publish", str(world.app), "--repo", REPO, "--tag", "v1.0.0"]
    args += ["--key", str(world.key), "--certs", str(garbage)]
    result = lcm(world, *args, code=1)
    assert str(garbage) in result.output, result.output
    assert world.releases() == []


def test_key_not_in_the_cert_sector(world):
    other_key, _, _ = signing.generate(world.tmp / "keys", "stranger", None)
    args = ["release", "publish", str(world.app), "--repo", REPO, "--tag", "v1.0.0"]
    args += ["--key", str(other_key), "--certs", str(world.sector)]
    result = lcm(world, *args, code=1)
    assert f"is not a release key of the cert sector (--certs {world.sector})" in result.output
    assert world.releases() == []
    # A sector of another repo is refused as well.
    _, _, root = signing.generate(world.tmp / "k2", "root", None)
    (world.tmp / "other.sector").write_bytes(make_sector("acme/other", [root], [world.signer]))
    args[-1] = str(world.tmp / "other.sector")
    args[args.index("--key") + 1] = str(world.key)
    assert "sector is for acme/other" in lcm(world, *args, code=1).output
    # Without --certs and no release yet there is no sector to check against.
    args = args[:-2]
    assert "pass --certs" in lcm(world, *args, code=1).output


def test_later_releases_reuse_the_published_sector(world):
    publish_cli(world, "v1.0.0")
    args = ["release", "publish", str(world.app), "--repo", REPO, "--tag", "v1.0.1"]
    lcm(world, *args, "--key", str(world.key))
    verify_cli(world)


def test_bad_source(world, tmp_path):
    result = publish_cli(world, "v1.0.0", source=tmp_path / "missing", code=1)
    assert "does not exist" in result.output
    (tmp_path / "empty").mkdir()
    assert (
        "holds no files" in publish_cli(world, "v1.0.0", source=tmp_path / "empty", code=1).output
    )
    big = write_app(tmp_path / "big", {"main.py": b"x"})
    with open(big / "blob.bin", "wb") as f:
        f.truncate(mf.MAX_FILE_SIZE + 1)  # sparse: refused from its size, never read
    assert "more than 16777216 per file" in publish_cli(world, "v1.0.0", source=big, code=1).output
    # Rule P6: no main.py at the top (here only in a subfolder): every device would roll it back.
    headless = write_app(tmp_path / "headless", {"app/main.py": b"x", "lib/util.py": b"y"})
    result = publish_cli(world, "v1.0.0", source=headless, code=1)
    assert "SOURCE has no main.py (or main.mpy) at its top" in result.output, result.output
    esc = write_app(tmp_path / "esc", {"main.py": b"x"})
    os.symlink(world.key, esc / "key.pem")
    result = publish_cli(world, "v1.0.0", source=esc, code=1)
    assert "'key.pem' is a symlink to" in result.output and "outside SOURCE" in result.output
    assert "--tag 'latest' is not v + MAJOR" in publish_cli(world, "latest", code=1).output
    assert (
        "--kind must be files or firmware"
        in publish_cli(world, "v1.0.0", "--kind", "x", code=1).output
    )
    result = publish_cli(world, "v1.0.0", "--kind", "firmware", "--compile-mpy", code=1)
    assert "--compile-mpy is for app folders" in result.output
    assert world.releases() == []


def test_502_storm_is_retried(world):
    world.host.inject_fault("status502", 6)
    out = publish_cli(world, "v1.0.0", "--json")
    assert out["state"] == "published"
    assert out["retries"] >= 6
    assert [r.status for r in world.host.requests].count(502) == 6
    verify_cli(world)


def test_endless_502_storm_fails_clearly_and_a_rerun_finishes(world):
    world.host.inject_fault("status502", 1000)
    result = publish_cli(world, "v1.0.0", "--retries", "3", code=1)
    assert "kept failing (502" in result.output and "after 3 attempts" in result.output
    # Each retry is told as it comes, not only the final failure: no silent wait.
    notices = [line for line in result.output.splitlines() if line.startswith("retrying: ")]
    assert [n.split(";")[1].split(" in ")[0] for n in notices] == [
        " attempt 2 of 3",
        " attempt 3 of 3",
    ], result.output
    assert all(": 502 " in n for n in notices), result.output
    world.host.state.faults._pending.clear()  # the outage is over
    assert publish_cli(world, "v1.0.0", "--json")["state"] == "published"
    assert [r.tag_name for r in world.releases()] == ["v1.0.0"]
    verify_cli(world)


def test_a_host_that_refuses_connections_is_retried_aloud(world):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    url = f"http://127.0.0.1:{port}/api/v3"
    result = publish_cli(world, "v1.0.0", "--api-url", url, "--retries", "2", code=1)
    assert (
        f"retrying: opening repository {REPO}: [Errno 111] Connection refused; attempt 2 of 2"
        in result.output
    ), result.output
    assert f"connection to {url} failed after 2 attempts" in result.output, result.output


def test_a_host_name_that_does_not_resolve_fails_at_once(world):
    """A name that does not resolve (no DNS, a typo) is said once, with the host and the
    way to point lcm elsewhere: not retried 8 times over a minute as a 502 or a refused
    connection is (above)."""
    url = "https://nonexistent.invalid/api/v3"  # RFC 6761: never resolves
    anonymous = {"LCM_GITHUB_API": url, "GITHUB_TOKEN": ""}
    for result in (
        lcm(world, "release", "list", "--repo", REPO, code=1, env=anonymous),
        publish_cli(world, "v1.0.0", "--api-url", url, "--retries", "8", code=1),
    ):
        assert "retrying:" not in result.output, result.output
        (line,) = result.output.splitlines()
        assert line.startswith(f"error: opening repository {REPO}: cannot resolve the host "
                               "name nonexistent.invalid ("), line  # fmt: skip
        assert "not retried" in line and "--api-url (or $LCM_GITHUB_API)" in line, line
        assert f"(now {url})" in line, line
    assert world.releases() == []
    assert publish_cli(world, "v1.0.0", "--json")["state"] == "published"  # the real host


def test_a_temporary_failure_of_name_resolution_is_retried():
    """EAI_AGAIN ("Temporary failure in name resolution": a resolver that did not answer in
    time) is retried like a dropped connection; an unknown name is said at once (above)."""
    import socket

    import requests

    from publisher.release.github import _unresolved_host

    def lookup_error(errno: int) -> requests.ConnectionError:
        try:
            try:
                raise socket.gaierror(errno, "lookup failed")
            except socket.gaierror as exc:
                raise requests.ConnectionError("Max retries exceeded") from exc
        except requests.ConnectionError as wrapped:
            return wrapped

    assert _unresolved_host(lookup_error(socket.EAI_AGAIN)) is None
    assert _unresolved_host(lookup_error(socket.EAI_NONAME)) == ""


def test_dropped_uploads_are_replaced(world):
    world.host.inject_fault("drop_upload", 3)
    out = publish_cli(world, "v1.0.0", "--json")
    assert out["state"] == "published"
    (release,) = world.releases()
    assert {a.state for a in release.get_assets()} == {"uploaded"}
    verify_cli(world)


def test_upload_dropped_every_time_fails_then_rerun_completes(world):
    world.host.inject_fault("drop_upload", 1000)
    result = publish_cli(world, "v1.0.0", "--retries", "2", code=1)
    assert "uploading pack.lcm to v1.0.0" in result.output
    assert "failed after 2 attempts" in result.output
    world.host.state.faults._pending.clear()
    (draft,) = world.releases()
    assert draft.draft  # nothing half-uploaded is visible to devices
    assert "latest release" in verify_cli(world, code=1).output
    assert publish_cli(world, "v1.0.0", "--json")["state"] == "published"
    verify_cli(world)


def test_beta_channel_pointer(world):
    out = publish_cli(world, "v1.1.0-beta.1", "--prerelease", "--json")
    assert out["channel"] == "beta"
    assert any("no full release yet" in w for w in out["warnings"])
    # With no full release there is no pointer: beta devices (and verify) find nothing.
    assert "has no published full release" in verify_cli(world, "--channel", "beta", code=1).output
    publish_cli(world, "v1.0.0")
    verify_cli(world, "--channel", "beta")  # the pointer names v1.0.0 itself
    out = publish_cli(world, "v1.1.0-beta.2", "--prerelease", "--json")
    assert out["beta_pointer"] == "v1.0.0/beta.tag -> v1.1.0-beta.2"
    beta = json.loads(verify_cli(world, "--channel", "beta", "--json").stdout)
    assert (beta["tag"], beta["channel"], beta["sequence"]) == (
        "v1.1.0-beta.2",
        "beta",
        out["sequence"],
    )
    stable = json.loads(verify_cli(world, "--json").stdout)
    assert (stable["tag"], stable["beta_pointer"]) == ("v1.0.0", "v1.1.0-beta.2")
    out = publish_cli(world, "v1.1.0", "--json")
    assert out["beta_pointer"] == "v1.1.0/beta.tag -> v1.1.0"
    beta = json.loads(verify_cli(world, "--channel", "beta", "--json").stdout)
    assert beta["tag"] == "v1.1.0"


def test_firmware_release(world, tmp_path):
    image = tmp_path / "micropython.bin"
    image.write_bytes(esp32_image())
    out = publish_cli(
        world, "v2.0.0", "--kind", "firmware", "--board", "esp32", "--json", source=image
    )
    assert out["kind"] == "firmware"
    ok = json.loads(verify_cli(world, "--json").stdout)
    assert (ok["kind"], ok["files"], ok["pack_size"]) == ("firmware", 1, image.stat().st_size)
    elf = tmp_path / "app.elf"
    elf.write_bytes(b"\x7fELF" + bytes(60))
    result = publish_cli(
        world, "v2.0.1", "--kind", "firmware", "--board", "esp32", source=elf, code=1
    )
    assert "not an ESP firmware image" in result.output


def test_a_malformed_repo_is_refused_before_any_request(world):
    """Named at once by every command that takes --repo, not after the host's retries."""
    for args in (
        ["release", "list", "--repo", "acme"],
        ["release", "verify", "--repo", "acme/widget/x", "--root", str(world.root_pub)],
        ["release", "yank", "v1.0.0", "--repo", "acme/wid get"],
        ["fleet", "status", "--repo", "acme", "--mqtt", "mqtt://127.0.0.1:9"],
    ):
        result = lcm(world, *args, code=2)
        assert "Invalid value for '--repo': repo " in result.output, result.output
    assert world.host.requests == []


def test_verify_argument_errors(world):
    base = ["release", "verify", "--repo", REPO]
    assert "either --root" in lcm(world, *base, code=1).output
    both = [*base, "--root", str(world.root_pub), "--certs", str(world.sector)]
    assert "either --root" in lcm(world, *both, code=1).output
    tagged = [*base, "--root", str(world.root_pub), "--tag", "v1.0.0", "--channel", "beta"]
    assert "not both" in lcm(world, *tagged, code=1).output
    seq = publish_cli(world, "v1.0.0", "--json")["sequence"]
    assert (
        "certs.sector: missing from the release (404"
        in verify_cli(world, "--tag", "v7.0.0", code=1).output
    )
    assert (
        "--channel: must be stable or beta"
        in verify_cli(world, "--channel", "nightly", code=1).output
    )
    assert (
        "--web-url: must be an http(s) URL, got 'ftp://host'"
        in verify_cli(world, "--web-url", "ftp://host", code=1).output
    )
    _, wrong_root, _ = signing.generate(world.tmp / "k3", "root", None)
    result = lcm(world, *base, "--root", str(wrong_root), code=1)
    assert "certs.sector: sector signed by 0 of the trusted roots" in result.output
    result = verify_cli(world, "--installed-seq", str(seq), code=1)
    assert f"not above the installed {seq}" in result.output


def test_web_url_is_derived_from_the_api_url():
    assert gh.web_url_for("https://api.github.com") == "https://github.com"
    assert gh.web_url_for("https://ghe.example/api/v3/") == "https://ghe.example"
    assert gh.web_url_for("http://127.0.0.1:8000/api/v3") == "http://127.0.0.1:8000"
    with pytest.raises(Exception, match="pass --web-url"):
        gh.web_url_for("https://example.com/weird")


def test_verify_rejects_a_manifest_from_another_tag(world):
    publish_cli(world, "v1.0.0")
    publish_cli(world, "v1.0.1")
    repo = world.github().get_repo(REPO)
    old = _manifest_of(world, repo.get_release("v1.0.0"))
    new = repo.get_release("v1.0.1")
    (asset,) = [a for a in new.get_assets() if a.name == MANIFEST_ASSET]
    asset.delete_asset()
    new.upload_asset_from_memory(io.BytesIO(old), len(old), MANIFEST_ASSET)
    result = verify_cli(world, code=1)
    assert "manifest.lcm: is for version 1.0.0, but the release tag is v1.0.1" in result.output
    with pytest.raises(VerifyError) as info:
        verify_release(world.host.url, REPO, Trust(sector=world.sector.read_bytes()))
    assert info.value.asset == MANIFEST_ASSET


def test_progress_bars_on_stderr_unless_json(world):
    result = publish_cli(world, "v1.0.0")
    assert "pack.lcm" in result.stderr and "certs.sector" in result.stderr
    # Every bar ends full, with a speed (rich's own column showed "?" for small assets).
    bars = [line for line in result.stderr.splitlines() if "━" in line]
    assert len(bars) >= 5 and all(line.rstrip().endswith("/s") for line in bars), bars
    for line in bars:
        done, total = re.search(r"([\d.]+)/([\d.]+) (bytes|kB|MB)", line).group(1, 2)
        assert done == total, line
    assert re.search(r"published: acme/widget v1.0.0 \(sequence \d+, stable\)", result.stdout)
    out = CliRunner().invoke(
        app,
        [
            "release",
            "publish",
            str(world.app),
            "--repo",
            REPO,
            "--tag",
            "v1.0.1",
            "--key",
            str(world.key),
            "--json",
        ],
        env=world.env,
    )
    assert out.exit_code == 0, out.output
    assert out.stderr == ""
    assert json.loads(out.stdout)["state"] == "published"


def test_list_without_token_and_an_exhausted_rate_limit(world, tmp_path):
    publish_cli(world, "v1.0.0", "--board", "esp8266")
    world.github().get_repo(REPO).create_git_release("v2.0.0", "v2.0.0", "", draft=True)
    anonymous = {"LCM_GITHUB_API": world.host.api_url, "GITHUB_TOKEN": ""}
    rows = json.loads(lcm(world, "release", "list", "--repo", REPO, "--json", env=anonymous).stdout)
    assert [(r["tag"], r["boards"]) for r in rows] == [("v1.0.0", ["esp8266"])]  # no draft
    rows = json.loads(lcm(world, "release", "list", "--repo", REPO, "--json").stdout)
    assert [(r["tag"], r["state"], r["problem"]) for r in rows] == [
        ("v1.0.0", "published", None),
        ("v2.0.0", "draft", "no manifest.lcm"),
    ]
    # Anonymous API requests are limited (60 an hour on GitHub; 2 here): a list
    # of an empty repo costs 2, so the second one finds the limit used up.
    with running_host(tmp_path / "limited", token=TOKEN, repos=(REPO,), rate_limit=2) as limited:
        env = {"LCM_GITHUB_API": limited.api_url, "GITHUB_TOKEN": ""}
        lcm(world, "release", "list", "--repo", REPO, env=env)
        result = lcm(world, "release", "list", "--repo", REPO, code=1, env=env)
        assert "the API rate limit is used up until" in result.output


def test_retry_policy_honours_secondary_rate_limits_and_gives_up_on_client_errors():
    waits: list[float] = []
    session = gh.Session(
        "http://127.0.0.1:9/api/v3", None, retry=gh.RetryPolicy(attempts=3, sleep=waits.append)
    )
    answers = [
        GithubException(
            403, {"message": "You have exceeded a secondary rate limit"}, {"Retry-After": "7"}
        ),
        GithubException(502, {"message": "Bad Gateway"}, {}),
    ]

    def flaky() -> str:
        if answers:
            raise answers.pop(0)
        return "done"

    assert session.call("a step", flaky) == "done"
    assert waits[0] == 7 and 0 <= waits[1] <= 2 and session.retries == 2

    def unprocessable() -> str:
        raise GithubException(422, {"message": "Validation Failed"}, {})

    waits.clear()
    with pytest.raises(HostError, match="another step: 422 Validation Failed"):
        session.call("another step", unprocessable)
    assert waits == []  # a client error is not retried

    def down() -> str:
        raise requests.ConnectionError("connection refused")

    with pytest.raises(HostError, match=r"connection to .* failed after 3 attempts"):
        session.call("a third step", down)
    assert len(waits) == 2


def test_sigkill_mid_publish_then_rerun_ends_with_one_release(world, tmp_path):
    """A real `lcm release publish` process killed with SIGKILL once its first upload landed."""
    # A pack of a few MB, so the kill usually lands during the uploads.
    big = write_app(tmp_path / "bigapp", {**APP, "data/blob.bin": os.urandom(6 * 1024 * 1024)})
    args = [sys.executable, "-c", "from publisher.cli import main; main()", "release", "publish"]
    args += [str(big), "--repo", REPO, "--tag", "v3.0.0", "--key", str(world.key)]
    args += ["--certs", str(world.sector), "--json"]
    env = {**os.environ, **world.env}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        while proc.poll() is None and not any(
            r.path.startswith("/api/uploads/") for r in list(world.host.requests)
        ):
            threading.Event().wait(0.005)
    finally:
        proc.kill()
        proc.communicate()
    rerun = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout)["state"] in ("published", "already published")
    assert [(r.tag_name, r.draft) for r in world.releases()] == [("v3.0.0", False)]
    verify_cli(world, "--tag", "v3.0.0")


def test_https_host_verified_with_the_sectors_cas(world, tmp_path):
    """Over HTTPS, verify checks the host's certificate against the trusted sector's CAs."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    certfile, keyfile = tmp_path / "host.pem", tmp_path / "host.key"
    cert.private_key_and_cert_chain_pem.write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    ca_pem = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    ca_der = x509.load_pem_x509_certificate(ca_pem.read_bytes()).public_bytes(Encoding.DER)
    with running_host(
        tmp_path / "tls", token=TOKEN, repos=(REPO,), tls=(certfile, keyfile)
    ) as host:
        assert host.url.startswith("https://")
        with_ca = tmp_path / "with-ca.sector"
        with_ca.write_bytes(make_sector(REPO, [world.root], [world.signer], cas=[ca_der]))
        # The publisher (PyGithub, requests) takes the CA bundle from the environment.
        env = {"GITHUB_TOKEN": TOKEN, "LCM_GITHUB_API": host.api_url}
        args = ["release", "publish", str(world.app), "--repo", REPO, "--tag", "v1.0.0"]
        args += ["--key", str(world.key), "--certs", str(with_ca)]
        lcm(world, *args, env={**env, "REQUESTS_CA_BUNDLE": str(ca_pem)})
        verify = ["release", "verify", "--repo", REPO]
        ok = lcm(world, *verify, "--certs", str(with_ca), env=env)
        assert "valid: acme/widget v1.0.0" in ok.stdout
        # Without the CA (a sector without it, no --ca-file) the host is not trusted.
        result = lcm(world, *verify, "--root", str(world.root_pub), code=1, env=env)
        assert "error: latest release: cannot reach" in result.output
        assert "CERTIFICATE_VERIFY_FAILED" in result.output
        ok = lcm(world, *verify, "--root", str(world.root_pub), "--ca-file", str(ca_pem), env=env)
        assert "valid: acme/widget v1.0.0" in ok.stdout


def test_publish_manager_uploads_what_a_manager_slot_holds(world, tmp_path):
    args = ["release", "publish", "--manager", "--repo", REPO, "--tag", "v0.1.0"]
    args += ["--key", str(world.key), "--certs", str(world.sector), "--json"]
    out = json.loads(lcm(world, *args).stdout)
    assert out["state"] == "published"
    release = world.github().get_repo(REPO).get_release("v0.1.0")
    paths = [f.path for f in mf.parse_manifest(_manifest_of(world, release)).files]
    assert "lcm.py" in paths and "lcm_device/update.mpy" in paths
    # The messages the .mpy files name by number come with them (publisher/mpytext.py).
    assert all(p in ("lcm.py", "lcm_device/catalog.txt") or p.endswith(".mpy") for p in paths)
    assert "lcm_device/catalog.txt" in paths
    assert "lcm_device/main.mpy" not in paths  # /main.py's source is not part of a slot
    both = lcm(world, *args[:2], str(world.app), *args[2:], code=1)
    assert "give SOURCE (an app folder or a firmware .bin) or --manager" in both.output


def test_list_is_readable_at_80_columns_and_in_a_pipe_with_notes(world, tmp_path):
    publish_cli(world, "v1.0.0", "--board", "esp32", "--board", "esp8266", "--notes", "First.")
    long_tag = "v1.1.0-beta.20261204.1"
    notes = "Fixes the <b>sensor</b> [bold]driver[/bold].\nSecond line."
    publish_cli(world, long_tag, "--prerelease", "--notes", notes)
    result = CliRunner().invoke(
        app, ["release", "list", "--repo", REPO], env={**world.env, "COLUMNS": "80"}
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), lines
    # Too wide for one table with this tag: each tag whole on its own line, columns below.
    assert lines[0] == "TAG" and lines[1].split()[:3] == ["SEQUENCE", "CHANNEL", "KIND"]
    assert lines[2] == long_tag and lines[3].split()[1:5] == ["beta", "files", "any", "published"]
    # Notes under their release, as written (no markup interpreted), nothing cut.
    assert lines[4:6] == [f"    {line}" for line in notes.splitlines()]
    assert lines[6] == "v1.0.0"
    assert lines[7].split()[1:5] == ["stable", "files", "esp32,esp8266", "published"]
    assert re.search(r"  \d{4}-\d\d-\d\d \d\d:\d\d$", lines[7]), lines[7]  # a date, UTC
    assert lines[8] == "    First."
    rows = json.loads(lcm(world, "release", "list", "--repo", REPO, "--json").stdout)
    assert [r["notes"] for r in rows] == [notes, "First."]
    # The host's release page shows the notes too, escaped.
    page = requests.get(f"{world.host.url}/{REPO}/releases/tag/{long_tag}", timeout=10).text
    assert "Fixes the &lt;b&gt;sensor&lt;/b&gt; [bold]driver[/bold]." in page
    # Short tags: one table, one line per release.
    world.github().get_repo(REPO).get_release(long_tag).delete_release()
    table = lcm(world, "release", "list", "--repo", REPO, env={**world.env, "COLUMNS": "80"})
    head, first, note = table.stdout.splitlines()
    assert head.split() == [
        "TAG",
        "SEQUENCE",
        "CHANNEL",
        "KIND",
        "BOARDS",
        "STATE",
        "PUBLISHED",
        "(UTC)",
    ]
    assert first.startswith("v1.0.0  ") and len(first) <= 80 and note == "    First."


def test_lcm_version():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"lcm {publisher.__version__} (device manager {MANAGER_VERSION})\n"
    pyproject = (Path(__file__).parent.parent / "pyproject.toml").read_text()
    assert 'version = { attr = "publisher.__version__" }' in pyproject  # one place to bump


def test_an_older_release_whose_beta_pointer_went_stale_verifies_with_a_warning(world):
    """Devices read beta.tag from the latest full release only. An older full release's
    pointer names what was newest then; once that is deleted, `verify --tag` of the older
    release says so as a warning instead of failing (it failed: found by a host campaign)."""
    publish_cli(world, "v1.0.0")
    publish_cli(world, "v1.1.0", "--prerelease")  # v1.0.0's beta.tag now names it
    publish_cli(world, "v1.2.0")
    lcm(world, "release", "delete", "v1.1.0", "--repo", REPO)
    web = ("--web-url", world.host.url)
    older = verify_cli(world, *web, "--tag", "v1.0.0")
    said = " ".join(older.output.split())
    assert "beta.tag: points at v1.1.0, which fails: " in said
    assert "devices read it only from the latest full release" in said
    assert json.loads(verify_cli(world, *web, "--json").stdout)["tag"] == "v1.2.0"


def test_another_run_replacing_the_drafts_assets_stops_the_publish(world):
    """Two runs for one tag at once (a CI job started twice) share the draft: what the
    other run uploaded while this one waited for rule Q2 is found by the check made just
    before publishing, and nothing is published (it published a mixed release)."""
    replaced: list[str] = []

    def other_run() -> None:
        if replaced:
            return
        (draft,) = [r for r in world.releases() if r.draft]
        (sums,) = [a for a in draft.get_assets() if a.name == SUMS_ASSET]
        sums.delete_asset()
        data = b"another run's SHA256SUMS\n"
        draft.upload_asset_from_memory(io.BytesIO(data), len(data), SUMS_ASSET)
        replaced.append(SUMS_ASSET)

    with pytest.raises(gh.HostError) as caught:
        publish(_session(world), _request(world, "v1.0.0"), ticker=WaitingTicker(other_run))
    assert replaced == [SUMS_ASSET]
    assert "the draft's assets are not the ones this run uploaded" in str(caught.value)
    assert [(r.tag_name, r.draft) for r in world.releases()] == [("v1.0.0", True)]


def test_an_asset_another_run_added_to_the_draft_stops_the_publish(world):
    """The other run's extra asset (a rollout.lcm signed for its own sequence) would be
    published with this run's manifest, which devices refuse (rule R4)."""

    def other_run() -> None:
        (draft,) = [r for r in world.releases() if r.draft]
        if all(a.name != ROLLOUT_ASSET for a in draft.get_assets()):
            data = b"another run's roll-out"
            draft.upload_asset_from_memory(io.BytesIO(data), len(data), ROLLOUT_ASSET)

    with pytest.raises(gh.HostError) as caught:
        publish(_session(world), _request(world, "v1.0.0"), ticker=WaitingTicker(other_run))
    assert "the draft's assets are not the ones this run uploaded" in str(caught.value)
    assert [(r.tag_name, r.draft) for r in world.releases()] == [("v1.0.0", True)]


def _rival_release(world: World, tag: str, seq: int, draft: bool) -> None:
    """Another run's release of `tag` whose signed manifest carries `seq` (its other
    assets do not matter to the check made before publishing)."""
    manifest, _ = make_manifest(REPO, world.signer, APP, seq=seq, version=tag[1:])
    rival = world.github().get_repo(REPO).create_git_release(tag, tag, "", draft=True)
    rival.upload_asset_from_memory(io.BytesIO(manifest), len(manifest), MANIFEST_ASSET)
    if not draft:
        rival.update_release(tag, "", draft=False)


def _race(world: World, rival: str, offset: int, draft: bool) -> tuple[list[int], Ticker]:
    """A ticker under which, during rule Q2's wait, another run's `rival` appears with
    this run's sequence plus `offset` (the sequence is recorded in the list)."""
    raced: list[int] = []

    def other_run() -> None:
        if raced:
            return
        (mine,) = [r for r in world.releases() if r.draft]
        (asset,) = [a for a in mine.get_assets() if a.name == MANIFEST_ASSET]
        _, _, chunks = asset.download_asset()
        raced.append(mf.parse_manifest(b"".join(chunks)).seq)
        _rival_release(world, rival, raced[0] + offset, draft)

    return raced, WaitingTicker(other_run)


@pytest.mark.parametrize(
    ("offset", "draft", "downgrade", "said"),
    [
        # Both runs read the repo before either uploaded a manifest: the same sequence.
        # The other run has not published yet, but its manifest is up: were both to go
        # on, both would be published under one sequence.
        (0, True, False, "v1.2.0 (a draft) got sequence"),
        # The newer version went out first (under the same sequence, or a lower one):
        # publishing this one would make it the newest for devices (a downgrade).
        (0, False, False, "v1.1.0 is older than v1.2.0"),
        (-1, False, False, "v1.1.0 is older than v1.2.0"),
        # --downgrade allows the older version, never a sequence already taken.
        (0, False, True, "v1.2.0 (published) got sequence"),
    ],
)
def test_a_publish_raced_by_a_newer_tag_is_refused_before_going_live(
    world, offset, draft, downgrade, said
):
    """Two tags published at once each chose their sequence from the releases listed at
    the start (found from outside: both went out under one sequence)."""
    publish_cli(world, "v1.0.0")
    raced, ticker = _race(world, "v1.2.0", offset, draft)
    req = _request(world, "v1.1.0")
    req.downgrade = downgrade
    with pytest.raises(publisher.release.errors.ReleaseConflictError) as caught:
        publish(_session(world), req, ticker=ticker)
    assert raced
    assert said in str(caught.value)
    assert "another publish raced this one, nothing was published" in str(caught.value)
    assert ("v1.1.0", True) in [(r.tag_name, r.draft) for r in world.releases()]


@pytest.mark.parametrize("draft", [False, True])
def test_a_publish_raced_by_an_older_tag_signs_again_above_it(world, draft):
    """The newer version's run goes on under a new sequence above the other's: it stays
    the newest for devices, and no two releases share a sequence."""
    publish_cli(world, "v1.0.0")
    raced, ticker = _race(world, "v1.0.1", 0, draft)
    out = publish(_session(world), _request(world, "v1.1.0"), ticker=ticker)
    assert raced and out.state == "published" and out.sequence > raced[0]
    found = json.loads(verify_cli(world, "--json").stdout)
    assert (found["tag"], found["sequence"]) == ("v1.1.0", out.sequence)
    names = {a.name for a in world.github().get_repo(REPO).get_release("v1.1.0").get_assets()}
    assert "manifest.lcm.replaced" not in names


def test_the_beta_pointer_follows_a_release_published_meanwhile(world, monkeypatch):
    """A prerelease whose publish answer is slow while a full release goes out: the
    pointer is moved from the releases listed again (found from outside: it named the
    older prerelease, so beta devices did not see the full release)."""
    publish_cli(world, "v1.0.0")
    original = requests.adapters.HTTPAdapter.send
    full: list[int] = []
    started: list[bool] = []

    def send(self, request, *args, **kwargs):
        if request.method == "PATCH" and not started:
            started.append(True)  # the full release's own PATCH goes through
            full.append(publish(_session(world), _request(world, "v1.1.0")).sequence)
        return original(self, request, *args, **kwargs)

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", send)
    req = _request(world, "v1.1.0-beta.1")
    req.prerelease = True
    beta = publish(_session(world), req)
    monkeypatch.undo()
    assert full and full[0] > beta.sequence
    assert beta.beta_pointer == "v1.1.0/beta.tag -> v1.1.0"
    found = json.loads(verify_cli(world, "--channel", "beta", "--json").stdout)
    assert found["tag"] == "v1.1.0"


def _delete_assets(world: World, tag: str, *names: str) -> None:
    for asset in world.github().get_repo(REPO).get_release(tag).get_assets():
        if asset.name in names:
            asset.delete_asset()


def test_a_rerun_restores_a_missing_rollout_and_chain(world):
    """`already published` looked at neither: a staged release that lost its rollout.lcm
    (out to the whole fleet) was reported published, exit 0 (found from outside)."""
    publish_cli(world, "v1.0.0")
    first = publish_cli(world, "v1.1.0", "--rollout", "10", "--json")
    _delete_assets(world, "v1.1.0", ROLLOUT_ASSET, CHAIN_ASSET)
    dry = publish_cli(world, "v1.1.0", "--rollout", "10", "--dry-run", "--json")
    assert dry["assets"][ROLLOUT_ASSET].startswith("would upload")
    again = publish_cli(world, "v1.1.0", "--rollout", "10", "--json")
    assert again["state"] == "published" and again["sequence"] == first["sequence"]
    assert again["assets"][ROLLOUT_ASSET] == "uploaded"
    assert again["assets"][CHAIN_ASSET] == "uploaded"
    found = json.loads(verify_cli(world, "--tag", "v1.1.0", "--json").stdout)
    assert found["rollout"] is not None
    names = {a.name for a in world.github().get_repo(REPO).get_release("v1.1.0").get_assets()}
    assert {ROLLOUT_ASSET, CHAIN_ASSET} <= names
    # Complete now: a re-run changes nothing.
    assert publish_cli(world, "v1.1.0", "--rollout", "10", "--json")["state"] == (
        "already published"
    )


def test_a_rerun_uploads_a_missing_asset_the_manifest_describes(world):
    """A published release whose pack.lcm was deleted: the re-run uploads the very bytes
    the signed manifest describes (it said "different content" and wanted --force)."""
    first = publish_cli(world, "v1.0.0", "--json")
    _delete_assets(world, "v1.0.0", PACK_ASSET)
    verify_cli(world, code=1)
    again = publish_cli(world, "v1.0.0", "--json")
    assert again["state"] == "published" and again["sequence"] == first["sequence"]
    assert again["assets"][PACK_ASSET] == "uploaded"
    verify_cli(world)
    # A sector nothing published vouches for is not guessed: "missing", not "differs".
    _delete_assets(world, "v1.0.0", SECTOR_ASSET, SUMS_ASSET)
    result = publish_cli(world, "v1.0.0", code=1)
    said = " ".join(result.output.split())
    assert f"v1.0.0 is already published incomplete (sequence {first['sequence']}: " in said
    assert "its certs.sector is missing" in said and "--force" in said


def test_an_asset_name_taken_by_another_run_is_named(world):
    """Two runs of one tag: the one whose upload finds the name taken said only
    "422 Validation Failed" (found from outside)."""
    draft = world.github().get_repo(REPO).create_git_release("v1.0.0", "v1.0.0", "", draft=True)
    draft.upload_asset_from_memory(io.BytesIO(b"theirs"), 6, PACK_ASSET)
    # This run listed the draft before the other run's upload: it saw no pack.lcm.
    with pytest.raises(gh.AssetTakenError) as caught:
        _session(world).upload(draft, PACK_ASSET, b"mine", known=[])
    said = str(caught.value)
    assert "another publish of v1.0.0 running at the same time?" in said
    assert said.endswith("re-run once it has ended")


@pytest.mark.parametrize("count", [1, 9])
def test_a_404_on_the_new_draft_is_retried_then_named(world, monkeypatch, count):
    """GitHub is eventually consistent: a release just created may be "Not Found" for a
    moment. A few are retried; more end the run naming the step and the remedy."""
    from publisher.host import handler
    from publisher.host.api import json_response

    original = handler.HostHandler.route
    left = {"n": count}

    def route(self, req):
        created = any(
            r.method == "POST" and r.path.endswith("/releases") for r in world.host.requests
        )
        if created and left["n"] and "/uploads/" in req.path:
            left["n"] -= 1
            return json_response(404, {"message": "Not Found"})
        return original(self, req)

    monkeypatch.setattr(handler.HostHandler, "route", route)
    if count == 1:
        assert publish_cli(world, "v1.0.0", "--json")["state"] == "published"
        return
    result = publish_cli(world, "v1.0.0", code=1)
    said = " ".join(result.output.split())
    assert "error: uploading pack.lcm to v1.0.0: 404 Not Found after 4 attempts" in said
    assert said.rstrip().endswith("re-run")


def test_a_429_without_retry_after_is_retried_unless_the_hourly_limit():
    waits: list[float] = []
    session = gh.Session(
        "http://127.0.0.1:9/api/v3", None, retry=gh.RetryPolicy(attempts=3, sleep=waits.append)
    )
    answers = [GithubException(429, {"message": "Too Many Requests"}, {})]

    def flaky() -> str:
        if answers:
            raise answers.pop(0)
        return "done"

    assert session.call("a step", flaky) == "done"
    assert len(waits) == 1 and session.retries == 1

    def hourly() -> str:
        raise GithubException(
            429, {"message": "API rate limit exceeded"}, {"X-RateLimit-Remaining": "0"}
        )

    with pytest.raises(HostError, match="the API rate limit is used up"):
        session.call("another step", hourly)
    assert len(waits) == 1
