"""A simulated device: the real device code in the MicroPython unix port, restarted like a board.

`provision(...)` turns a blank state folder into a factory-fresh device: the
manager compiled to .mpy in `lcm/m0/`, the `/main.py` shim, `config.json`
with the pinned root keys and, for HTTPS, a bootstrap trust anchor.
`simulate(...)` boots it again and again: exit code 75 is a reset, 76 a
power cut (RTC memory is lost), 0 means the app returned. It returns a
`SimStatus` (timeline lines and the device's final state), which
`lcm device simulate` prints and `lcm demo` uses in-process.
"""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cert_sector.encoding import check_repo
from cert_sector.errors import FormatError
from lcm_sim import EXIT_POWER_CUT, EXIT_RESET, RTC_FILE
from publisher.device.manager import manager_files
from publisher.errors import PublisherError
from publisher.fsutil import write_atomic
from publisher.micropython import REPO_ROOT, SIM_PACKAGES, build_mpy, run_micropython

EXIT_APP_DONE = 0
CONFIG_JSON = Path("lcm/state/config.json")
BOOTSTRAP_CA = Path("lcm/state/certs/bootstrap.der")


class SimulateError(PublisherError):
    """The simulation could not start or the device did not behave like a board."""


@dataclass
class SimStatus:
    boots: int = 0
    exits: list[int] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        st = self.state
        return {
            "app": st.get("app_tag"),
            "app_slot": st.get("app"),
            "trial": st.get("app_trial") is not None,
            "refused_tag": st.get("app_bad"),
            "manager": st.get("mgr_tag"),
            "manager_slot": st.get("mgr"),
            "boots": self.boots,
            "exits": self.exits,
        }


def der_from_pem(pem: bytes) -> bytes:
    """The first certificate of a PEM file as DER (what the device's TLS client loads)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    try:
        return x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)
    except ValueError as exc:
        raise SimulateError(f"--https-ca is not a PEM certificate: {exc}") from None


def provision(
    state: Path,
    *,
    web_url: str,
    repo: str,
    roots: Sequence[bytes],
    manager_repo: str | None = None,
    manager_roots: Sequence[bytes] = (),
    board: str = "esp32",
    https_ca: bytes | None = None,
    build: Path | None = None,
    settings: dict[str, Any] | None = None,
) -> bool:
    """Make `state` a factory-fresh device; False (nothing changed) when it already is one."""
    state = Path(state)
    if (state / "main.py").exists():
        return False
    try:
        check_repo(repo)
        if manager_repo:
            check_repo(manager_repo)
    except FormatError as exc:
        raise SimulateError(str(exc)) from None
    first_use = settings or {}
    if not roots and not (
        first_use.get("app_root_fingerprint") or first_use.get("app_trust_first_use") is True
    ):
        # Without roots only the setup page's choices can pin them (lcm_device.firstpin).
        raise SimulateError(
            "at least one --root public key is needed for the app repo "
            "(or a root fingerprint, or trust on first use)"
        )
    if manager_repo and not manager_roots:
        raise SimulateError("--manager-repo needs at least one --manager-root public key")
    if not web_url.startswith(("http://", "https://")):
        raise SimulateError(f"--web-url must be an http(s) URL, got {web_url!r}")
    if state.exists() and any(state.iterdir()):
        raise SimulateError(f"{state} is not empty and holds no simulated device")
    build_dir = build or Path(tempfile.mkdtemp(prefix="lcm-mpy-"))
    build_mpy(build_dir)
    slot = state / "lcm" / "m0"
    for rel, data in manager_files(build_dir).items():
        dest = slot / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
    if build is None:
        shutil.rmtree(build_dir, ignore_errors=True)
    cfg: dict[str, Any] = {
        "web_url": web_url,
        "repo": repo,
        "board": board,
    }
    if roots:
        cfg["app_roots"] = [r.hex() for r in roots]
    if manager_repo:
        cfg["manager_repo"] = manager_repo
        cfg["manager_roots"] = [r.hex() for r in manager_roots]
    cfg.update(settings or {})
    (state / CONFIG_JSON).parent.mkdir(parents=True, exist_ok=True)
    write_atomic(state / CONFIG_JSON, json.dumps(cfg, indent=1).encode())
    if https_ca is not None:
        (state / BOOTSTRAP_CA).parent.mkdir(parents=True, exist_ok=True)
        write_atomic(state / BOOTSTRAP_CA, https_ca)
    # Last: its presence marks a provisioned device.
    write_atomic(state / "main.py", (REPO_ROOT / "lcm_device" / "main.py").read_bytes())
    return True


def read_state(state: Path) -> dict[str, Any]:
    """The device's boot state: the newest valid generation (cert_sector.bootstate), else {}."""
    from cert_sector.bootstate import PATHS, decode

    best: dict[str, Any] = {}
    for rel in PATHS:
        try:
            value = decode((Path(state) / rel.lstrip("/")).read_bytes()[:4096])
        except OSError:
            continue
        if value is not None and value["gen"] > best.get("gen", -1):
            best = value
    return best


@functools.cache
def board_code() -> Path:
    """The simulated board (lcm_sim) compiled once per process.

    It goes on the unix port's path beside the flash folder, as a board's
    firmware sits beside its filesystem: never into a manager slot, so a
    manager update cannot lose it and no manager release carries it.
    """
    dest = Path(tempfile.mkdtemp(prefix="lcm-sim-"))
    atexit.register(shutil.rmtree, dest, ignore_errors=True)
    return build_mpy(dest, SIM_PACKAGES)


def boot_once(
    state: Path,
    *,
    heap: str | None = None,
    cause: str = "power",
    check_now: bool = False,
    fault_at: int = 0,
    timeout: float = 300,
    env: dict[str, str] | None = None,
) -> tuple[int, list[str]]:
    """One boot of the device: (exit code, output lines)."""
    extra = {
        "LCM_ROOT": str(Path(state).resolve()),
        "LCM_BOOT_CAUSE": cause,
        "LCM_CHECK_NOW": "1" if check_now else "0",
        "LCM_FAULT_AT": str(fault_at),
    }
    extra.update(env or {})
    proc = run_micropython(
        ["main.py"],
        path=[board_code()],
        heap=heap,
        timeout=timeout,
        cwd=Path(state),
        extra_env=extra,
    )
    lines = (proc.stdout + proc.stderr).splitlines()
    return proc.returncode, lines


def simulate(
    state: Path,
    *,
    heap: str | None = None,
    once: bool = True,
    max_boots: int = 20,
    fault_at: int = 0,
    interval_s: float = 0,
    on_line: Callable[[str], None] | None = None,
    env: dict[str, str] | None = None,
    check_after_cut: bool = False,
    on_exit: Callable[[int, SimStatus], None] | None = None,
    check_first: bool = True,
    fault_boot: int = 1,
) -> SimStatus:
    """Boot a provisioned device until its app returns (`once`) or `max_boots` boots.

    With `once` the first boot checks for an update at once (unless not
    `check_first`: then the device's schedule decides) and the run ends
    after the app returns from the boot that follows (the trial boot after an
    install). `fault_at` cuts the power at that flash mutation of boot
    number `fault_boot` only (the first by default), as the power-cut tests
    do; `check_after_cut` asks for a check at the boot after a power cut, and
    `on_exit(code, status)` sees the flash between boots (status.state is the
    boot state of that moment).
    """
    state = Path(state)
    if not (state / "main.py").exists():
        raise SimulateError(f"{state} is not a provisioned device (no main.py): provision it first")
    status = SimStatus()
    cause = "power"
    check_now = check_first
    while status.boots < max_boots:
        status.boots += 1
        code, lines = boot_once(
            state,
            heap=heap,
            cause=cause,
            check_now=check_now,
            fault_at=fault_at if status.boots == fault_boot else 0,
            env=env,
        )
        status.exits.append(code)
        for line in [f"--- boot {status.boots}", *lines, f"--- exit {_exit_name(code)}"]:
            status.lines.append(line)
            if on_line is not None:
                on_line(line)
        check_now = False
        if on_exit is not None:
            status.state = read_state(state)
            on_exit(code, status)
        if code == EXIT_POWER_CUT:
            (state / RTC_FILE.lstrip("/")).unlink(missing_ok=True)
            cause = "power"
            check_now = check_after_cut
            continue
        if code == EXIT_RESET:
            cause = "reset"
            continue
        if once:
            break
        # The app returned (or crashed): a board's watchdog would restart it.
        cause = "reset"
        time.sleep(interval_s)
    status.state = read_state(state)
    return status


def _exit_name(code: int) -> str:
    return {
        EXIT_APP_DONE: "0 (app returned)",
        EXIT_RESET: "75 (reset)",
        EXIT_POWER_CUT: "76 (power cut)",
    }.get(code, f"{code} (crash)")
