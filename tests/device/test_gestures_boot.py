"""Five quick power cycles through the real boot (`/main.py` -> lcm_device.boot) install an
update at once, against `lcm host` on loopback.

A power cut here is the process killed (SIGKILL) as soon as the boot says what
it waits for: the count is on flash by then, as on a board whose power is
pulled during the gesture wait. The last power-on is left alone: it waits,
counts down, asks for a check, and the boot checks and installs the new
release although the schedule says the next check is hours away.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from publisher.device.simulate import provision
from tests.device.enginekit import Repo, app_files, run, start_device, text
from tests.hostserver import running_host


def power_on_until(state: Path, mpy: Any, marker: str) -> list[str]:
    """Power the device on and cut the power when a log line contains `marker`."""
    proc = start_device(state.resolve(), mpy, "main.py", cwd=state)
    assert proc.stdout is not None
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if marker in line:
                proc.kill()  # the power cut
                break
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    assert any(marker in line for line in lines), "\n".join(lines)
    return lines


def test_five_quick_power_cycles_install_a_new_release_now(tmp_path: Path, mpy: Any) -> None:
    with running_host(tmp_path) as host:
        repo = Repo(host)
        repo.publish("1.0.0", app_files("1.0.0", n=3))
        state = tmp_path / "device"
        provision(
            state,
            web_url=host.url,
            repo=repo.name,
            roots=[repo.root.public_key],
            build=mpy.build,
            settings={"http_timeout_ms": 2000},
        )
        first = run(state, mpy)  # installs v1.0.0 and runs it
        assert first.state.get("app_tag") == "v1.0.0", text(first)
        repo.publish("1.0.1", app_files("1.0.1", n=3))

        # The unix port has no timer to settle the first run's power-on: its count
        # may still be 1 (a board clears it after 4 s). Cycle up to a count of 4:
        # a count of 1 does not wait, so cut as soon as the boot has started.
        counter = state / "lcm/state/gesture"
        count = int(counter.read_text()) if counter.exists() else 0
        while count < 4:
            count += 1
            marker = "boot: manager" if count == 1 else f"gesture: power cycle {count};"
            power_on_until(state, mpy, marker)
        assert counter.read_text() == "4"

        # Cycle 5: the power stays on. Not due by the schedule, but the gesture asks.
        status = run(state, mpy)
        out = text(status)
        assert "gesture: 5 power cycles = check in 1 s (cut the power to change)" in out, out
        assert "gesture: check" in out
        assert status.state.get("app_tag") == "v1.0.1", out
        assert "APP v1.0.1 running" in out
        assert counter.read_text() == "0"
        assert not (state / "lcm/state/check.now").exists()

    # The device's flash log, as `lcm logs --state` prints it: the whole story in order.
    logs = subprocess.run(
        [sys.executable, "-c", "from publisher.cli import main; main()", "logs", "--state", state],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.splitlines()
    # (Lines printed just before a kill may not have reached the ring: the cut is real.)
    story = [
        "app: switched to app0 (v1.0.0), trial boot next",
        "gesture: 5 power cycles = check in 6 s (cut the power to change)",
        "gesture: check",
        "app: switched to app1 (v1.0.1), trial boot next",
    ]
    found = [next(i for i, line in enumerate(logs) if line.endswith(s)) for s in story]
    assert found == sorted(found), "\n".join(logs)
    # Every line parsed: device time (the unix HAL knows the clock), one device, a number.
    device = logs[0].split()[1]
    assert all(line.split()[1] == device and line.split()[2].startswith("#") for line in logs)
