"""docs/hobbyist.md's "Try it first" run as written: the app, keys and sector, a host in
one shell, the publish and a simulated board in another (only the port changed to a free
one, and `--once` added so that the board stops after its install instead of running
until Ctrl-C). A copied command that does not work for a reader (a token that never
reaches the second shell, a sector that needs the internet) fails here."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.test_readme import ROOT


def try_it_blocks() -> tuple[str, str, str]:
    text = (ROOT / "docs" / "hobbyist.md").read_text(encoding="utf-8")
    section = text.split("## Try it first", 1)[1]
    setup, host, board = re.findall(r"```sh\n(.*?)```", section, re.S)[:3]
    return setup, host, board


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", "set -e\n" + command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_try_it_first_with_a_simulated_board(tmp_path: Path) -> None:
    setup, host_block, board_block = try_it_blocks()
    port = str(free_port())
    host_block = host_block.replace("--port 8000", "--port " + port)
    board_block = board_block.replace("127.0.0.1:8000", "127.0.0.1:" + port)
    assert "lcm device simulate" in board_block
    board_block = board_block.rstrip() + " --once\n"
    # Each shell starts from the reader's environment: nothing exported by the other.
    env = {k: v for k, v in os.environ.items() if k not in ("GITHUB_TOKEN", "LCM_HOST_TOKEN")}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    prep = run(setup, tmp_path, env)  # the app, keys and sector, as the doc makes them
    assert prep.returncode == 0, prep.stdout + prep.stderr
    host = subprocess.Popen(
        ["bash", "-c", host_block],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", int(port)), timeout=1).close()
                break
            except OSError:
                assert host.poll() is None and time.monotonic() < deadline, "host did not start"
                time.sleep(0.2)
        board = run(board_block, tmp_path, env)
    finally:
        host.terminate()
        host.wait(timeout=30)
    output = board.stdout + board.stderr
    assert board.returncode == 0, output[-4000:]
    assert "hello from my app" in output, output[-4000:]
    assert "installed this run: v1.0.0" in output, output[-4000:]
