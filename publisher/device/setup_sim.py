"""A simulated device in setup mode: the real portal in the MicroPython unix port.

`start_setup(state)` compiles the device code, starts the unix port against
the state folder (config in `lcm/state/config.json`, the fake radio's script
in `lcm/state/radio.json` unless another one is given), waits until the
portal listens on loopback and returns a `SetupSim` with the portal URL and
the DNS port. `lcm device simulate --setup` and the portal tests use it.

The unix port cannot report the port a socket was bound to, so free ports
are picked here (bind to port 0, close, pass the number) and the start is
retried on the rare clash with another process.
"""

from __future__ import annotations

import json
import queue
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from lcm_sim import RADIO_SCRIPT as _RADIO_SCRIPT
from publisher.errors import PublisherError
from publisher.fsutil import write_atomic
from publisher.micropython import (
    UNIX_PACKAGES,
    build_mpy,
    die_with_parent,
    micropython_command,
    micropython_env,
)

RADIO_SCRIPT = Path(_RADIO_SCRIPT.lstrip("/"))
CONFIG = Path("lcm/state/config.json")
READY_TIMEOUT_S = 60.0
_START_ATTEMPTS = 3
_READY = re.compile(r"portal: (http://\S+/) dns (\S+) port (\d+)")
_AP = re.compile(r"wifi: setup network (LCM-[0-9A-F]{6})(?: password (\S+))?")

# The device side (lcm_sim/setup_mode.py) runs as `micropython -m lcm_sim.setup_mode`.
SETUP_MODULE = "lcm_sim.setup_mode"


# The air of `lcm device simulate --setup` when the device has no radio script: one
# home network to join from the portal (its password is printed), one open cafe.
DEFAULT_RADIO = {
    "networks": [
        {"ssid": "home", "rssi": -48, "auth": 3, "password": "lcm-home-pass"},
        {"ssid": "cafe", "rssi": -75, "auth": 0},
    ],
}


def write_default_radio(state: Path) -> Path:
    """Give a simulated device without a radio script the default air; returns its path."""
    path = Path(state) / RADIO_SCRIPT
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(DEFAULT_RADIO, indent=1).encode())
    return path


class SetupSimError(PublisherError):
    """The simulated device did not reach setup mode; the message holds its output."""


def free_port(kind: int) -> int:
    """A port that was free on 127.0.0.1 a moment ago (SOCK_STREAM or SOCK_DGRAM)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class SetupSim:
    """A running simulated device; `stop()` (or the context manager) ends it."""

    process: subprocess.Popen[str]
    state: Path
    url: str
    address: str
    dns_port: int
    ap_name: str
    ap_password: str | None
    lines: list[str] = field(default_factory=list)
    _queue: queue.Queue[str | None] = field(default_factory=queue.Queue)
    _own_build: Path | None = None  # a build folder made for this device, removed by stop()

    def output(self) -> str:
        """Everything the device printed so far."""
        self._drain(0)
        return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = READY_TIMEOUT_S) -> re.Match[str]:
        """The first printed line matching `pattern` (already seen or still to come)."""
        regex = re.compile(pattern)
        checked = 0
        deadline = time.monotonic() + timeout
        while True:
            for line in self.lines[checked:]:
                m = regex.search(line)
                if m:
                    return m
            checked = len(self.lines)
            left = deadline - time.monotonic()
            if left <= 0 or not self._drain(left):
                raise SetupSimError(
                    f"the device never printed {pattern!r}; its output:\n" + self.output()
                )

    def _drain(self, timeout: float) -> bool:
        """Move printed lines into `lines`; False once the device's output ended."""
        try:
            item = self._queue.get(timeout=timeout) if timeout else self._queue.get_nowait()
        except queue.Empty:
            return timeout == 0
        while True:
            if item is None:
                self._queue.put(None)  # keep the end marker for later calls
                return False
            self.lines.append(item)
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return True

    def wait(self, timeout: float = READY_TIMEOUT_S) -> int:
        """Wait for the device to exit; its exit code."""
        code = self.process.wait(timeout)
        self._drain(0)
        return code

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._drain(0)
        if self._own_build is not None:
            shutil.rmtree(self._own_build, ignore_errors=True)
            self._own_build = None

    def __enter__(self) -> SetupSim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _pump(stream: object, out: queue.Queue[str | None]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        out.put(line.rstrip("\n"))
    out.put(None)


def start_setup(
    state: Path,
    *,
    radio_script: Path | None = None,
    mode: str = "setup",
    heap: str | None = None,
    data_heap: int = 0,
    build_dir: Path | None = None,
    ready: bool = True,
    bind: str = "127.0.0.1",
) -> SetupSim:
    """Start a simulated device in setup mode (`mode="connect"`: station first).

    `state` is the device root: `lcm/state/config.json` is its config and,
    without `radio_script`, `lcm/state/radio.json` its air. `heap` is a unix
    port heap size such as "24k"; `data_heap` (bytes) leaves only that much
    heap free once the code is loaded (see lcm_sim/setup_mode.py). Returns once the
    portal listens (`ready=False`: at once, for a device that may never
    need setup mode; then use `wait_for`).
    """
    if mode not in ("setup", "connect"):
        raise SetupSimError(f"mode must be 'setup' or 'connect', not {mode!r}")
    state = Path(state)
    script = Path(radio_script) if radio_script else state / RADIO_SCRIPT
    if not script.is_file():
        raise SetupSimError(f"no radio script at {script} (see lcm_sim/fakeradio.py)")
    try:
        radio = json.loads(script.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise SetupSimError(f"the radio script {script} is not valid JSON: {exc}") from None
    if not isinstance(radio, dict):
        raise SetupSimError(f"the radio script {script} must be a JSON object")
    (state / CONFIG).parent.mkdir(parents=True, exist_ok=True)
    own_build = None
    if build_dir is None:
        build_dir = own_build = Path(tempfile.mkdtemp(prefix="lcm-mpy-"))
    build = build_mpy(build_dir, UNIX_PACKAGES)
    env = micropython_env([build])
    env["LCM_RADIO_SCRIPT"] = str(script.resolve())
    env["LCM_ROOT"] = str(state.resolve())
    mac = radio.get("mac")
    if isinstance(mac, str):
        env["LCM_MAC"] = mac  # the HAL's unique id is the radio's MAC, as on a board
    cmd = micropython_command()
    if heap:
        cmd += ["-X", f"heapsize={heap}"]
    last = ""
    for _ in range(_START_ATTEMPTS):
        http_port = free_port(socket.SOCK_STREAM)
        dns_port = free_port(socket.SOCK_DGRAM)
        args = ["-m", SETUP_MODULE, mode, str(http_port), str(dns_port), bind, str(data_heap)]
        proc = subprocess.Popen(
            [*cmd, *args],
            preexec_fn=die_with_parent(),
            cwd=build,  # sys.path[0] of `-m`: the compiled modules, never a source tree
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        sim = SetupSim(proc, state, "", bind, dns_port, "", None)
        threading.Thread(target=_pump, args=(proc.stdout, sim._queue), daemon=True).start()
        if not ready:
            sim._own_build = own_build
            return sim
        try:
            line = sim.wait_for(_READY.pattern)
        except SetupSimError as exc:
            sim.stop()
            last = str(exc)
            if "EADDRINUSE" in last or "Errno 98" in last:
                continue  # another process took the port in between: new ports
            if own_build is not None:
                shutil.rmtree(own_build, ignore_errors=True)
            raise
        sim._own_build = own_build
        sim.url = line.group(1)
        ap = _AP.search(sim.output())
        if ap:
            sim.ap_name, sim.ap_password = ap.group(1), ap.group(2)
        return sim
    if own_build is not None:
        shutil.rmtree(own_build, ignore_errors=True)
    raise SetupSimError(last)
