"""Trial boots against power cuts and hostile apps.

A power cut is not a crash: a healthy release survives any number of them in
its trial window, and a release that hangs the board (power-cycled by hand, no
watchdog) still rolls back within the bound on trial boots. A trial app that
resets in a loop, deletes /main.py, deletes the boot state, deletes manager
files or fills the flash leaves a device that returns to the previous release
and later installs a good new one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from publisher.device.simulate import read_state
from tests.device.bootkit import boot, boot_until_app, kill_when, running_app
from tests.device.enginekit import (
    APP_OK,
    Repo,
    app_files,
    new_device,
    run,
    slot_is_complete,
    text,
    updated_manager,
)
from tests.hostserver import running_host

HANGS_ON_REQUEST = APP_OK + (
    "import os, time\nif os.getenv('APP_HANG'):\n    while True:\n        time.sleep(1)\n"
)
ROOT = "R = __import__('os').getenv('LCM_ROOT')\n"
HOSTILE = {
    "resets in a loop": "from lcm_device.hal import get\nget().reset()\n",
    "deletes /main.py": ROOT + "__import__('os').remove(R + '/main.py')\n",
    "deletes /lcm/pick.py": ROOT + "__import__('os').remove(R + '/lcm/pick.py')\n",
    "deletes the boot state": ROOT
    + "for n in ('boot0.json', 'boot1.json'):\n"
    + "    __import__('os').remove(R + '/lcm/state/' + n)\n",
    "fills the flash": "f = open('junk.bin', 'wb')\nfor _ in range(64):\n    f.write(bytes(1024))\n"
    + "f.close()\n",
}


def release(version: str, main: str) -> dict[str, bytes]:
    files = app_files(version, n=3)
    files["main.py"] = f"# app {version}\n{main}".encode()
    return files


def test_power_cuts_in_the_trial_window_are_not_crashes(tmp_path: Path, mpy: Any) -> None:
    with running_host(tmp_path) as host:
        repo = Repo(host)
        repo.publish("1.0.0", app_files("1.0.0", n=3))
        state = new_device(tmp_path, mpy, host, repo)
        assert run(state, mpy).state["app_tag"] == "v1.0.0"
        repo.publish("1.1.0", release("1.1.0", HANGS_ON_REQUEST))
        assert boot(state, mpy, check_now=True)[0] == 75
        # Five power cuts while the new app runs, before it is confirmed (3 trial boots allowed).
        for i in range(5):
            cause = "reset" if i == 0 else "power"
            out = kill_when(state, mpy, "APP v1.1.0 running", cause=cause, env={"APP_HANG": "1"})
            assert "APP v1.1.0 running" in out, out
            assert read_state(state)["app_trial"] == 1, out
        out = boot_until_app(state, mpy, cause="power")
        st = read_state(state)
        assert st["app_tag"] == "v1.1.0" and st["app_trial"] is None and not st.get("app_bad"), out
        assert "app: confirmed v1.1.0" in out

        # A release that never gets confirmed (it hangs; the board is power-cycled) rolls
        # back after at most 3 x trial_boots + 1 boots.
        repo.publish("1.2.0", release("1.2.0", HANGS_ON_REQUEST))
        assert boot(state, mpy, check_now=True)[0] == 75
        for boots in range(1, 13):
            cause = "reset" if boots == 1 else "power"
            out = kill_when(state, mpy, "APP v1.", cause=cause, env={"APP_HANG": "1"})
            if "rolled back" in out:
                break
        assert boots == 11, out  # 10 trial boots, then the roll-back boot
        assert "app: v1.2.0 failed its trial (not confirmed within 10 boots)" in out, out
        assert "APP v1.1.0 running" in out
        again = run(state, mpy)
        assert "v1.2.0 failed its trial before" in text(again)
        assert again.state["app_bad_why"] == "not confirmed within 10 boots"


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_trial_app_leaves_a_device_that_comes_back(
    tmp_path: Path, mpy: Any, case: str
) -> None:
    with running_host(tmp_path) as host:
        repo = Repo(host)
        repo.publish("1.0.0", app_files("1.0.0", n=3))
        state = new_device(tmp_path, mpy, host, repo)
        assert run(state, mpy).state["app_tag"] == "v1.0.0"
        repo.publish("1.1.0", release("1.1.0", HOSTILE[case] + "raise RuntimeError('hostile')\n"))
        outs = []
        for _ in range(16):
            # The app filled the flash: the boots after it see a full flash (the unix HAL's;
            # a removal frees it).
            full = any(state.rglob("junk.bin"))
            env = {"LCM_FLASH_FAIL": "full@1"} if full else {}
            code, out = boot(state, mpy, check_now=True, env=env)
            outs.append(out)
            assert code in (0, 75), "\n".join(outs)
            st = read_state(state)
            if st.get("app_tag") == "v1.0.0" and st.get("app_bad") == "v1.1.0":
                break
        log = "\n".join(outs)
        assert running_app(state, out) == "v1.0.0", log
        assert (state / "main.py").is_file(), log
        assert (state / "lcm" / "pick.py").is_file(), log
        repo.publish("1.2.0", app_files("1.2.0", n=3))
        later = run(state, mpy)
        assert later.state["app_tag"] == "v1.2.0", text(later)
        assert running_app(state, text(later)) == "v1.2.0"


def test_trial_app_that_deletes_manager_files(tmp_path: Path, mpy: Any) -> None:
    """The manager's files are repaired from the other manager slot, checked against the
    signed manifest; /main.py falls back to that slot while the active one does not import."""
    with running_host(tmp_path, repos=("acme/widget", "acme/lcm")) as host:
        app, _, state = updated_manager(tmp_path, mpy, host, n=3)
        gone = ("lcm_device/slots.mpy", "lcm_device/update.mpy")
        hostile = ROOT + "".join(f"__import__('os').remove(R + '/lcm/m1/{p}')\n" for p in gone)
        app.publish("1.1.0", release("1.1.0", hostile + "raise RuntimeError('hostile')\n"))
        status = run(state, mpy, once=False, max_boots=8)
        out = text(status)
        assert "main.py: manager m1 does not import" in out, out
        assert "manager: repaired lcm_device/slots.mpy in m1 from m0" in out, out
        assert status.state["app_tag"] == "v1.0.0" and status.state["app_bad"] == "v1.1.0", out
        assert slot_is_complete(state, "m1") and status.state["mgr"] == "m1"
        app.publish("1.2.0", app_files("1.2.0", n=3))
        later = run(state, mpy)
        assert later.state["app_tag"] == "v1.2.0", text(later)
        assert "does not import" not in text(later)


def test_trial_app_that_damages_the_message_catalog(tmp_path: Path, mpy: Any) -> None:
    """The catalog of the manager's messages (publisher/mpytext.py) is one of its signed
    files: damaged, the messages read as their numbers meanwhile, and the self-check
    repairs it from the other manager slot."""
    with running_host(tmp_path, repos=("acme/widget", "acme/lcm")) as host:
        app, _, state = updated_manager(tmp_path, mpy, host, n=3)
        catalog = "lcm_device/catalog.txt"
        intact = (state / "lcm" / "m1" / catalog).read_bytes()
        hostile = ROOT + f"open(R + '/lcm/m1/{catalog}', 'w').write('damaged\\n')\n"
        app.publish("1.1.0", release("1.1.0", hostile + "raise RuntimeError('hostile')\n"))
        status = run(state, mpy, once=False, max_boots=8)
        out = text(status)
        assert "catalog.txt unreadable] m1 v0.2.0" in out, out
        assert f"manager: repaired {catalog} in m1 from m0" in out, out
        assert status.state["app_tag"] == "v1.0.0" and status.state["app_bad"] == "v1.1.0", out
        assert (state / "lcm" / "m1" / catalog).read_bytes() == intact
        assert slot_is_complete(state, "m1") and status.state["mgr"] == "m1"
