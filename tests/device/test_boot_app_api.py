"""The `lcm` module apps import: status(), confirm(), request_update(); and trial rules."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.device.enginekit import (
    Repo,
    app_files,
    new_device,
    run,
    text,
)
from tests.hostserver import running_host

CONFIRMS_THEN_CRASHES = """import lcm
st = lcm.status()
print("STATUS", st["app"], st["slot"], st["trial"])
lcm.confirm()
print("AFTER", lcm.status()["trial"])
raise RuntimeError("crash after confirming")
"""

REQUESTS_UPDATE = """import lcm
import os
if "please-check" in os.listdir("."):  # the test's way to press the app's "update" button
    os.remove("please-check")
    lcm.request_update()
print("APP", lcm.status()["app"], "running")
"""


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Any]:
    with running_host(tmp_path) as h:
        yield h


def test_app_confirming_itself_is_kept_even_if_it_crashes_later(
    tmp_path: Path, mpy: Any, host: Any
) -> None:
    repo = Repo(host)
    repo.publish("1.0.0", app_files("1.0.0", n=2))
    state = new_device(tmp_path, mpy, host, repo)
    assert run(state, mpy).state["app_tag"] == "v1.0.0"
    files = app_files("2.0.0", n=2)
    files["main.py"] = CONFIRMS_THEN_CRASHES.encode()
    repo.publish("2.0.0", files)

    status = run(state, mpy, max_boots=4)

    out = text(status)
    assert "STATUS v2.0.0 app1 True" in out and "AFTER False" in out
    assert "app: confirmed v2.0.0" in out
    # Confirmed: its later crashes reset the board but never roll it back.
    assert status.state["app_tag"] == "v2.0.0" and status.state["app_trial"] is None
    assert "rolled back" not in out


def test_app_requests_an_update_check(tmp_path: Path, mpy: Any, host: Any) -> None:
    repo = Repo(host)
    files = app_files("1.0.0", n=2)
    files["main.py"] = REQUESTS_UPDATE.encode()
    repo.publish("1.0.0", files)
    state = new_device(tmp_path, mpy, host, repo, check_interval_s=86400, power_on_window_s=86400)
    assert run(state, mpy).state["app_tag"] == "v1.0.0"
    files = dict(files)
    files["lib/m00.py"] = b"VALUE = 'two'\n"
    repo.publish("2.0.0", files)

    # No check is due at this boot (the schedule says a day); the app asks for one.
    # The app runs in its slot's folder (its working place).
    (state / "lcm" / "app0" / "please-check").touch()
    status = run(state, mpy, check_first=False)
    out = text(status)
    assert "check: not due for" in out.split("--- boot 2")[0], out
    assert "app: update check requested" in out
    assert status.state["app_tag"] == "v2.0.0", out
    assert status.exits == [75, 75, 0], out


HOLDS = """
import lcm
from lcm_device import schedule
from lcm_device import appboot, checktimer
from lcm_device.hal import get

hal = get()
sched = schedule.Schedule(hal, {"check_interval_s": 60})
sched.on_boot(0, False)  # a device without schedule state: a check is due at once
appboot.arm_timer(hal, sched)
lcm.hold()
print("HELD", checktimer.poll(5), checktimer.poll(6))
lcm.hold(False)
checktimer.poll(7)  # due and no longer held: resets into the manager
print("NOT REACHED")
"""


def test_app_holds_off_a_due_check_through_the_lcm_shim(mpy: Any) -> None:
    from publisher.device.manager import LCM_SHIM_SOURCE

    shim = mpy.workdir / "slot"
    shim.mkdir()
    (shim / "lcm.py").write_bytes(LCM_SHIM_SOURCE.read_bytes())

    proc = mpy.run(
        HOLDS,
        check=False,
        extra_path=(shim,),
        extra_env={"LCM_ROOT": str(mpy.workdir)},
        rom=True,
    )

    out = proc.stdout + proc.stderr
    assert "HELD False False" in out, out
    assert out.count("schedule: check due, waiting while the app holds") == 1, out
    assert "schedule: check due, resetting into the manager" in out, out
    assert proc.returncode == 75 and "NOT REACHED" not in out, out
    assert (mpy.workdir / "lcm" / "state" / "check.now").exists()


ASKS_AT_EVERY_START = """import lcm
from lcm_device import compat
print("APP", lcm.status()["app"], "asks", lcm.request_update())
lcm.idle(300)
if compat.file_size("late") >= 0:  # the test's way to let a minute pass in this boot
    compat._uptime_ms += 61000
    lcm.request_update()
print("APP ran on")
"""


def test_an_app_that_asks_for_a_check_as_it_starts_runs_and_is_checked_once_a_minute(
    tmp_path: Path, mpy: Any, host: Any
) -> None:
    """An app that calls lcm.request_update() at every start would reset into a check
    every few seconds, for ever (the app never running, the server asked at every boot):
    sooner than a minute after the boot the check waits for the minute to be up, the
    app running meanwhile; later it resets at once."""
    repo = Repo(host)
    files = app_files("1.0.0", n=2)
    files["main.py"] = ASKS_AT_EVERY_START.encode()
    repo.publish("1.0.0", files)
    state = new_device(tmp_path, mpy, host, repo)

    status = run(state, mpy, max_boots=6)

    out = text(status)
    assert status.state["app_tag"] == "v1.0.0"
    # The install, the trial boot (its request honoured at once: no check ran in that
    # boot), the check it asked for, then the app boot after it: there the app asked
    # again, was told when, and ran on to its end.
    assert status.exits == [75, 75, 75, 0], (status.exits, out)
    assert "app: update check requested: in " in out and "(one a minute at most)" in out
    assert out.count("APP ran on") == 1
    asked = [line for line in status.lines if "APP v1.0.0 asks " in line]
    assert len(asked) == 1 and 55 <= int(asked[0].split()[-1]) <= 60, asked

    # A minute into the boot, asking resets into the manager at once, which checks.
    (state / "lcm" / status.state["app"] / "late").write_text("")  # the app's folder
    status = run(state, mpy, max_boots=3)
    out = text(status)
    late = out.split("APP v1.0.0 asks ", 1)[1]
    assert "app: update check requested\nlcm-hal: reset" in late, out
    assert "APP ran on" not in late.split("--- boot", 1)[0], out
    assert "app: v1.0.0 is installed, nothing new" in late, out  # the manager checked


def test_a_request_without_the_check_timer_resets_into_the_manager(
    tmp_path: Path, mpy: Any, host: Any
) -> None:
    """With lcm_device.checktimer gone from the slot (damaged), the app still gets its
    check: the request resets into the manager at once (no ImportError in the app)."""
    repo = Repo(host)
    files = app_files("1.0.0", n=2)
    files["main.py"] = REQUESTS_UPDATE.encode()
    repo.publish("1.0.0", files)
    state = new_device(tmp_path, mpy, host, repo)
    assert run(state, mpy).state["app_tag"] == "v1.0.0"
    for timer in (state / "lcm" / "m0" / "lcm_device").glob("checktimer.*"):
        timer.unlink()
    (state / "lcm" / "app0" / "please-check").touch()

    status = run(state, mpy, max_boots=2)

    out = text(status)
    assert "main.py: no check timer: ImportError" in out  # the damage, as /main.py says it
    assert "Traceback" not in out, out  # the app's call raised nothing
    assert "app: update check requested\nlcm-hal: reset" in out, out
    assert status.exits[0] == 75, (status.exits, out)
