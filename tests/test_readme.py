"""The README's quick start, run as written, so the two commands cannot drift.

The commands are taken from the README itself. The second (the test suite)
is the one `.ci/run` extracts and runs, so CI runs it as written on every
change; here we check that it is the suite. The first (the demo) is run here,
as written, in a copy of the tracked files, with the nox this suite already
has (pip finds it installed) and never the network: the demo's fresh venv is
installed from the wheels `nox -s tests` gathers in $LCM_WHEELHOUSE (pip, on a
machine without uv), or from uv's cache when uv made the suite's venvs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def quick_start() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"## Quick start.*?```sh\n(.*?)```", text, re.S)
    assert match, "README has no quick start block"
    return [line for line in match.group(1).splitlines() if line.strip()]


def test_quick_start_has_two_commands() -> None:
    demo, suite = quick_start()
    assert demo.endswith("nox -s demo")
    assert suite.endswith("nox")


def test_ci_runs_the_readme_test_command() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    # .ci/run extracts the second quick-start command from the README and evals it.
    assert "commands[1]" in script and 'eval "$test_command"' in script


def tracked_copy(dest: Path) -> Path:
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, files):
        src = ROOT / name.decode()
        if src.is_file():
            target = dest / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    return dest


WHEELHOUSE_ENV = "LCM_WHEELHOUSE"  # set by noxfile.py's tests session


def offline_installs() -> dict[str, str]:
    """Environment that makes pip (and uv, if nox picks it) install without the network."""
    offline = {"PIP_NO_INDEX": "1", "UV_OFFLINE": "1"}
    wheelhouse = os.environ.get(WHEELHOUSE_ENV)
    if wheelhouse:
        return {**offline, "PIP_FIND_LINKS": wheelhouse, "UV_FIND_LINKS": wheelhouse}
    if shutil.which("uv"):
        return offline  # uv made this suite's venvs: its cache holds every package
    pytest.fail(
        f"${WHEELHOUSE_ENV} is not set and uv is not installed: run the suite with `nox` "
        "(its tests session gathers the wheels the demo installs offline)"
    )


def test_demo_command_as_written(tmp_path: Path) -> None:
    demo = quick_start()[0]
    tree = tracked_copy(tmp_path / "lcm")
    bindir = Path(sys.executable).parent
    env = dict(os.environ)
    env.update(offline_installs())
    env["PATH"] = os.pathsep.join([str(bindir), env.get("PATH", "")])
    env.pop("VIRTUAL_ENV", None)
    proc = subprocess.run(
        ["sh", "-c", demo],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    for milestone in ("v1.0.0 installed", "v1.1.0 installed", "rolled back to v1.1.0"):
        assert milestone in output, output[-4000:]
    # The console prints text, not markup: a style tag in the output is a leak.
    for tag in ("[bold", "[dim]", "[green]", "[/]"):
        assert tag not in output, output[:2000]
