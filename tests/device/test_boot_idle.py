"""A board with no app (its first check failed) waits for the next check, then resets.

The check runs in an update boot, which resets into the app boot; with no app
installed, that boot waits.

The unix HAL returns instead (the simulator restarts it); here the HAL is told
to wait as a board's does, and the clock and sleep are fakes that advance
together, so the back-off of a few minutes passes at once.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from lcm_device.slots import APP_NEXT
from publisher.device.simulate import provision

BOOT_LIKE_A_BOARD = """
from lcm_device import appboot, boot, compat
from lcm_device.hal import get

clock = [compat._last_ticks]
compat.ticks_ms = lambda: clock[0]
slept = [0]

def sleep(ms):
    slept[0] += ms
    clock[0] += ms

appboot.sleep_ms = sleep
get().waits_without_app = {waits}
try:
    boot.main()
    print("RETURNED")
finally:
    print("SLEPT", slept[0] // 1000)
"""


def closed_port() -> int:
    """A loopback port nobody listens on (bound a moment ago, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def device(tmp_path: Path, mpy: Any) -> Path:
    state = tmp_path / "device"
    provision(
        state,
        web_url=f"http://127.0.0.1:{closed_port()}",
        repo="acme/widget",
        roots=[bytes.fromhex("04" + "11" * 64)],
        build=mpy.build,
        settings={"http_timeout_ms": 2000, "gestures": False, "check_interval_s": 3600},
    )
    return state


def boot(state: Path, mpy: Any, waits: bool) -> tuple[int, str]:
    """The update boot (its check fails), then the app boot it resets into: the second
    boot's exit code, both boots' output."""
    out = ""
    for cause, check_now in (("power", "1"), ("reset", "0")):
        env = {"LCM_ROOT": str(state), "LCM_BOOT_CAUSE": cause, "LCM_CHECK_NOW": check_now}
        proc = mpy.run(
            BOOT_LIKE_A_BOARD.replace("{waits}", str(waits)), check=False, extra_env=env, rom=True
        )
        out += proc.stdout + proc.stderr
        if check_now == "1":
            assert proc.returncode == 75 and (state / APP_NEXT.lstrip("/")).exists(), out
    return proc.returncode, out


def test_failed_first_check_waits_for_the_next_check_and_resets(tmp_path: Path, mpy: Any) -> None:
    state = device(tmp_path, mpy)

    code, out = boot(state, mpy, waits=True)

    assert "app: check failed: NetworkError" in out, out
    assert "app: none installed yet" in out
    waiting = [line for line in out.splitlines() if "app: waiting " in line]
    assert len(waiting) == 1 and waiting[0].endswith(" s for the next check"), out
    left = int(waiting[0].split("app: waiting ")[1].split()[0])
    assert 10 <= left <= 600  # the first failure's back-off
    assert "schedule: check due, resetting into the manager" in out, out
    assert code == 75 and "RETURNED" not in out, out
    slept = int(out.split("SLEPT ")[-1].split()[0])  # in the app boot
    assert left <= slept <= left + 2
    # The reset is a check request: the next boot checks at once.
    assert (state / "lcm" / "state" / "check.now").exists()


def test_unix_hal_returns_for_the_simulator(tmp_path: Path, mpy: Any) -> None:
    state = device(tmp_path, mpy)

    code, out = boot(state, mpy, waits=False)

    assert "app: none installed yet" in out and "RETURNED" in out, out
    assert code == 0 and out.count("SLEPT 0") == 2, out
    assert "app: waiting" not in out
