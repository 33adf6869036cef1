"""Staged roll-outs against a host that lies around a genuine release (found by an
outside campaign): a 304 to a request that sent no ETag, an ETag built to make the
device's record unreadable or every re-read fail, a detour through a tag of the host's
own to clear a halt, and a beta-only key staging a stable release. In the real
MicroPython unix port, against a raw server (tests/test_http_servers.RawServer)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from cert_sector.rollout import Rollout
from publisher.release.rollout import sign_rollout
from tests.device.attackserver import BASE, download, point, ranged, release_routes
from tests.device.enginekit import Repo, app_files, install_first_release, run, text
from tests.hostserver import running_host
from tests.keyfactory import make_manifest, make_sector, new_signer
from tests.test_http_servers import RawServer, response

TAG, SEQ = "v2.0.0", 2
WAIT = Path("lcm/state/rollout.wait")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, mpy_build: Path) -> tuple[Repo, Path]:
    return install_first_release(tmp_path_factory.mktemp("rollout-hostile"), mpy_build)


def device(installed: tuple[Repo, Path], tmp_path: Path) -> tuple[Repo, Path]:
    repo, golden = installed
    state = tmp_path / "device"
    shutil.copytree(golden, state)
    return repo, state


def doc(repo: Repo, rseq: int, share: int, halted: bool = False, key: Any = None) -> bytes:
    return sign_rollout(key or repo.release_key, Rollout(repo.name, TAG, SEQ, rseq, share, halted))


def check(state: Path, mpy: Any, routes: dict) -> tuple[Any, str]:
    with RawServer(routes) as server:
        point(state, server.url())
        st = run(state, mpy)
    out = text(st)
    assert "Traceback" not in out and "crashed" not in out and "MemoryError" not in out, out
    return st, out


def serving(repo: Repo, rollout: bytes | None, etag: str | None = None, **kw: Any) -> dict:
    routes = release_routes(repo, "2.0.0", SEQ, **kw)
    if rollout is not None:
        headers = [("ETag", etag)] if etag else []
        routes[download(TAG, "rollout.lcm")] = [response(200, rollout, headers)]
    return routes


def reread_now(state: Path) -> None:
    """As after a push hint (lcm_device.rollout.recheck): the next check reads it again."""
    record = json.loads((state / WAIT).read_text())
    record["skip"] = 0
    (state / WAIT).write_text(json.dumps(record))


def test_a_304_to_a_request_without_an_etag_is_the_servers_error(installed, mpy, tmp_path):
    """It read as "unchanged" of a record the device does not have: AttributeError, the
    check crashed (and a firmware on trial would have been failed for it)."""
    repo, state = device(installed, tmp_path)
    routes = serving(repo, None)
    routes[download(TAG, "rollout.lcm")] = [response(304, b"", length=False)]
    st, out = check(state, mpy, routes)
    assert "app: check failed: StatusError" in out and "304" in out, out
    assert st.state["app_tag"] == "v1.0.0" and "APP v1.0.0 running" in out
    st, out = check(state, mpy, serving(repo, None))  # honest again
    assert st.state["app_tag"] == "v2.0.0", out


def test_a_304_for_the_sector_of_a_device_without_one_is_refused(installed, mpy, tmp_path):
    repo, state = device(installed, tmp_path)
    for copy in (state / "lcm/state/certs").glob("app.sector*"):
        copy.unlink()
    routes = serving(repo, doc(repo, 1, 100))
    routes[download(TAG, "certs.sector")] = [response(304, b"", length=False)]
    st, out = check(state, mpy, routes)
    assert st.state["app_tag"] == "v1.0.0" and "APP v1.0.0 running" in out
    st, out = check(state, mpy, serving(repo, None))
    assert st.state["app_tag"] == "v2.0.0", out


def test_an_etag_that_cannot_be_kept_does_not_undo_a_halt(installed, mpy, tmp_path):
    """Kept, 100 bytes of \\x01 grew the record past what the device reads back: the halt
    was forgotten and an older un-halted document (R5) installed the release."""
    repo, state = device(installed, tmp_path)
    check(state, mpy, serving(repo, doc(repo, 5, 0, halted=True), '"' + "\x01" * 100 + '"'))
    assert json.loads((state / WAIT).read_text())["etag"] is None
    for _ in range(2):
        st, out = check(state, mpy, serving(repo, doc(repo, 1, 100)))
        assert st.state["app_tag"] == "v1.0.0", out


def test_an_etag_that_cannot_be_sent_back_does_not_block_a_widened_rollout(
    installed, mpy, tmp_path
):
    """Kept, an ETag with a TAB was sent back at every re-read and refused by the client:
    the release could never install, even widened to 100 %."""
    repo, state = device(installed, tmp_path)
    check(state, mpy, serving(repo, doc(repo, 1, 0), '"a\tb"'))
    reread_now(state)
    st, out = check(state, mpy, serving(repo, doc(repo, 2, 100)))
    assert st.state["app_tag"] == "v2.0.0", out


def test_a_detour_through_another_tag_does_not_clear_a_halt(installed, mpy, tmp_path):
    repo, state = device(installed, tmp_path)
    _, out = check(state, mpy, serving(repo, doc(repo, 5, 0, halted=True)))
    assert "halted" in out, out
    # No key needed: the latest release is a tag with no release (its roll-out: a 404).
    detour = {BASE + "/latest": [response(302, b"", [("Location", f"{BASE}/tag/v9.9.9")])]}
    check(state, mpy, detour)
    st, out = check(state, mpy, serving(repo, doc(repo, 1, 100)))  # the old, un-halted one
    assert st.state["app_tag"] == "v1.0.0", out


@pytest.mark.parametrize("attack", ["halt", "widen"])
def test_a_beta_only_key_does_not_stage_a_stable_release(installed, mpy, tmp_path, attack):
    """A stolen CI key scoped to beta (rule S8) halted a stable roll-out for good, or
    widened it to the whole stable fleet."""
    repo, state = device(installed, tmp_path)
    ci = new_signer()
    sector = make_sector(repo.name, [repo.root], [repo.release_key, ci], seq=2, scopes={1: (2, [])})
    if attack == "widen":
        _, out = check(state, mpy, serving(repo, doc(repo, 1, 0), sector=sector))
        assert "not to this device yet" in out, out
        reread_now(state)
    forged = doc(repo, 4294967295, 100 if attack == "widen" else 0, attack == "halt", key=ci)
    st, out = check(state, mpy, serving(repo, forged, sector=sector))
    assert "roll-out document signed by a key limited to beta" in out, out
    assert st.state["app_tag"] == "v1.0.0", out
    st, out = check(state, mpy, serving(repo, doc(repo, 2, 100), sector=sector))
    assert st.state["app_tag"] == "v2.0.0", out  # the maintainer's own document still works


@pytest.mark.parametrize("back_with", ["older document", "no document"])
def test_another_releases_rollout_does_not_clear_a_halt(installed, mpy, tmp_path, back_with):
    """A detour through another genuine release with a roll-out of its own replaced the
    halted tag's record: back on the halted tag, its document was read afresh (R5 from 0)
    and an older un-halted one, or a 404 (no roll-out: the whole fleet), installed it."""
    repo, state = device(installed, tmp_path)
    _, out = check(state, mpy, serving(repo, doc(repo, 5, 0, halted=True)))
    assert "halted" in out, out
    other = release_routes(repo, "3.0.0", 3)
    other[download("v3.0.0", "rollout.lcm")] = [
        response(200, sign_rollout(repo.release_key, Rollout(repo.name, "v3.0.0", 3, 1, 0, False)))
    ]
    _, out = check(state, mpy, other)
    assert "v3.0.0 rolls out to 0 %, not to this device yet" in out, out
    assert json.loads((state / WAIT).read_text())["tag"] == "v3.0.0"
    rollout = doc(repo, 1, 100) if back_with == "older document" else None
    for _ in range(2):
        st, out = check(state, mpy, serving(repo, rollout))
        assert st.state["app_tag"] == "v1.0.0", out
        assert "the roll-out of v2.0.0 is halted" in out, out


def point_at_another_repo(state: Path, tmp_path: Path) -> tuple[Repo, Any]:
    """The device pointed at acme/other (as the setup page does: repo and roots), and
    a function making that repo's routes for its v2.0.0 with a roll-out `document`."""
    with running_host(tmp_path, repos=("acme/other",)) as host:
        other = Repo(host, name="acme/other")
    config = state / "lcm/state/config.json"
    cfg = json.loads(config.read_text())
    cfg.update(repo=other.name, app_roots=[other.root.public_key.hex()])
    config.write_text(json.dumps(cfg))
    made, pack = make_manifest(
        other.name, other.release_key, app_files("2.0.0", n=3), seq=SEQ, version="2.0.0"
    )
    base = "/acme/other/releases"

    def routes(document: bytes | None) -> dict:
        out = {k.replace(BASE, base): v for k, v in serving(other, document).items()}
        out[base + "/latest"] = [response(302, b"", [("Location", base + "/tag/v2.0.0")])]
        out[base + "/download/v2.0.0/manifest.lcm"] = [response(200, made)]
        out[base + "/download/v2.0.0/pack.lcm"] = ranged(pack)
        return out

    return other, routes


def test_another_repos_halt_does_not_hold_the_same_tag(installed, mpy, tmp_path):
    """The roll-out records are by tag: a device pointed at another repo (the setup page)
    kept the first repo's halt, and the new repo's v2.0.0, with no roll-out document at
    all, never installed (found from outside)."""
    repo, state = device(installed, tmp_path)
    _, out = check(state, mpy, serving(repo, doc(repo, 5, 0, halted=True)))
    assert "halted" in out, out
    _, routes = point_at_another_repo(state, tmp_path)
    st, out = check(state, mpy, routes(None))
    assert "repo changed to acme/other" in out, out
    assert st.state["app_repo"] == "acme/other" and st.state["app_tag"] == "v2.0.0", out


def test_the_new_repos_halt_holds_until_its_first_install(installed, mpy, tmp_path):
    """A repo change cleared the records at every check until the new repo's first
    install (found by review): its halt, then a 404 or an older un-halted document,
    installed a halted release. The records are the repo's own instead."""
    _, state = device(installed, tmp_path)
    other, routes = point_at_another_repo(state, tmp_path)

    def other_doc(rseq: int, halted: bool) -> bytes:
        return sign_rollout(other.release_key, Rollout(other.name, TAG, SEQ, rseq, 100, halted))

    _, out = check(state, mpy, routes(other_doc(5, True)))
    assert "the roll-out of v2.0.0 is halted" in out, out
    for attack in (None, other_doc(1, False)):
        for reread in (False, True):
            if reread:
                reread_now(state)
            st, out = check(state, mpy, routes(attack))
            assert st.state["app_tag"] == "v1.0.0" and "halted" in out, out


@pytest.mark.parametrize("detour_share", [100, 0])
def test_a_detour_through_an_older_rollout_then_a_404_does_not_install(
    installed, mpy, tmp_path, detour_share
):
    """A detour through an older genuine release with a roll-out of its own removed (the
    device in its share) or replaced the waiting record before that release's manifest
    was refused as a roll-back; back on the staged tag, a 404 read as "no roll-out" and
    the release installed outside its 0 % (found from outside)."""
    repo, state = device(installed, tmp_path)
    _, out = check(state, mpy, serving(repo, doc(repo, 1, 0)))
    assert "not to this device yet" in out, out
    old = release_routes(repo, "0.9.0", 0)
    old[download("v0.9.0", "rollout.lcm")] = [
        response(
            200,
            sign_rollout(repo.release_key, Rollout(repo.name, "v0.9.0", 0, 1, detour_share, False)),
        )
    ]
    st, out = check(state, mpy, old)
    assert "roll-out document of v0.9.0: not above the installed release" in out, out
    assert st.state["app_tag"] == "v1.0.0"
    for reread in (False, True):
        if reread:
            reread_now(state)
        st, out = check(state, mpy, serving(repo, None))  # its document "missing"
        assert st.state["app_tag"] == "v1.0.0", out
    assert "the roll-out document of v2.0.0 is missing; waiting" in out, out
    reread_now(state)
    st, out = check(state, mpy, serving(repo, doc(repo, 2, 100)))  # widened: it installs
    assert st.state["app_tag"] == "v2.0.0", out
