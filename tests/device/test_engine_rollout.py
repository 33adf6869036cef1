"""A host that lies about a staged roll-out (docs/threat-model.md): the device in the
MicroPython unix port against `lcm host`, the roll-out document swapped between checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cert_sector.assets import ROLLOUT_ASSET
from cert_sector.rollout import Rollout
from publisher.release.rollout import sign_rollout
from tests.device.enginekit import Repo, app_files, new_device, run, text
from tests.hostserver import running_host
from tests.keyfactory import new_signer

WAIT = Path("lcm/state/rollout.wait")


def _put(repo: Repo, tag: str, data: bytes | None) -> None:
    """Replace the release's roll-out document (None: remove it), as a host could."""
    release = repo.gh.get_release(tag)
    for asset in release.get_assets():
        if asset.name == ROLLOUT_ASSET:
            asset.delete_asset()
    if data is not None:
        release.upload_asset_from_memory(data, len(data), ROLLOUT_ASSET)


def _check(state: Path, mpy: Any) -> str:
    """One check now, as after a push hint (the wait file's countdown set to 0)."""
    wait = state / WAIT
    if wait.exists():
        w = json.loads(wait.read_text())
        w["skip"] = 0
        wait.write_text(json.dumps(w))
    return text(run(state, mpy))


def test_forged_replayed_and_missing_rollout_documents_install_nothing(
    tmp_path: Path, mpy: Any
) -> None:
    with running_host(tmp_path) as host:
        repo = Repo(host)
        repo.publish("1.0.0", app_files("1.0.0", n=2))
        state = new_device(tmp_path, mpy, host, repo)
        assert "APP v1.0.0 running" in text(run(state, mpy))
        repo.publish("1.1.0", app_files("1.1.0", n=2))
        seq = repo.seq

        def doc(rseq: int, share: int, halted: bool = False, key: Any = None) -> bytes:
            return sign_rollout(
                key or repo.release_key, Rollout(repo.name, "v1.1.0", seq, rseq, share, halted)
            )

        _put(repo, "v1.1.0", doc(2, 0))
        out = _check(state, mpy)
        assert "v1.1.0 rolls out to 0 %, not to this device yet" in out, out
        # Its next checks are one request each: the document is not read again.
        before = len(host.requests)
        out = text(run(state, mpy))
        assert "is rolling out to 0 %, not to this device yet" in out, out
        assert [r.path for r in host.requests[before:]] == ["/acme/widget/releases/latest"]
        # A host widens it with a document signed by a key the repo does not have.
        _put(repo, "v1.1.0", doc(3, 100, key=new_signer()))
        out = _check(state, mpy)
        assert (
            "app: refused v1.1.0: SignatureError: roll-out document signed by an unknown key" in out
        )
        # ... replays an older document of a larger share (R5) ...
        _put(repo, "v1.1.0", doc(1, 100))
        out = _check(state, mpy)
        assert "RollbackError: roll-out sequence 1 is below 2 seen before" in out, out
        # ... or removes it, hoping the device takes the release as if it were not staged.
        _put(repo, "v1.1.0", None)
        out = _check(state, mpy)
        assert "the roll-out document of v1.1.0 is missing; waiting" in out, out
        assert "APP v1.1.0" not in out
        # The maintainer widens it: the device takes it.
        _put(repo, "v1.1.0", doc(3, 100))
        out = _check(state, mpy)
        assert "v1.1.0 rolls out to 100 %, this device included" in out, out
        assert "APP v1.1.0 running" in out
        assert not (state / WAIT).exists()
