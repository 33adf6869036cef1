"""`lcm device simulate` as a tool: a device that runs like a board until Ctrl-C.

Started as a user would start it (a subprocess of the installed `lcm`), against
`lcm host`: the check timer fires while an app runs that never calls into lcm,
a release published meanwhile is installed and the app restarts, Ctrl-C ends
the run cleanly with a summary and leaves no device process behind.
"""

from __future__ import annotations

import signal
from pathlib import Path

from typer.testing import CliRunner

from lcm_device.schedule import MIN_INTERVAL_S
from publisher.cli import app
from publisher.commands.simulate import MIN_CHECK_INTERVAL_S
from tests.device.enginekit import Repo, app_files
from tests.hostserver import running_host
from tests.test_simulate_cli import read_until, simulate_args, start_cli, write_root

runner = CliRunner()

# An app that loops for ever and never calls lcm (no lcm.idle): only the board's timer
# can reset it into the manager for a check.
LOOPING_APP = """import time
import lcm
print('APP', lcm.status()['app'], 'running')
lcm.confirm()
while True:
    time.sleep_ms(200)
"""


def looping_app(version: str) -> dict[str, bytes]:
    return {"main.py": f"# app {version}\n{LOOPING_APP}".encode()}


def test_runs_like_a_board_until_ctrl_c(tmp_path: Path) -> None:
    with running_host(tmp_path) as host:
        repo = Repo(host)
        repo.publish("1.0.0", looping_app("1.0.0"))
        pub = write_root(tmp_path, repo)
        state = tmp_path / "dev"
        args = simulate_args(state, host.url, pub, "--check-interval", str(MIN_CHECK_INTERVAL_S))
        proc, lines = start_cli(*args[2:])
        seen: list[str] = []
        try:
            read_until(lines, "| APP v1.0.0 running", seen)
            # Published while the device runs: the timer's check (45-75 s later) takes it.
            repo.publish("1.1.0", looping_app("1.1.0"))
            read_until(lines, "| APP v1.1.0 running", seen)
            proc.send_signal(signal.SIGINT)
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        while (line := lines.get(timeout=60)) is not None:
            seen.append(line)

    assert code == 0, "\n".join(seen)
    text = "\n".join(seen)
    assert "schedule: check due, resetting into the manager" in text
    assert "app: switched to app1 (v1.1.0), trial boot next" in text
    assert seen[-2] == "stopped (Ctrl-C: the power is off)", seen[-3:]
    assert seen[-1] == (
        "stopped: 4 boots; app v1.1.0 (app1); manager (factory); installed this run: v1.0.0, v1.1.0"
    )
    # The run's power-on was settled by the board's timer: a re-run is not a gesture.
    assert (state / "lcm/state/gesture").read_text() == "0"


def test_a_rerun_needs_no_arguments_and_waits_for_no_gesture(tmp_path: Path) -> None:
    with running_host(tmp_path) as host:
        repo = Repo(host)
        repo.publish("1.0.0", app_files("1.0.0", n=2))
        pub = write_root(tmp_path, repo)
        state = tmp_path / "dev"
        first = runner.invoke(app, simulate_args(state, host.url, pub, "--once"))
        assert first.exit_code == 0, first.output

        again = runner.invoke(app, ["device", "simulate", "--state", str(state), "--once"])

    assert again.exit_code == 0, again.output
    assert again.output.startswith(f"booting the device in {state} (its configuration is kept)")
    assert "gesture:" not in again.output
    assert again.output.splitlines()[-1] == (
        "done: 1 boot; app v1.0.0 (app0); manager (factory); installed this run: nothing"
    )


def test_the_check_interval_floor_is_the_devices() -> None:
    assert MIN_CHECK_INTERVAL_S == MIN_INTERVAL_S
    result = runner.invoke(
        app, ["device", "simulate", "--state", "x", "--check-interval", "59", "--once"]
    )
    assert result.exit_code == 1
    assert "--check-interval must be at least 60 s (the device's shortest interval), got 59" in (
        result.output
    )
