"""Update boot and app boot (docs/device.md, "Boot flow"), one process per boot.

An update boot leaves the marker /lcm/state/app.next and resets; the boot that
follows is the app boot: the marker removed, no gestures, no schedule, no check,
only the app. A power-on boot ignores the marker (the power went in between), and
so does a boot that cannot remove it (a read-only flash would otherwise skip every
check for ever). The host is gone here: each update boot's check fails, which is
still an update boot.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from cert_sector.bootstate import PATH, encode
from cert_sector.logline import read_ring
from lcm_device.slots import APP_NEXT
from lcm_sim import EXIT_RESET
from publisher.device.simulate import board_code, boot_once, read_state
from publisher.micropython import run_micropython
from tests.device.enginekit import engine_env, engine_heap, install_first_release

UPDATE_BOOT_LINE = "boot: manager m0"  # logged by every boot but the app boot
# The /main.py of older factory images: it runs lcm_device.boot at every boot.
OLDER_MAIN = Path(__file__).resolve().parent.parent / "data" / "device" / "main_v1.py"
DEVICE_LINE = re.compile(r"[0-9a-f]{12} [0-9]+ ")  # a log line: DEVICE SEQ TIME TEXT


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
    cause, settings, slot = (state / APP_NEXT.lstrip("/")).read_bytes().split(b"\n")
    # The update boot's reset cause, the settings and the app the app boot reads (no config
    # module; the app's trial boot counted already), and the manager slot: /main.py starts
    # the app itself.
    fields = json.loads(settings)
    assert cause == b"reset" and slot == b"m0"
    assert fields.pop("check_in") > 0
    assert fields.pop("settled") in (True, False)  # True once the update boot ran QUICK_S
    assert fields == {
        "confirm_after_s": 30,
        "check_interval_s": 14400,
        "mqtt_url": None,
        "app": "app0",
        "app_tag": "v1.0.0",
        "confirm_in": None,
        "hal_timer": False,
    }
    return state


def test_the_app_boot_runs_the_app_and_nothing_else(golden: Path, tmp_path: Path, mpy: Any):
    state = after_update_boot(golden, tmp_path, mpy)

    # A check asked for (LCM_CHECK_NOW) does not make the app boot check.
    code, out = one_boot(state, mpy, "reset", check_now=True)

    assert code == 0 and "APP v1.0.0 running" in out, out
    assert UPDATE_BOOT_LINE not in out and "check" not in out, out
    assert not (state / APP_NEXT.lstrip("/")).exists()


def test_the_app_boot_logs_nothing_of_its_own_and_reads_an_older_marker(
    golden: Path, tmp_path: Path, mpy: Any
):
    """The app boot loads neither the config nor the log: it says nothing unless it has to
    (the update boot before it logged the check). A marker of an older manager's update
    boot (its reset cause alone) still makes an app boot, which then reads the config."""
    state = after_update_boot(golden, tmp_path, mpy)
    code, out = one_boot(state, mpy, "reset")
    assert code == 0 and "APP v1.0.0 running" in out, out
    assert not [line for line in out.splitlines() if DEVICE_LINE.match(line)], out

    marker = state / APP_NEXT.lstrip("/")
    marker.write_bytes(b"reset")
    code, out = one_boot(state, mpy, "reset")
    assert code == 0 and "APP v1.0.0 running" in out, out
    assert UPDATE_BOOT_LINE not in out and not marker.exists(), out


def test_a_power_on_boot_ignores_the_marker(golden: Path, tmp_path: Path, mpy: Any):
    state = after_update_boot(golden, tmp_path, mpy)

    code, out = one_boot(state, mpy, "power")

    assert UPDATE_BOOT_LINE in out, out  # a boot like any other
    assert code == 0 and "APP v1.0.0 running" in out, out  # no check due: backed off
    assert not (state / APP_NEXT.lstrip("/")).exists()


# Boots the device with a flash that refuses removals (EROFS), as a flash gone read-only
# would: the firmware's `os` with `remove` failing, for /main.py and all it imports.
READ_ONLY_REMOVALS = """import os as flash, sys


class ReadOnly:
    def __getattr__(self, name):
        return getattr(flash, name)

    def remove(self, path):
        raise OSError(30)


sys.modules["os"] = ReadOnly()
if flash.getenv("LCM_DATA_HEAP"):
    import lcm_sim.romboot  # the ROM model's boot: it runs main.py
else:
    exec(compile(open("main.py").read(), "main.py", "exec"), {"__name__": "__main__"})
"""


def test_a_marker_that_cannot_be_removed_is_ignored(golden: Path, tmp_path: Path, mpy: Any):
    """A marker that stayed would skip every check: a boot that cannot remove it is a boot
    like any other, whether /main.py reads it (the update boot named the manager slot) or
    lcm_device.appboot does (a marker without it: a fleet link, a firmware on trial)."""
    state = after_update_boot(golden, tmp_path, mpy)
    marker = state / APP_NEXT.lstrip("/")
    (state / "read_only.py").write_text(READ_ONLY_REMOVALS)
    proc = run_micropython(
        ["read_only.py"],
        path=[board_code()],
        heap=engine_heap(mpy),
        cwd=state,
        extra_env={
            "LCM_ROOT": str(state),
            "LCM_BOOT_CAUSE": "reset",
            "LCM_CHECK_NOW": "0",
            **engine_env(mpy),
        },
    )
    out = proc.stdout + proc.stderr
    assert UPDATE_BOOT_LINE in out, out  # not taken for an app boot
    assert proc.returncode == 0 and "APP v1.0.0 running" in out, out
    assert marker.exists()

    marker.write_bytes(marker.read_bytes().rsplit(b"\n", 1)[0])  # no manager slot named
    code, out = one_boot(state, mpy, "reset", LCM_FLASH_FAIL="ro@1")
    assert UPDATE_BOOT_LINE in out, out
    assert code == 0 and "APP v1.0.0 running" in out, out
    assert marker.exists()


def test_the_app_boot_does_not_load_the_boot_of_other_kinds(golden: Path, tmp_path: Path, mpy: Any):
    """The app boot runs from appboot alone (the app's heap): without startup it still runs
    the app; any other boot imports startup with boot, so /main.py's fallback sees it."""
    state = after_update_boot(golden, tmp_path, mpy)
    (state / "lcm" / "m0" / "lcm_device" / "startup.mpy").unlink()

    code, out = one_boot(state, mpy, "reset")
    assert code == 0 and "APP v1.0.0 running" in out, out

    code, out = one_boot(state, mpy, "reset")  # no marker: a boot that needs startup
    assert "main.py: manager m0 does not import" in out, out
    assert "APP v1.0.0 running" not in out, out


def test_a_power_on_with_the_marker_and_a_damaged_startup_resets(
    golden: Path, tmp_path: Path, mpy: Any
):
    """A power-on after an update boot is a boot like any other, which loads startup late
    (from appboot, past /main.py's fallback): damaged, the board resets, and the boot
    after it falls back to the other slot, where an exception stopped it at the REPL."""
    state = after_update_boot(golden, tmp_path, mpy)
    (state / "lcm" / "m0" / "lcm_device" / "startup.mpy").unlink()

    code, out = one_boot(state, mpy, "power")
    assert code == EXIT_RESET and "boot: no module named" in out and "resetting" in out, out
    assert "Traceback" not in out, out

    code, out = one_boot(state, mpy, "reset")  # the marker is gone
    assert "main.py: manager m0 does not import" in out, out


APP_LOOKS = b"""import sys
print("LOADED", sorted(n for n in sys.modules if n.startswith(("lcm_device", "cert_sector"))))
from lcm_device.log import log
log("app: a line of the app's")
print("APP v1.0.0 running")
"""


def test_the_app_starts_with_the_check_timer_alone(golden: Path, tmp_path: Path, mpy: Any):
    """/main.py starts the app after an update boot: no boot module, schedule, saved
    deadline (`due`: the check timer keeps the deadline as numbers), config, log, HAL or
    app API; only the check timer (and compat, which it uses) stays loaded. The app API
    loads when the app imports `lcm`. The log sets itself up again at its next line,
    whose number follows the boot's."""
    state = after_update_boot(golden, tmp_path, mpy)
    (state / "lcm" / "app0" / "main.py").write_bytes(APP_LOOKS)
    last_seq = int(list(read_ring(str(state)))[-1].split(" ", 2)[1])

    code, out = one_boot(state, mpy, "reset")

    assert code == 0 and "APP v1.0.0 running" in out, out
    loaded = next(line for line in out.splitlines() if line.startswith("LOADED "))
    if not engine_env(mpy):  # (the ROM model imports every module first: code "in ROM")
        assert loaded == "LOADED " + str(
            ["lcm_device", "lcm_device.checktimer", "lcm_device.compat"]
        ), out
    lines = [line.split(" ", 3) for line in out.splitlines() if DEVICE_LINE.match(line)]
    assert [fields[3] for fields in lines] == ["app: a line of the app's"], out
    # Its number follows the update boot's last line (the ring's): the log, loaded again,
    # set itself up from it.
    assert int(lines[0][1]) == last_seq + 1, (last_seq, out)


def test_a_damaged_self_check_is_logged_and_the_app_runs(golden: Path, tmp_path: Path, mpy: Any):
    """lcm_device.aftercheck (the outcome of a check, the manager's self-check) is imported
    late, by the update boot after its checks and by a boot with no check due: damaged, it
    is logged and the app runs all the same, where an exception would stop the board."""
    state = tmp_path / "device"
    shutil.copytree(golden, state)
    (state / "lcm" / "m0" / "lcm_device" / "aftercheck.mpy").unlink()
    damaged = "the manager's self-check does not import"

    code, out = one_boot(state, mpy, "power")  # no check due (the first install backs off)
    assert code == 0 and "APP v1.0.0 running" in out, out
    assert "boot: " + damaged in out, out

    code, out = one_boot(state, mpy, "reset", check_now=True)  # an update boot
    assert code == EXIT_RESET and "check: " + damaged in out, out
    assert (state / APP_NEXT.lstrip("/")).read_bytes().startswith(b"reset\n")
    code, out = one_boot(state, mpy, "reset")  # its app boot
    assert code == 0 and "APP v1.0.0 running" in out, out


def test_the_app_boot_needs_none_of_the_boot_modules(golden: Path, tmp_path: Path, mpy: Any):
    """/main.py starts the app after an update boot through lcm_device.appstart alone: the
    boot's modules are not even imported (here they are gone)."""
    state = after_update_boot(golden, tmp_path, mpy)
    for name in ("boot", "appboot", "startup", "trial", "config"):
        (state / "lcm" / "m0" / "lcm_device" / f"{name}.mpy").unlink()

    code, out = one_boot(state, mpy, "reset")

    assert code == 0 and "APP v1.0.0 running" in out, out
    assert not (state / APP_NEXT.lstrip("/")).exists()


def on_trial(golden: Path, tmp_path: Path) -> Path:
    """The golden device with its app on trial, and an app that never confirms itself (it
    stops the board before it returns): its trial boots stay counted in the boot state."""
    state = tmp_path / "device"
    shutil.copytree(golden, state)
    st = read_state(state)
    st.update(gen=st["gen"] + 1, app_trial=0, app_boots=0, trial_boots=3)
    (state / (PATH % (st["gen"] % 2)).lstrip("/")).write_bytes(encode(st))
    (state / "lcm" / "app0" / "main.py").write_bytes(
        b'print("APP v1.0.0 running")\nraise SystemExit(0)\n'
    )
    return state


@pytest.mark.parametrize("main", ["this /main.py", "an older /main.py"])
def test_the_app_boot_after_an_update_boot_is_counted_once(
    golden: Path, tmp_path: Path, mpy: Any, main: str
):
    """The update boot counts the trial boot of the app boot it resets into: that boot
    counts it no more, whether this /main.py starts the app or an older one (devices in
    the field keep theirs) runs lcm_device.boot, which does."""
    state = on_trial(golden, tmp_path)
    if main == "an older /main.py":
        (state / "main.py").write_bytes(OLDER_MAIN.read_bytes())

    code, out = one_boot(state, mpy, "reset", check_now=True)
    assert code == EXIT_RESET and "APP v1.0.0 running" not in out, out
    assert read_state(state)["app_trial"] == 1, out
    assert "app: trial boot 1 of 3 for v1.0.0" in out, out

    code, out = one_boot(state, mpy, "reset")
    assert code == 0 and "APP v1.0.0 running" in out and UPDATE_BOOT_LINE not in out, out
    assert read_state(state)["app_trial"] == 1, out

    code, out = one_boot(state, mpy, "reset")  # no marker: a boot like any other, counted
    assert "APP v1.0.0 running" in out and UPDATE_BOOT_LINE in out, out
    assert read_state(state)["app_trial"] == 2, out


def test_a_marker_short_of_a_field_makes_a_boot_like_any_other(
    golden: Path, tmp_path: Path, mpy: Any
):
    """A marker whose JSON lacks a field /main.py needs to start the app (not one this
    manager writes) is left to the boot, which starts the app with its check timer: not
    an app started without one."""
    state = after_update_boot(golden, tmp_path, mpy)
    marker = state / APP_NEXT.lstrip("/")
    cause, settings, slot = marker.read_bytes().split(b"\n")
    fields = json.loads(settings)
    del fields["settled"]
    marker.write_bytes(cause + b"\n" + json.dumps(fields).encode() + b"\n" + slot)

    code, out = one_boot(state, mpy, "reset")

    assert code == 0 and out.count("APP v1.0.0 running") == 1, out
    assert "no check timer" not in out, out
    assert not marker.exists(), out


def test_a_marker_that_is_no_text_makes_a_boot_like_any_other(
    golden: Path, tmp_path: Path, mpy: Any
):
    """/main.py is never updated: a damaged marker (bytes that are no UTF-8) must not stop
    it at every boot; the boot removes the marker and the app runs."""
    state = after_update_boot(golden, tmp_path, mpy)
    marker = state / APP_NEXT.lstrip("/")
    marker.write_bytes(b"reset\n\xff\xfe{\n\xffm0")

    code, out = one_boot(state, mpy, "reset")

    assert code == 0 and out.count("APP v1.0.0 running") == 1, out
    assert "Traceback" not in out and not marker.exists(), out


def test_the_app_may_have_a_module_named_pick(golden: Path, tmp_path: Path, mpy: Any):
    """/lcm/pick.py is imported as `pick` by /main.py: it must not shadow the app's own."""
    state = tmp_path / "device"
    shutil.copytree(golden, state)
    app = state / "lcm" / "app0"
    (app / "pick.py").write_bytes(b'WHO = "the app\'s"\n')
    (app / "main.py").write_bytes(b'import pick\nprint("APP PICK", pick.WHO)\n')

    code, out = one_boot(state, mpy, "power")

    assert code == 0 and "APP PICK the app's" in out, out


def test_an_update_boot_without_the_gesture_module_still_resets_into_the_app(
    golden: Path, tmp_path: Path, mpy: Any
):
    """The update boot imports `gestures` (to settle the counter) and `due` (the next check)
    for its marker: one that does not import leaves the app boot to lcm_device.boot (no
    manager slot named), not the board stopped at the REPL after every check."""
    state = tmp_path / "device"
    shutil.copytree(golden, state)
    config = state / "lcm" / "state" / "config.json"
    cfg = json.loads(config.read_text())
    cfg["gestures"] = True
    config.write_text(json.dumps(cfg))
    (state / "lcm" / "m0" / "lcm_device" / "gestures.mpy").unlink()

    code, out = one_boot(state, mpy, "reset", check_now=True)
    assert code == EXIT_RESET and "check: the app boot's figures" in out, out
    assert len((state / APP_NEXT.lstrip("/")).read_bytes().split(b"\n")) == 2, out

    code, out = one_boot(state, mpy, "reset")
    assert code == 0 and "APP v1.0.0 running" in out, out
