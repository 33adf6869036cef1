"""Simulated devices that stay up (their app idles), for the fleet tests against mosquitto.

Each `LiveDevice` is the real device code in the MicroPython unix port,
restarted like a board (exit 75 = reset, 0 = the app returned) by a thread
until `stop()`. Its app confirms itself and idles with `lcm.idle`, which on
the unix port polls the check timer and the fleet link (no board timer).
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from publisher.device.simulate import board_code, provision, read_state
from publisher.micropython import micropython_command, micropython_env
from tests.device.enginekit import engine_env, engine_heap

# The app of the fleet tests: confirms itself, then idles forever (lcm.idle runs lcm's
# watcher: scheduled checks, push hints, status).
IDLE_APP = (
    "import lcm\nlcm.confirm()\nprint('APP', lcm.status()['app'], 'running')\n"
    "while True:\n    lcm.idle(1000)\n"
)


def idle_app(version: str) -> dict[str, bytes]:
    return {"main.py": f"# app {version}\n{IDLE_APP}".encode()}


class LiveDevice:
    def __init__(
        self, folder: Path, mpy: Any, host: Any, repo: str, root: bytes, mac: str, **cfg: Any
    ):
        self.state = folder
        self.mpy = mpy
        self.mac = mac
        self.lines: list[str] = []
        self.boots = 0
        self._proc: subprocess.Popen[str] | None = None
        self._stop = False
        self._thread: threading.Thread | None = None
        settings = {"http_timeout_ms": 3000, "gestures": False, "check_interval_s": 7200}
        settings.update(cfg)
        provision(
            folder,
            web_url=host.url,
            repo=repo,
            roots=[root],
            board="esp32",
            build=mpy.build,
            settings=settings,
        )

    @property
    def id(self) -> str:
        return self.mac

    def start(self) -> None:
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        cause = "power"
        cmd = micropython_command()
        heap = engine_heap(self.mpy)
        if heap:
            cmd += ["-X", f"heapsize={heap}"]
        while not self._stop:
            env = micropython_env([board_code()])  # the simulated board (lcm_sim)
            env.update(
                {
                    "LCM_ROOT": str(self.state.resolve()),
                    "LCM_BOOT_CAUSE": cause,
                    "LCM_MAC": self.mac,
                    **engine_env(self.mpy),
                }
            )
            self.boots += 1
            self._proc = subprocess.Popen(
                [*cmd, "main.py"],
                cwd=self.state,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            assert self._proc.stdout is not None
            for line in self._proc.stdout:
                self.lines.append(line.rstrip("\n"))
            code = self._proc.wait()
            self.lines.append(f"--- exit {code}")
            cause = "reset"
            if code not in (0, 75):
                time.sleep(0.5)  # a crash: a board's watchdog restarts it

    def stop(self) -> None:
        self._stop = True
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
        if self._thread is not None:
            self._thread.join(10)

    def wait_for(self, pattern: str, timeout: float = 60, after: int = 0) -> str:
        """The first output line from index `after` matching `pattern` (a regex)."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines[after:]:
                if rx.search(line):
                    return line
            time.sleep(0.1)
        raise AssertionError(
            f"device {self.mac}: no line matching {pattern!r} in {timeout} s\n"
            + "\n".join(self.lines[-60:])
        )

    def boot_state(self) -> dict[str, Any]:
        return read_state(self.state)

    def text(self) -> str:
        return "\n".join(self.lines)
