"""A full or read-only flash while the app runs with the check timer (a board, `LCM_BOARD`
run): neither may turn into a check at every boot, or a traceback every second.

Found by an outside campaign: a check's record is saved after the check, and on a full
flash that save fails; the schedule file then still said 0 (what the check's boot had
saved: due now), and the app boot's timer reset into another check at once, for ever."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from lcm_sim import RESET_SIGNAL
from tests.device.enginekit import install_first_release, start_device

SCHEDULE = "lcm/state/schedule.json"


@pytest.fixture(scope="module")
def golden(tmp_path_factory: pytest.TempPathFactory, mpy_build: Path) -> Path:
    return install_first_release(tmp_path_factory.mktemp("fullflash"), mpy_build)[1]


def run_board(state: Path, mpy: Any, seconds: float, **env: str) -> tuple[int | None, str]:
    """The board powered on (a reset) for at most `seconds`: (exit code, or None when it
    was still running, cut then; output)."""
    env = {"LCM_BOARD": "run", "LCM_BOOT_CAUSE": "reset", "LCM_ROOT": str(state), **env}
    proc = start_device(state, mpy, "main.py", env=env, cwd=state)
    try:
        out, _ = proc.communicate(timeout=seconds)
        return proc.returncode, out
    except subprocess.TimeoutExpired:
        proc.kill()
        return None, proc.communicate()[0]


def device_due_in(golden: Path, tmp_path: Path, remaining: int) -> Path:
    state = tmp_path / "device"
    shutil.copytree(golden, state)
    (state / SCHEDULE).write_text(json.dumps({"failures": 0, "remaining": remaining, "wall": None}))
    return state


def test_a_check_on_a_full_flash_arms_the_next_as_it_decided_not_at_once(
    golden: Path, tmp_path: Path, mpy: Any
) -> None:
    state = device_due_in(golden, tmp_path, 0)  # a check due now
    # 8 s: below the shortest back-off after a failed check (10 s, lcm_device.schedule), so
    # a check due within it is the stale "now", not the check's own decision.
    code, out = run_board(state, mpy, 8, LCM_FLASH_FAIL="full@1")
    assert "schedule: cannot save state" in out, out  # the flash really was full
    assert out.count("app: check failed") == 1, out  # its host is gone: backs off
    assert "schedule: check due" not in out, out
    assert code is None, out  # still running its app: no reset into another check


def test_a_check_due_on_a_read_only_flash_resets_once_instead_of_failing_each_second(
    golden: Path, tmp_path: Path, mpy: Any
) -> None:
    state = device_due_in(golden, tmp_path, 3)  # due while the app runs
    code, out = run_board(state, mpy, 20, LCM_FLASH_FAIL="ro@1")
    assert "schedule: cannot ask for the check: OSError 30" in out, out
    assert "Traceback" not in out, out
    # Into the manager, which finds the check due (from the timer's callback a reset ends
    # the process with lcm_sim's signal).
    assert code == -signal.Signals["SIG" + RESET_SIGNAL], out
