"""`lcm device simulate` as a tool: a device that runs like a board until Ctrl-C.

Started as a user would start it (a subprocess of the installed `lcm`), against
`lcm host`: the check timer fires while an app runs that never calls into lcm,
a release published meanwhile is installed and the app restarts, Ctrl-C ends
the run cleanly with a summary and leaves no device process behind.
"""

from __future__ import annotations

import hashlib
import json
import queue
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from lcm_device.schedule import MIN_INTERVAL_S
from lcm_device.timerwork import SETTLE_S
from publisher.cli import app
from publisher.commands.simulate import MIN_CHECK_INTERVAL_S
from publisher.device.setup_sim import free_port
from tests.device.enginekit import Repo, app_files
from tests.hostserver import running_host
from tests.test_portal_support import FORM, form_body, http, token
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


def device_processes(state: Path) -> list[int]:
    """Processes running the simulated device whose flash is `state` (Linux /proc)."""
    mark = f"LCM_ROOT={state.resolve()}".encode()
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if mark in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
        except OSError:
            continue  # ended meanwhile, or not ours
    return found


def read_containing(lines: queue.Queue[str | None], text: str, seen: list[str]) -> str:
    while True:
        line = lines.get(timeout=120)  # a hang guard, not a timed assertion
        assert line is not None, "the command ended early:\n" + "\n".join(seen)
        seen.append(line)
        if text in line:
            return line


def gone(state: Path) -> bool:
    """True once no process runs the device (a hang guard, not a timed assertion)."""
    for _ in range(100):
        if not device_processes(state):
            return True
        time.sleep(0.1)
    return False


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
            read_containing(lines, "app: confirmed v1.1.0", seen)  # the app's own confirm
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


def installed_once(tmp_path: Path, host: Any) -> Path:
    """A device that installed v1.0.0 (two files) from `host` in one `--once` run."""
    repo = Repo(host)
    repo.publish("1.0.0", app_files("1.0.0", n=2))
    state = tmp_path / "dev"
    first = runner.invoke(app, simulate_args(state, host.url, write_root(tmp_path, repo), "--once"))
    assert first.exit_code == 0, first.output
    return state


def test_a_rerun_needs_no_arguments_and_waits_for_no_gesture(tmp_path: Path) -> None:
    with running_host(tmp_path) as host:
        state = installed_once(tmp_path, host)

        again = runner.invoke(app, ["device", "simulate", "--state", str(state), "--once"])

    assert again.exit_code == 0, again.output
    assert again.output.startswith(f"booting the device in {state} (its configuration is kept)")
    assert "gesture:" not in again.output
    # The update boot (its check), then the app boot it resets into.
    assert again.output.splitlines()[-1] == (
        "done: 2 boots; app v1.0.0 (app0); manager (factory); installed this run: nothing"
    )


def test_the_check_interval_floor_is_the_devices() -> None:
    assert MIN_CHECK_INTERVAL_S == MIN_INTERVAL_S
    result = runner.invoke(
        app, ["device", "simulate", "--state", "x", "--check-interval", "59", "--once"]
    )
    assert result.exit_code == 1
    assert "--check-interval must be from 60 s (the device's shortest interval)" in result.output
    assert "got 59" in result.output


def test_lcm_logs_shows_the_device(tmp_path: Path) -> None:
    port = free_port(socket.SOCK_DGRAM)
    lcm = Path(sys.executable).parent / "lcm"
    logs = subprocess.Popen(
        [str(lcm), "logs", "--bind", "127.0.0.1", "--port", str(port), "--count", "3", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert logs.stderr is not None
        assert "listening on UDP" in logs.stderr.readline()
        with running_host(tmp_path) as host:
            repo = Repo(host)
            repo.publish("1.0.0", app_files("1.0.0", n=2))
            pub = write_root(tmp_path, repo)
            args = simulate_args(tmp_path / "dev", host.url, pub, "--once", "--log-port", str(port))
            result = runner.invoke(app, args)
        out, _ = logs.communicate(timeout=60)
    finally:
        if logs.poll() is None:
            logs.kill()

    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == 3 and records[0]["source"].startswith("127.0.0.1:")
    assert records[0]["text"] == "boot: manager m0 (factory), app none"
    assert len(records[0]["device"]) == 12 and records[0]["time"] is not None


def submit_setup_page(url: str, **fields: str) -> str:
    """Fill in the device's setup page as a phone would; the answer page."""
    t = token(http(url)[2])
    body = {"t": t, "ssid": "home", "password": "lcm-home-pass", "repo": "acme/widget", **fields}
    status, _, page = http(url + "save", form_body(body), FORM)
    assert status == 200 and "<h1>Connected</h1>" in page, page
    return page


def test_set_up_on_the_portal_then_install_from_the_cli(tmp_path: Path) -> None:
    with running_host(tmp_path) as host:
        repo = Repo(host)
        repo.publish("1.0.0", app_files("1.0.0", n=2))
        state = tmp_path / "dev"
        # A board without a manager yet: Wi-Fi, repo and the root's fingerprint on the page.
        proc, lines = start_cli("--state", str(state), "--setup")
        seen: list[str] = []
        try:
            url = read_until(lines, "setup mode: portal ", seen).split()[-1]
            key_id = hashlib.sha256(repo.root.public_key).hexdigest()[:16]
            submit_setup_page(url, fingerprint=key_id, log_host="127.0.0.2")
            read_until(lines, "set up; to install: lcm device simulate", seen)
            assert proc.wait(timeout=60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()

        # No --repo, no --root, no edits: what the page chose is kept, but for what an
        # option given now says (the log host).
        result = runner.invoke(
            app,
            [
                *("device", "simulate", "--state", str(state), "--web-url", host.url, "--once"),
                *("--log-host", "127.0.0.1"),
            ],
        )

    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"provisioned the device set up in {state} (what its setup")
    assert "wifi: connected to 'home'" in result.output
    assert "installed this run: v1.0.0" in result.output.splitlines()[-1]
    cfg = json.loads((state / "lcm/state/config.json").read_text())
    assert cfg["app_roots"] == [repo.root.public_key.hex()] and cfg["log_host"] == "127.0.0.1"


def test_setup_with_a_web_url_goes_on_to_install(tmp_path: Path) -> None:
    with running_host(tmp_path) as host:
        repo = Repo(host)
        repo.publish("1.0.0", app_files("1.0.0", n=2))
        state = tmp_path / "dev"
        proc, lines = start_cli("--state", str(state), "--setup", "--web-url", host.url, "--once")
        seen: list[str] = []
        try:
            url = read_until(lines, "setup mode: portal ", seen).split()[-1]
            submit_setup_page(url, tofu="1")
            read_until(lines, "the device left setup mode (exit 0): connected", seen)
            read_until(lines, "done: ", seen)
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()

    assert code == 0, "\n".join(seen)
    assert "no repo yet: the device opens its setup portal" in "\n".join(seen)
    assert seen[-1].endswith("installed this run: v1.0.0"), seen[-1]
    assert any("trust on first use" in line for line in seen), "\n".join(seen)


def run_until(tmp_path: Path, files: dict[str, bytes], marks: list[str], sig: int):
    """`lcm device simulate` of a new device on v1.0.0 (`files`), stopped with `sig` once
    its output passed each of `marks`; (exit code, every line it printed, its state)."""
    with running_host(tmp_path) as host:
        repo = Repo(host)
        repo.publish("1.0.0", files)
        pub = write_root(tmp_path, repo)
        state = tmp_path / "dev"
        proc, lines = start_cli(*simulate_args(state, host.url, pub)[2:])
        seen: list[str] = []
        try:
            for mark in marks:
                read_until(lines, mark, seen)
            assert len(device_processes(state)) == 1
            proc.send_signal(sig)
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        while (line := lines.get(timeout=60)) is not None:
            seen.append(line)
    return code, seen, state


def test_an_app_that_returns_leaves_the_board_on_until_ctrl_c(tmp_path: Path) -> None:
    # As a board at its REPL: the timer keeps polling for the next check.
    ended = "| lcm-hal: main.py ended; the board stays on"
    code, seen, state = run_until(
        tmp_path, app_files("1.0.0", n=2), ["| APP v1.0.0 running", ended], signal.SIGINT
    )
    assert code == 0, "\n".join(seen)
    assert gone(state)
    assert "exit 0 (app returned)" not in seen
    assert seen[-1] == (
        "stopped: 2 boots; app v1.0.0 (app0); manager (factory); installed this run: v1.0.0"
    )


def test_ctrl_c_soon_after_an_app_returned_is_a_quick_power_cycle(tmp_path: Path) -> None:
    # docs/hobbyist.md: a Ctrl-C within SETTLE_S of the start is a quick power cycle, as on
    # a board, whose timer settles the counter SETTLE_S after the boot even when the app
    # returned at once. The simulator used to settle it as soon as the app returned.
    with running_host(tmp_path) as host:
        state = installed_once(tmp_path, host)
        counter = state / "lcm/state/gesture"
        assert counter.read_text() == "0"

        proc, lines = start_cli("--state", str(state))
        seen: list[str] = []
        try:
            read_until(lines, "boot 2", seen)  # the app boot, after the check's reset
            started = time.monotonic()
            read_until(lines, "| lcm-hal: main.py ended; the board stays on", seen)
            ended_after = time.monotonic() - started
            count_at_end = counter.read_text()
            # Then the board's timer settles it (a hang guard, not a timed assertion).
            for _ in range(300):
                if counter.read_text() == "0":
                    break
                time.sleep(0.1)
            settled = counter.read_text()
            proc.send_signal(signal.SIGINT)
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()

    assert code == 0, "\n".join(seen)
    # This run's power-on is still counted when main.py has just ended (unless this
    # machine took nearly SETTLE_S to get there), and settled by the timer after.
    if ended_after < SETTLE_S - 1:
        assert count_at_end == "1", "\n".join(seen)
    assert settled == "0", "\n".join(seen)


def test_sigterm_stops_the_board_and_says_so(tmp_path: Path) -> None:
    # `kill`: a power cut, as Ctrl-C
    code, seen, state = run_until(
        tmp_path, looping_app("1.0.0"), ["| APP v1.0.0 running"], signal.SIGTERM
    )
    assert code == 0, "\n".join(seen)
    assert gone(state)
    assert seen[-2] == "stopped (SIGTERM: the power is off)", seen[-3:]
    # Confirmed, or still in trial if the signal came within its first seconds.
    assert seen[-1].startswith("stopped: 2 boots; app v1.0.0 (app0"), seen[-1]


def test_a_killed_simulator_leaves_no_board_running(tmp_path: Path) -> None:
    with running_host(tmp_path) as host:
        repo = Repo(host)
        repo.publish("1.0.0", looping_app("1.0.0"))
        pub = write_root(tmp_path, repo)
        state = tmp_path / "dev"
        proc, lines = start_cli(*simulate_args(state, host.url, pub)[2:])
        try:
            read_until(lines, "| APP v1.0.0 running", [])
        finally:
            proc.kill()  # no chance to stop its device
            proc.wait(timeout=60)

    assert gone(state)
