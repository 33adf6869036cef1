"""`lcm logs` against real MicroPython processes on loopback, the flash ring across restarts,
and the ring of a board on a serial port.

The device side runs from .mpy in the unix port with the life-cycle HAL
double (`tests/device/test_log_micropython.py`); `lcm logs` runs as its own
process, listening on a free port on 127.0.0.1, or reading a board through
mpremote: the unix port behind a pseudo-terminal (`tests/serialboard.py`),
its filesystem the folder the device code logged in.
"""

from __future__ import annotations

import datetime
import json
import os
import pty
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from cert_sector import logline
from publisher.commands.logs import parse_line
from publisher.micropython import UNIX_PACKAGES, build_mpy, run_micropython
from tests.device.test_log_micropython import DEVICE, DEVICE_ENV
from tests.serialboard import serial_board

LCM = [sys.executable, "-c", "from publisher.cli import main; main()"]


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_mpy(tmp_path_factory.mktemp("mpy"), UNIX_PACKAGES)


def device(build: Path, workdir: Path, code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `code` in the unix port from .mpy, with the unix HAL's flash in `workdir`."""
    (workdir / "snippet.py").write_text(textwrap.dedent(code))
    return run_micropython(
        ["snippet.py"],
        path=[build],
        cwd=workdir,
        timeout=60,
        extra_env={**DEVICE_ENV, **env},
    )


def lcm(*args: str, lcm: Sequence[str] = LCM) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*lcm, *args], capture_output=True, text=True, timeout=90, check=False)


class Listener:
    """`lcm logs --bind 127.0.0.1 --port 0 --count N` as a process; `port` is where it listens."""

    def __init__(self, count: int, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [*LCM, "logs", "--bind", "127.0.0.1", "--port", "0", "--count", str(count), *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stderr is not None
        banner = self.proc.stderr.readline()
        assert "listening on UDP 127.0.0.1:" in banner, banner
        self.port = int(banner.split("127.0.0.1:")[1].split()[0])

    def output(self) -> str:
        out, err = self.proc.communicate(timeout=60)
        assert self.proc.returncode == 0, err
        return out


@pytest.fixture
def listener() -> Iterator[type[Listener]]:
    started: list[Listener] = []

    def start(count: int, *extra: str) -> Listener:
        one = Listener(count, *extra)
        started.append(one)
        return one

    yield start  # type: ignore[misc]
    for one in started:
        if one.proc.poll() is None:
            one.proc.kill()
            one.proc.wait()


def test_lcm_logs_prints_a_micropython_udp_line_with_device_and_time(
    build: Path, tmp_path: Path, listener
) -> None:
    logs = listener(2)
    device(
        build,
        tmp_path,
        f"""
        from lcm_sim.unix import UnixHal
        from lcm_device import log

        class Clock(UnixHal):
            def time(self):
                return 1795939658

        log.setup(UnixHal(), {{"log_host": "127.0.0.1", "log_port": {logs.port}}})
        log.log("offline: ring and console only")
        log.online(True)
        log.log("update check: nothing new")
        log.setup(Clock(), {{"log_host": "127.0.0.1", "log_port": {logs.port}}})
        log.log("clock known")
        """,
    )
    lines = logs.output().splitlines()
    assert len(lines) == 2
    # No device clock: the host's receive time stands in, with the device's uptime.
    received, rest = lines[0].split(" (up ", 1)
    assert (
        abs(
            datetime.datetime.fromisoformat(received.replace("Z", "+00:00")).timestamp()
            - datetime.datetime.now(datetime.UTC).timestamp()
        )
        < 3600
    )
    assert rest.endswith(f") {DEVICE} #2 update check: nothing new")
    assert lines[1] == f"2026-11-29T08:07:38Z {DEVICE} #3 clock known"


# What `lcm logs --json` prints for every line (docs/lifecycle.md), UDP or ring.
FIELDS = {"device", "sequence", "time", "uptime", "text", "received", "source"}


def test_lcm_logs_json_and_hostile_datagrams(build: Path, tmp_path: Path, listener) -> None:
    logs = listener(3, "--json")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"\x1b[2J not a device line \xff\n", ("127.0.0.1", logs.port))
        s.sendto(b"cafe 9 +1s bell\x07 and [bold]markup[/bold]\n", ("127.0.0.1", logs.port))
    device(
        build,
        tmp_path,
        f"""
        from lcm_sim.unix import UnixHal
        from lcm_device import log

        class Clock(UnixHal):
            def time(self):
                return 1795939658

        log.setup(Clock(), {{"log_host": "127.0.0.1", "log_port": {logs.port}}})
        log.online(True)
        log.log("json line")
        """,
    )
    recs = [json.loads(line) for line in logs.output().splitlines()]
    assert recs[0]["device"] is None
    assert recs[0]["text"] == "\\x1b[2J not a device line \ufffd"
    assert recs[1]["device"] == "cafe"
    assert recs[1]["text"] == "bell\\x07 and [bold]markup[/bold]"
    assert recs[1]["uptime"] == "+1s"
    assert recs[2]["device"] == DEVICE
    assert recs[2]["sequence"] == 1
    assert recs[2]["time"] == "2026-11-29T08:07:38Z"
    assert recs[2]["text"] == "json line"
    assert recs[2]["source"].startswith("127.0.0.1:")
    assert all(set(r) == FIELDS for r in recs)


def test_ring_survives_a_restart(build: Path, tmp_path: Path) -> None:
    for boot in range(3):
        device(
            build,
            tmp_path,
            f"""
            from lcm_sim.unix import UnixHal
            from lcm_device import log
            log.setup(UnixHal(), {{}})
            log.log("boot {boot} a")
            log.log("boot {boot} b")
            """,
        )
    result = lcm("logs", "--state", str(tmp_path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines == [
        f"+0s {DEVICE} #{seq} boot {boot} {x}"
        for seq, (boot, x) in enumerate(((b, x) for b in range(3) for x in "ab"), start=1)
    ]
    newest = lcm("logs", "--state", str(tmp_path), "--count", "2")  # was ignored with --state
    assert newest.stdout.splitlines() == lines[-2:], newest.stdout


def test_torn_ring_write_loses_at_most_that_line(build: Path, tmp_path: Path) -> None:
    # Three lines, then the power is cut half way through the fourth line's write
    # (flash mutation 1 opens the ring for appending, 2 is the write).
    device(
        build,
        tmp_path,
        """
        from lcm_sim.unix import UnixHal
        from lcm_device import log
        log.setup(UnixHal(), {})
        for i in range(3):
            log.log("kept %d" % i)
        """,
    )
    cut = device(
        build,
        tmp_path,
        """
        from lcm_sim.unix import UnixHal
        from lcm_device import log
        log.setup(UnixHal(), {})
        log.log("torn by the power cut")
        print("NOT REACHED")
        """,
        LCM_FAULT_AT="2",
    )
    assert cut.returncode == 76, cut.stdout + cut.stderr
    assert "NOT REACHED" not in cut.stdout
    ring = (tmp_path / "lcm/state/log.ring").read_bytes()
    assert not ring.endswith(b"\n")  # the cut really left half a record
    device(
        build,
        tmp_path,
        """
        from lcm_sim.unix import UnixHal
        from lcm_device import log
        log.setup(UnixHal(), {})
        log.log("after the cut")
        """,
    )
    result = lcm("logs", "--state", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    recs = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["text"] for r in recs] == ["kept 0", "kept 1", "kept 2", "after the cut"]
    # Number 4 was the torn line's (it may have been sent over UDP): not reused.
    assert [r["sequence"] for r in recs] == [1, 2, 3, 5]


def test_lcm_logs_refuses_bad_arguments(tmp_path: Path) -> None:
    missing = lcm("logs", "--state", str(tmp_path / "nope"))
    assert missing.returncode == 1
    assert "no such folder" in missing.stderr
    empty = lcm("logs", "--state", str(tmp_path))
    assert empty.returncode == 1
    assert "no log ring" in empty.stderr
    (tmp_path / "a-file").write_text("x")
    a_file = lcm("logs", "--state", str(tmp_path / "a-file"))
    assert a_file.returncode == 1 and "is a file: give a simulated device's folder" in a_file.stderr
    (tmp_path / "lcm" / "state").mkdir(parents=True)
    (tmp_path / "lcm" / "state" / "log.ring").write_bytes(bytes(range(256)) * 4)
    junk = lcm("logs", "--state", str(tmp_path))
    assert junk.returncode == 0 and "no log line could be read from the ring" in junk.stderr
    bad_port = lcm("logs", "--port", "70000")
    assert bad_port.returncode == 2
    assert "--port" in bad_port.stderr
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        busy = lcm("logs", "--bind", "127.0.0.1", "--port", str(port))
    assert busy.returncode == 1
    assert f"cannot listen on UDP 127.0.0.1:{port}" in busy.stderr


def test_a_second_lcm_logs_on_the_same_port_is_refused(listener: type[Listener]) -> None:
    # Two listeners sharing a port (SO_REUSEADDR) would split a device's unicast lines
    # between them, silently: the second one is refused, naming the port.
    first = listener(1)
    second = lcm("logs", "--bind", "127.0.0.1", "--port", str(first.port))
    assert second.returncode == 1
    assert f"cannot listen on UDP 127.0.0.1:{first.port}" in second.stderr
    assert "in use" in second.stderr


# ---------------------------------------------------------------- a board's ring


def test_lcm_logs_device_reads_a_boards_ring_as_state_does(build: Path, tmp_path: Path) -> None:
    # The device code logs enough to rotate the ring (both halves hold lines), the last
    # line hostile; the board's flash is then read over its serial port.
    device(
        build,
        tmp_path,
        """
        from lcm_sim.unix import UnixHal
        from lcm_device import log

        class Clock(UnixHal):
            def time(self):
                return 1795939658

        log.setup(UnixHal(), {})
        for i in range(20):
            log.log("line %d " % i + "x" * 100)
        log.setup(Clock(), {})
        log.log("bell\x07 \x1b[2J and [bold]markup[/bold]")
        """,
    )
    assert (tmp_path / logline.RING_OLD.lstrip("/")).is_file()
    state = lcm("logs", "--state", str(tmp_path))
    state_json = lcm("logs", "--state", str(tmp_path), "--json")
    with serial_board(tmp_path) as port:
        text = lcm("logs", "--device", port)
        as_json = lcm("logs", "--device", port, "--json")
    assert text.returncode == 0, text.stderr
    assert as_json.returncode == 0, as_json.stderr
    assert text.stdout == state.stdout
    # The same records, with the documented fields (docs/lifecycle.md) whatever was read:
    # no receive time for a stored line, and where it was read from.
    state_recs = [json.loads(line) for line in state_json.stdout.splitlines()]
    board_recs = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert all(set(r) == FIELDS and r["received"] is None for r in state_recs + board_recs)
    assert {r["source"] for r in state_recs} == {str(tmp_path)}
    assert {r["source"] for r in board_recs} == {port}
    assert [{**r, "source": None} for r in board_recs] == [
        {**r, "source": None} for r in state_recs
    ]
    lines = text.stdout.splitlines()
    assert lines[0] == f"+0s {DEVICE} #1 line 0 " + "x" * 100
    assert lines[-1] == (
        f"2026-11-29T08:07:38Z {DEVICE} #21 bell\\x07 \\x1b[2J and [bold]markup[/bold]"
    )
    recs = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [r["sequence"] for r in recs] == list(range(1, 22))
    assert recs[-1]["text"] == "bell\\x07 \\x1b[2J and [bold]markup[/bold]"
    assert f"the board on {port} stopped its program" in text.stderr


def test_lcm_logs_device_on_a_board_that_logged_nothing(tmp_path: Path) -> None:
    with serial_board(tmp_path) as port:
        result = lcm("logs", "--device", port)
        as_json = lcm("logs", "--device", port, "--json")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert f"no log lines are stored on the board on {port}" in result.stderr
    assert as_json.returncode == 0 and as_json.stdout == "", as_json.stderr
    # A ring the board cannot read is not taken for an empty one.
    (tmp_path / logline.RING.lstrip("/")).mkdir(parents=True)
    with serial_board(tmp_path) as port:
        unreadable = lcm("logs", "--device", port)
    assert unreadable.returncode == 1
    assert unreadable.stderr == (
        f"error: the board on {port} cannot read {logline.RING}: Is a directory\n"
    )


def test_lcm_logs_device_where_no_board_answers(tmp_path: Path) -> None:
    missing = "/dev/lcm-test-no-such-port"
    result = lcm("logs", "--device", missing)
    assert result.returncode == 1
    assert result.stderr == (
        f"error: no serial port {missing}: is the board plugged in? "
        "(ls /dev/ttyUSB* /dev/ttyACM*)\n"
    )
    # A serial port that opens but where nothing answers (a board not running
    # MicroPython): a pseudo-terminal, named as a USB-UART so mpremote waits for it as
    # for one (10 s), not for ever as for an emulator's pty.
    leader, follower = pty.openpty()
    try:
        silent = tmp_path / "ttyUSB0"
        silent.symlink_to(os.ttyname(follower))
        result = lcm("logs", "--device", str(silent))
    finally:
        os.close(leader)
        os.close(follower)
    assert result.returncode == 1
    assert f"error: no MicroPython board answered on {silent}: " in result.stderr
    assert "could not enter raw repl" in result.stderr and "Traceback" not in result.stderr


def test_lcm_logs_device_without_mpremote(tmp_path: Path) -> None:
    no_mpremote = [
        sys.executable,
        "-c",
        "import sys; sys.modules['mpremote'] = None; from publisher.cli import main; main()",
    ]
    result = lcm("logs", "--device", "/dev/ttyUSB0", lcm=no_mpremote)
    assert result.returncode == 1
    assert result.stderr == (
        "error: cannot reach the board on /dev/ttyUSB0: "
        "mpremote is not installed (pip install mpremote)\n"
    )
    both = lcm("logs", "--device", "/dev/ttyUSB0", "--state", str(tmp_path))
    assert both.returncode == 1
    assert "give --state or --device, not both" in both.stderr


def test_iso_time_matches_the_calendar() -> None:
    for t in (0, 59, 86399, 86400, 951782400, 1709164800, 1795939658, 4102444800, 4107542399):
        expected = datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert logline.iso_time(t) == expected


def test_parse_line_refuses_other_text() -> None:
    assert parse_line("240ac4123456 7 +3s hello world") == (DEVICE, 7, "+3s", "hello world")
    assert parse_line("240ac4123456 7 +3s") == (DEVICE, 7, "+3s", "")
    for bad in ("garbage", "a b", "a -1 c", "a x c", " 1 c", "a ١ c"):
        assert parse_line(bad) is None, bad
