"""Manager self-update: the same engine on the manager's repo and slots m0/m1, with trial
boot and roll-back; the app slot is never touched by a manager update."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from publisher.device.manager import manager_files
from tests.device.enginekit import (
    Repo,
    app_files,
    provision_with_manager,
    run,
    slot_is_complete,
    text,
)
from tests.hostserver import running_host

MANAGER_REPO = "acme/lcm"


def tree_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            h.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def test_manager_updates_itself_and_rolls_back_a_broken_one(tmp_path: Path, mpy: Any) -> None:
    with running_host(tmp_path, repos=("acme/widget", MANAGER_REPO)) as host:
        app = Repo(host)
        app.publish("1.0.0", app_files("1.0.0", n=3))
        manager = Repo(host, name=MANAGER_REPO)
        state = tmp_path / "device"
        provision_with_manager(
            state, mpy.build, app, manager, {"gestures": False, "trial_boots": 2}
        )
        first = run(state, mpy)
        assert first.state.get("app_tag") == "v1.0.0", text(first)
        app_before = tree_digest(state / "lcm/app0")

        # A good manager release: installed into m1, trial boot, confirmed by its first check.
        files = manager_files(mpy.build)
        manager.publish("0.2.0", files)
        status = run(state, mpy)
        out = text(status)
        assert "manager: switched to m1 (v0.2.0), trial boot next" in out, out
        assert "boot: manager m1 v0.2.0 (trial boot 1)" in out
        assert "manager: confirmed v0.2.0" in out
        assert status.state["mgr"] == "m1" and status.state["mgr_trial"] is None
        assert slot_is_complete(state, "m1")
        assert "APP v1.0.0 running" in out
        assert tree_digest(state / "lcm/app0") == app_before

        # A manager that cannot even import its boot module: two failed trial boots, then m1.
        broken = dict(files)
        broken["lcm_device/boot.mpy"] = b"not an mpy file"
        manager.publish("0.3.0", broken)
        status = run(state, mpy)
        out = text(status)
        assert "manager: switched to m0 (v0.3.0), trial boot next" in out, out
        assert out.count("main.py: manager m0 failed") == 2, out
        assert "main.py: manager v0.3.0 failed its trial; rolling back" in out
        assert status.state["mgr"] == "m1" and status.state["mgr_tag"] == "v0.2.0"
        assert status.state["mgr_bad"] == "v0.3.0"
        assert "APP v1.0.0 running" in out.rsplit("--- boot", 1)[1]
        assert tree_digest(state / "lcm/app0") == app_before
        again = text(run(state, mpy))
        assert "v0.3.0 failed its trial before; waiting for a newer one (sequence" in again
