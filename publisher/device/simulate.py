"""A simulated device: the real device code in the MicroPython unix port, restarted like a board.

`provision(...)` turns a blank state folder into a factory-fresh device: the
manager compiled to .mpy in `lcm/m0/`, the `/main.py` shim, `config.json`
with the pinned root keys and, for HTTPS, a bootstrap trust anchor.
`simulate(...)` boots it again and again: exit code 75 is a reset, 76 a
power cut, 0 means the app returned. It returns a
`SimStatus` (timeline lines and the device's final state), which
`lcm device simulate` prints and `lcm demo` uses in-process.

With `board` (lcm_sim.BOARD_RUN or BOARD_ONCE, passed to the unix HAL as
LCM_BOARD) the device's output is passed on line by line as it comes, and
with BOARD_RUN the device runs like a board until Ctrl-C: its check timer
polls while the app runs, resets into the manager when a check is due and
keeps the board up after the app returns (lcm_sim/unix.py). A reset from
that timer ends the process with a signal (lcm_sim/boardtimer.py), counted
here as exit code 75. Ctrl-C (KeyboardInterrupt) stops the device as a
power cut would, and `simulate` returns with `stopped` set.
"""

from __future__ import annotations

import ast
import atexit
import functools
import json
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cert_sector.encoding import check_repo
from cert_sector.errors import FormatError
from cert_sector.keys import key_id_hex
from lcm_sim import EXIT_POWER_CUT, EXIT_RESET, POWER_CUT_SIGNAL, RESET_SIGNAL
from publisher.device.manager import manager_files
from publisher.errors import PublisherError
from publisher.fsutil import write_atomic
from publisher.micropython import (
    REPO_ROOT,
    SIM_PACKAGES,
    build_mpy,
    die_with_parent,
    micropython_command,
    micropython_env,
    run_micropython,
)

EXIT_APP_DONE = 0
# Signals by which the board timer ends a simulated boot, and the exit codes they stand for.
_SIGNAL_EXITS = {
    -signal.Signals["SIG" + RESET_SIGNAL]: EXIT_RESET,
    -signal.Signals["SIG" + POWER_CUT_SIGNAL]: EXIT_POWER_CUT,
}
# A boot of `simulate(once=True)` that takes longer than this is an app that never returns.
BOOT_TIMEOUT_S = 300.0
CONFIG_JSON = Path("lcm/state/config.json")
BOOTSTRAP_CA = Path("lcm/state/certs/bootstrap.der")


class SimulateError(PublisherError):
    """The simulation could not start or the device did not behave like a board."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (`kill`), which `lcm device simulate` turns into the stop Ctrl-C is: the
    same power cut, but the timeline names the signal the user actually sent."""


class MissingRootError(SimulateError):
    """A new device would follow a repo with no root key pinned and none to be chosen on
    its setup page; each command says which of its own options give one."""

    def __init__(self, repo: str) -> None:
        super().__init__(
            f"the app repo {repo} needs at least one root public key pinned (or a root "
            "fingerprint or trust on first use chosen on the device's setup page)"
        )
        self.repo = repo


# The outcome of a run's checks (SimStatus.check), the worst first.
CHECK_REFUSED = "refused"  # a release failed a trust rule or a limit
CHECK_FAILED = "failed"  # the check did not end: network, server, or the device's own fault
CHECK_INSTALLED = "installed"  # a release was installed and switched to
CHECK_IDLE = "idle"  # nothing new (or nothing this device takes yet)
_CHECK_RANK = {CHECK_REFUSED: 3, CHECK_FAILED: 2, CHECK_INSTALLED: 1, CHECK_IDLE: 0}
# The device's log line (cert_sector.logline: DEVICE SEQ TIME TEXT) and the texts of the
# update boot (lcm_device.update, checkboot, slotfill, firmware) that tell a check's outcome.
_LOG_TEXT = re.compile(r"^[0-9a-f]{12} \d+ \S+ (.*)$")
_CHECK_TEXTS = (
    (re.compile(r"^(app|manager): refused "), CHECK_REFUSED),
    (re.compile(r"^(app|manager): check (failed|crashed|broken): "), CHECK_FAILED),
    (re.compile(r"^check: (no network|the update engine does not import)"), CHECK_FAILED),
    (re.compile(r"^boot: checks skipped "), CHECK_FAILED),
    (re.compile(r"^(app|manager): switched to "), CHECK_INSTALLED),
    (re.compile(r"^firmware: \S+ boots next from "), CHECK_INSTALLED),
)


def check_outcome(line: str) -> str | None:
    """What a device output line says of a check: CHECK_REFUSED, CHECK_FAILED,
    CHECK_INSTALLED, or None (it says nothing of one)."""
    m = _LOG_TEXT.match(line)
    if m:
        for pattern, outcome in _CHECK_TEXTS:
            if pattern.match(m.group(1)):
                return outcome
    return None


@dataclass
class SimStatus:
    boots: int = 0
    exits: list[int] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)
    # App releases that became the installed one during this run, in order.
    installed: list[str] = field(default_factory=list)
    stopped: bool = False  # ended by Ctrl-C
    # The outcome of this run's checks, the worst of them (refused, failed, installed,
    # idle); None when no check ended (stopped first). `check_reason`: the device's log
    # text that says why a check was refused or failed.
    check: str | None = None
    check_reason: str | None = None

    def note(self, line: str) -> None:
        """Take one output line of the device into the run's check outcome."""
        outcome = check_outcome(line)
        if outcome is None or _CHECK_RANK[outcome] <= _CHECK_RANK.get(self.check or "", -1):
            return
        self.check = outcome
        if outcome in (CHECK_REFUSED, CHECK_FAILED):
            m = _LOG_TEXT.match(line)
            self.check_reason = m.group(1) if m else line

    def settle_check(self) -> None:
        """After the run: a first boot that ended (reset or app returned) with no line
        saying otherwise checked and found nothing new; one that crashed failed."""
        if self.check is not None or not self.exits:
            return
        first = self.exits[0]
        if first in (EXIT_RESET, EXIT_APP_DONE):
            self.check = CHECK_IDLE
        elif first != EXIT_POWER_CUT:
            self.check = CHECK_FAILED
            self.check_reason = f"boot 1 (its check) ended with exit {_exit_name(first)}"

    def as_json(self) -> dict[str, Any]:
        st = self.state
        return {
            "app": st.get("app_tag"),
            "app_slot": st.get("app"),
            "trial": st.get("app_trial") is not None,
            # The release that failed its trial and was rolled back (the device refuses it).
            "failed_trial": st.get("app_bad"),
            "failed_trial_why": st.get("app_bad_why"),
            "manager": st.get("mgr_tag"),
            "manager_slot": st.get("mgr"),
            "boots": self.boots,
            "exits": self.exits,
            "installed": self.installed,
            "stopped": self.stopped,
            "check": self.check,
            "check_reason": self.check_reason,
        }

    def summary(self) -> str:
        """One line: what the device runs now and what this run installed."""
        st = self.state
        app = st.get("app_tag") or "none"
        if st.get("app"):
            app += f" ({st['app']}{', in trial' if st.get('app_trial') is not None else ''})"
        installed = ", ".join(self.installed) or "nothing"
        return (
            f"{self.boots} boot{'s' if self.boots != 1 else ''}; app {app}; "
            f"manager {st.get('mgr_tag') or '(factory)'}; installed this run: {installed}"
        )


def der_from_pem(pem: bytes) -> bytes:
    """The first certificate of a PEM file as DER (what the device's TLS client loads)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    try:
        return x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)
    except ValueError as exc:
        raise SimulateError(f"--https-ca is not a PEM certificate: {exc}") from None


def setup_session_config(state: Path) -> dict[str, Any]:
    """What a setup session (the portal, `lcm device simulate --setup` before the device was
    provisioned) saved in `state`: its config, {} when there is none. SimulateError when
    `state` holds anything but a setup session's files (lcm/state/)."""
    state = Path(state)
    if not state.exists():
        return {}
    for path in state.rglob("*"):
        if path.is_file() and path.relative_to(state).parts[:2] != ("lcm", "state"):
            raise SimulateError(f"{state} is not empty and holds no simulated device")
    try:
        saved = json.loads((state / CONFIG_JSON).read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise SimulateError(f"cannot read the setup session's {CONFIG_JSON}: {exc}") from None
    if not isinstance(saved, dict):
        raise SimulateError(f"the setup session's {CONFIG_JSON} is not a JSON object")
    return saved


def provision(
    state: Path,
    *,
    web_url: str,
    repo: str | None,
    roots: Sequence[bytes],
    manager_repo: str | None = None,
    manager_roots: Sequence[bytes] = (),
    board: str = "esp32",
    https_ca: bytes | None = None,
    build: Path | None = None,
    settings: dict[str, Any] | None = None,
) -> bool:
    """Make `state` a factory-fresh device; False (nothing changed) when it already is one.

    A folder that holds only a setup session's files becomes a device that keeps
    what was chosen on the setup page (Wi-Fi, repo, root fingerprint or trust on
    first use, ...); the arguments given here add to it. Without a repo (given or
    chosen) the device asks for one on its setup page.
    """
    state = Path(state)
    if (state / "main.py").exists():
        return False
    kept = setup_session_config(state)
    repo = repo or kept.get("repo")
    try:
        if repo:
            check_repo(repo)
        if manager_repo:
            check_repo(manager_repo)
    except FormatError as exc:
        raise SimulateError(str(exc)) from None
    first_use = {**kept, **(settings or {})}
    if (
        repo
        and not roots
        and not first_use.get("app_roots")
        and not (
            first_use.get("app_root_fingerprint") or first_use.get("app_trust_first_use") is True
        )
    ):
        # Without roots only the setup page's choices can pin them (lcm_device.firstpin).
        raise MissingRootError(repo)
    if manager_repo and not manager_roots:
        raise SimulateError("--manager-repo needs at least one --manager-root public key")
    if not web_url.startswith(("http://", "https://")):
        raise SimulateError(f"--web-url must be an http(s) URL, got {web_url!r}")
    build_dir = build or Path(tempfile.mkdtemp(prefix="lcm-mpy-"))
    build_mpy(build_dir)
    slot = state / "lcm" / "m0"
    for rel, data in manager_files(build_dir).items():
        dest = slot / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
    if build is None:
        shutil.rmtree(build_dir, ignore_errors=True)
    cfg: dict[str, Any] = dict(kept)
    cfg.update(web_url=web_url, board=board)
    if repo:
        cfg["repo"] = repo
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
    write_atomic(state / "lcm" / "pick.py", (REPO_ROOT / "lcm_device" / "pick.py").read_bytes())
    # Last: its presence marks a provisioned device.
    write_atomic(state / "main.py", (REPO_ROOT / "lcm_device" / "main.py").read_bytes())
    return True


# The options that make a new device (`lcm device simulate`) and the config key each one
# sets; --https-ca sets the bootstrap trust anchor (BOOTSTRAP_CA), a file of its own.
NEW_DEVICE_OPTIONS = {
    "--web-url": "web_url",
    "--repo": "repo",
    "--root": "app_roots",
    "--manager-repo": "manager_repo",
    "--manager-root": "manager_roots",
    "--https-ca": "",
    "--board": "board",
    "--channel": "channel",
    "--check-interval": "check_interval_s",
    "--log-host": "log_host",
    "--log-port": "log_port",
    "--mqtt": "mqtt_url",
}


@functools.cache
def device_defaults() -> dict[str, Any]:
    """The device's config defaults, `DEFAULTS` in lcm_device/config.py, read from its source
    as data (a literal dict): the publisher never imports the device's package."""
    source = REPO_ROOT / "lcm_device" / "config.py"
    for node in ast.parse(source.read_text()).body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", "") for t in node.targets] == [
            "DEFAULTS"
        ]:
            defaults = ast.literal_eval(node.value)
            if isinstance(defaults, dict):
                return defaults
    raise PublisherError(f"{source} has no DEFAULTS dict")


def kept_config(state: Path) -> dict[str, Any]:
    """The configuration of the provisioned device in `state` as it boots with it: its
    config.json (else the last good copy) over the device's defaults (device_defaults)."""
    cfg = dict(device_defaults())
    for path in (CONFIG_JSON, CONFIG_JSON.with_name("config.good.json")):
        try:
            saved = json.loads((Path(state) / path).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(saved, dict):
            cfg.update(saved)
            break
    return cfg


def trust_hint(state: Path, reason: str) -> str | None:
    """What to do about a release refused for its sector's signers (rule S4): the root
    keys the device in `state` pinned when it was set up, and how to check and change
    them. None for any other reason."""
    if "of the trusted roots" not in reason:
        return None
    which = "manager_roots" if reason.startswith("manager:") else "app_roots"
    try:
        pinned = json.loads((state / CONFIG_JSON).read_text()).get(which) or []
        ids = ", ".join(key_id_hex(bytes.fromhex(key)) for key in pinned)
    except (OSError, ValueError, AttributeError, TypeError):
        ids = ""
    return (
        "the release's cert sector is not signed by the root keys the device trusts"
        + (
            f" (it pinned {ids} when it was set up, or trusts those of a sector it installed)"
            if ids
            else ""
        )
        + "; `lcm release verify --root KEY.pub` names the sector's roots. To pin other "
        f"keys, set the device up afresh: a new --state folder (or delete {state})."
    )


def ignored_options(state: Path, given: dict[str, Any]) -> dict[str, str]:
    """Of `given` (a NEW_DEVICE_OPTIONS option -> the value provision would store: roots
    as public keys, --https-ca as DER), the options whose value differs from what the
    provisioned device in `state` keeps, each with what it keeps, as text.

    A device keeps the configuration it was provisioned with (and what its setup page
    chose since), as a board does: these options would be ignored. One that says what
    the device keeps is no conflict, so the same command runs again as it is."""
    cfg = kept_config(state)
    ignored = {}
    for option, value in given.items():
        key = NEW_DEVICE_OPTIONS[option]
        if not key:
            try:
                ca: bytes | None = (Path(state) / BOOTSTRAP_CA).read_bytes()
            except FileNotFoundError:
                ca = None
            if ca != value:
                ignored[option] = "another certificate" if ca else "none"
            continue
        kept = cfg.get(key)
        if key.endswith("_roots"):
            mine = {bytes.fromhex(k) for k in kept or [] if isinstance(k, str)}
            if mine != set(value):
                ids = sorted(key_id_hex(k) for k in mine)
                ignored[option] = "key id " + ", ".join(ids) if ids else "none"
        elif key.endswith("_url"):
            if str(kept or "").rstrip("/") != str(value).rstrip("/"):
                ignored[option] = str(kept or "none")
        elif kept != value:
            ignored[option] = "none" if kept is None else str(kept)
    return ignored


def read_state(state: Path) -> dict[str, Any]:
    """The device's boot state: the newest valid generation (cert_sector.bootstate), else {}."""
    from cert_sector.bootstate import PATH
    from publisher.device.reinstall import current_state

    found: dict[str, bytes | None] = {}
    for path in (PATH % 0, PATH % 1):
        try:
            found[path] = (Path(state) / path.lstrip("/")).read_bytes()[:4096]
        except OSError:
            found[path] = None
    return current_state(found) or {}


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


def fault_env(fault_at: int) -> dict[str, str]:
    """The unix HAL's power cut at flash mutation `fault_at`; none for 0, and then the HAL
    runs on the board's plain flash, without the fault injector (lcm_sim/faults.py)."""
    return {"LCM_FAULT_AT": str(fault_at)} if fault_at else {}


def boot_args(env: dict[str, str]) -> list[str]:
    """The unix port's arguments for one boot: /main.py, or in the ROM model (LCM_DATA_HEAP)
    lcm_sim.romboot, which puts the manager's code "in ROM" first, then runs /main.py."""
    return ["-m", "lcm_sim.romboot"] if env.get("LCM_DATA_HEAP") else ["main.py"]


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
        **fault_env(fault_at),
    }
    extra.update(env or {})
    proc = run_micropython(
        boot_args(extra),
        path=[board_code()],
        heap=heap,
        timeout=timeout,
        cwd=Path(state),
        extra_env=extra,
    )
    lines = (proc.stdout + proc.stderr).splitlines()
    return proc.returncode, lines


def boot_live(
    state: Path,
    on_line: Callable[[str], None],
    *,
    heap: str | None = None,
    cause: str = "power",
    check_now: bool = False,
    fault_at: int = 0,
    timeout: float | None = None,
    env: dict[str, str] | None = None,
) -> int:
    """One boot whose output lines go to `on_line` as the device prints them; its exit code
    (a board-timer reset's signal counted as EXIT_RESET). On KeyboardInterrupt the device
    is stopped first (as a power cut), then it propagates."""
    extra = {
        "LCM_ROOT": str(Path(state).resolve()),
        "LCM_BOOT_CAUSE": cause,
        "LCM_CHECK_NOW": "1" if check_now else "0",
        **fault_env(fault_at),
        **(env or {}),
    }
    cmd = micropython_command()
    if heap:
        cmd += ["-X", f"heapsize={heap}"]
    proc = subprocess.Popen(
        [*cmd, *boot_args(extra)],
        cwd=Path(state),
        env={**micropython_env([board_code()]), **extra},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
        errors="replace",
        # Its own session: the terminal's Ctrl-C reaches the simulator, which stops it.
        start_new_session=True,
        preexec_fn=die_with_parent(),
    )
    timed_out = threading.Event()
    watchdog = None
    if timeout is not None:

        def expire() -> None:
            timed_out.set()
            proc.kill()

        watchdog = threading.Timer(timeout, expire)
        watchdog.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            on_line(line.rstrip("\n"))
        code = proc.wait()
    except BaseException:
        _stop(proc)
        raise
    finally:
        if watchdog is not None:
            watchdog.cancel()
    if timed_out.is_set():
        raise SimulateError(
            f"the device did not finish its boot within {timeout:.0f} s "
            "(an app that never returns: run without --once, or stop it with Ctrl-C)"
        )
    return _SIGNAL_EXITS.get(code, code)


def _stop(proc: subprocess.Popen[str]) -> None:
    try:
        proc.terminate()
        proc.wait(10)
    except (subprocess.TimeoutExpired, KeyboardInterrupt):  # or a second Ctrl-C
        proc.kill()
        proc.wait()


def simulate(
    state: Path,
    *,
    heap: str | None = None,
    once: bool = True,
    max_boots: int | None = 20,
    fault_at: int = 0,
    interval_s: float = 0,
    on_line: Callable[[str], None] | None = None,
    env: dict[str, str] | None = None,
    check_after_cut: bool = False,
    on_exit: Callable[[int, SimStatus], None] | None = None,
    check_first: bool = True,
    fault_boot: int = 1,
    board: str = "",
) -> SimStatus:
    """Boot a provisioned device until its app returns (`once`), `max_boots` boots (None:
    no limit) or Ctrl-C (with `board`: see the module docstring).

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
    if board:
        env = {**(env or {}), "LCM_BOARD": board}
    app_tag = read_state(state).get("app_tag")

    def show(line: str) -> None:
        status.lines.append(line)
        status.note(line)
        if on_line is not None:
            on_line(line)

    while max_boots is None or status.boots < max_boots:
        status.boots += 1
        fault = fault_at if status.boots == fault_boot else 0
        if board:
            show(f"--- boot {status.boots}")
            try:
                code = boot_live(
                    state,
                    show,
                    heap=heap,
                    cause=cause,
                    check_now=check_now,
                    fault_at=fault,
                    timeout=BOOT_TIMEOUT_S if once else None,
                    env=env,
                )
            except KeyboardInterrupt as exc:
                status.stopped = True
                how = "SIGTERM" if isinstance(exc, Terminated) else "Ctrl-C"
                show(f"--- stopped ({how}: the power is off)")
                break
            show(f"--- exit {_exit_name(code)}")
        else:
            code, lines = boot_once(
                state, heap=heap, cause=cause, check_now=check_now, fault_at=fault, env=env
            )
            for line in [f"--- boot {status.boots}", *lines, f"--- exit {_exit_name(code)}"]:
                show(line)
        status.exits.append(code)
        check_now = False
        now = read_state(state)
        # A switch to a new release puts it in trial; a roll-back does not.
        if now.get("app_tag") not in (None, app_tag) and now.get("app_trial") is not None:
            status.installed.append(now["app_tag"])
        app_tag = now.get("app_tag")
        if on_exit is not None:
            status.state = read_state(state)
            on_exit(code, status)
        if code == EXIT_POWER_CUT:
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
        try:
            time.sleep(interval_s)
        except KeyboardInterrupt:
            status.stopped = True
            break
    status.settle_check()
    status.state = read_state(state)
    return status


def _exit_name(code: int) -> str:
    return {
        EXIT_APP_DONE: "0 (app returned)",
        EXIT_RESET: "75 (reset)",
        EXIT_POWER_CUT: "76 (power cut)",
    }.get(code, f"{code} (crash)")
