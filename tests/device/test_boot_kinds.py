"""Update boot and app boot (docs/device.md, "Boot flow"), one process per boot.

An update boot leaves the marker /lcm/state/app.next and resets; the boot that
follows is the app boot: the marker removed, no gestures, no schedule, no check,
only the app. A power-on boot ignores the marker (the power went in between), and
so does a boot that cannot remove it (a read-only flash would otherwise skip every
check for ever). The host is gone here: each update boot's check fails, which is
still an update boot.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from lcm_device.startup import APP_NEXT
from lcm_sim import EXIT_RESET
from publisher.device.simulate import boot_once
from tests.device.enginekit import engine_env, engine_heap, install_first_release

UPDATE_BOOT_LINE = "boot: manager m0"  # logged by every boot but the app boot


@pytest.fixture(scope="module")
def golden(tmp_path_factory: pytest.TempPathFactory, mpy_build: Path) -> Path:
    return install_first_release(tmp_path_factory.mktemp("kinds"), mpy_build)[1]


def one_boot(state: Path, mpy: Any, cause: str, check_now: bool = False, **env: str) -> tuple:
    code, lines = boot_once(
        state,
        heap=engine_heap(mpy),
        cause=cause,
        check_now=check_now,
        env={**engine_env(mpy), **env},
    )
    return code, "\n".join(lines)


def after_update_boot(golden: Path, tmp_path: Path, mpy: Any) -> Path:
    state = tmp_path / "device"
    shutil.copytree(golden, state)
    code, out = one_boot(state, mpy, "reset", check_now=True)
    assert code == EXIT_RESET and "app: check failed" in out, out
    assert "APP v1.0.0 running" not in out, out  # the app never runs in an update boot
    assert (state / APP_NEXT.lstrip("/")).read_bytes() == b"reset"
    return state


def test_the_app_boot_runs_the_app_and_nothing_else(golden: Path, tmp_path: Path, mpy: Any):
    state = after_update_boot(golden, tmp_path, mpy)

    # A check asked for (LCM_CHECK_NOW) does not make the app boot check.
    code, out = one_boot(state, mpy, "reset", check_now=True)

    assert code == 0 and "APP v1.0.0 running" in out, out
    assert UPDATE_BOOT_LINE not in out and "check" not in out, out
    assert not (state / APP_NEXT.lstrip("/")).exists()


def test_a_power_on_boot_ignores_the_marker(golden: Path, tmp_path: Path, mpy: Any):
    state = after_update_boot(golden, tmp_path, mpy)

    code, out = one_boot(state, mpy, "power")

    assert UPDATE_BOOT_LINE in out, out  # a boot like any other
    assert code == 0 and "APP v1.0.0 running" in out, out  # no check due: backed off
    assert not (state / APP_NEXT.lstrip("/")).exists()


def test_a_marker_that_cannot_be_removed_is_ignored(golden: Path, tmp_path: Path, mpy: Any):
    state = after_update_boot(golden, tmp_path, mpy)

    code, out = one_boot(state, mpy, "reset", LCM_FLASH_FAIL="ro@1")

    assert UPDATE_BOOT_LINE in out, out  # not taken for an app boot
    assert code == 0 and "APP v1.0.0 running" in out, out
    assert (state / APP_NEXT.lstrip("/")).exists()
