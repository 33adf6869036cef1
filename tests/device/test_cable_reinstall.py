"""A board whose manager was updated over the air, reinstalled by cable (`lcm device
install`), then run: it boots the copied manager, and updates it over the air again.

The copy is made as the command makes it (publisher/device/reinstall.py and the factory
image's files, mpremote's removals and copies done on the simulated board's flash
folder); tests/test_device_reinstall.py runs the command itself against the REPL.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from publisher.device import image as img
from publisher.device import reinstall
from publisher.device.settings import DeviceSettings
from publisher.device.simulate import read_state
from tests.device.enginekit import run, text, updated_manager
from tests.hostserver import running_host


def cable_install(state: Path, settings: DeviceSettings) -> None:
    """What `lcm device install` does to the board's flash (`state`)."""
    on_board = {p: state / p.lstrip("/") for p in reinstall.BOOT_FILES}
    found = {p: f.read_bytes() if f.is_file() else None for p, f in on_board.items()}
    files = img.device_files(settings)
    plan = reinstall.plan(found)
    files.update(plan.files)
    for path in plan.remove:
        target = state / path.lstrip("/")
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
    for path, data in files.items():
        target = state / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def settings_for(app: Any, manager: Any, host: Any) -> DeviceSettings:
    return DeviceSettings(
        board="esp32",
        repo=app.name,
        app_roots=[app.root.public_key],
        manager_repo=manager.name,
        manager_roots=[manager.root.public_key],
        web_url=host.url,
    )


def test_a_board_reinstalled_by_cable_runs_the_copied_manager_then_updates_it(
    tmp_path: Path, mpy: Any
) -> None:
    with running_host(tmp_path, repos=("acme/widget", "acme/lcm")) as host:
        app, manager, state = updated_manager(tmp_path, mpy, host)
        cable_install(state, settings_for(app, manager, host))
        copied = read_state(state)
        assert (copied["mgr"], copied["mgr_tag"], copied["app_tag"]) == ("m0", None, "v1.0.0")

        status = run(state, mpy)
        log = text(status)
        # The copied manager runs (the factory slot), and its repo's release comes back
        # over the air, on trial, then confirmed; the app was kept, not installed again.
        assert "boot: manager m0 (factory), app v1.0.0" in log, log
        assert "manager: v0.2.0 available" in log, log
        after = read_state(state)
        assert (after["mgr"], after["mgr_tag"], after["app_tag"]) == ("m1", "v0.2.0", "v1.0.0")
        assert "app: switched" not in log, log


def test_a_board_whose_boot_state_is_lost_runs_the_copied_manager_too(
    tmp_path: Path, mpy: Any
) -> None:
    with running_host(tmp_path, repos=("acme/widget", "acme/lcm")) as host:
        app, manager, state = updated_manager(tmp_path, mpy, host)
        # Both generations damaged: the boot rebuilds the state from the slots, where
        # /lcm/m1 holds the manager installed over the air with its complete manifest.
        for path in reinstall.BOOT_FILES:
            target = state / path.lstrip("/")
            if target.is_file():
                target.write_bytes(target.read_bytes()[:-9] + b"0" * 8 + b"\n")
        cable_install(state, settings_for(app, manager, host))

        status = run(state, mpy)
        log = text(status)
        # The copy runs, from the factory slot, through the boot that rebuilt the state
        # and the ones after it; its repo's release comes back over the air.
        assert "boot state: none valid; rebuilt from the slots" in log, log
        assert "manager m1" not in log.split("manager: v0.2.0 available")[0], log
        assert "boot: manager m0 (factory)" in log, log
        after = read_state(state)
        assert (after["mgr"], after["mgr_tag"], after["app_tag"]) == ("m1", "v0.2.0", "v1.0.0")
