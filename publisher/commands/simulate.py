"""`lcm device simulate`: run a device on the MicroPython unix port against a release host.

Without `--once` the device runs like a board until Ctrl-C (or SIGTERM): its
check timer fires while the app runs, checks happen when due, and what is
published meanwhile is installed live; the run ends with a summary line.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from cert_sector.logline import DEFAULT_PORT
from lcm_sim import BOARD_ONCE, BOARD_RUN
from publisher import signing
from publisher.console import command_edge, err, out
from publisher.device.settings import CHANNELS, check_log_host, check_mqtt_url, check_web_url
from publisher.device.setup_sim import (
    DEFAULT_RADIO,
    RADIO_SCRIPT,
    SetupSim,
    free_port,
    start_setup,
    write_default_radio,
)
from publisher.device.simulate import (
    CHECK_FAILED,
    CHECK_REFUSED,
    MissingRootError,
    SimStatus,
    SimulateError,
    Terminated,
    der_from_pem,
    ignored_options,
    provision,
    setup_session_config,
    simulate,
    trust_hint,
)
from publisher.micropython import ROM_MODEL_HEAP, check_heap, heap_bytes

_LOG_LINE = re.compile(r"^[0-9a-f]{12} \d+ (\S+) (.*)$")
DEFAULT_BOARD = "esp32"
# A simulated board logs to loopback unless told otherwise: never broadcast from a workstation.
DEFAULT_LOG_HOST = "127.0.0.1"
# Exit codes of `--once` for a check that did not go well (1: an error of the command).
EXIT_CHECK_FAILED = 3
EXIT_CHECK_REFUSED = 4
_CHECK_EXITS = {CHECK_FAILED: EXIT_CHECK_FAILED, CHECK_REFUSED: EXIT_CHECK_REFUSED}
_CHECK_SAYS = {
    CHECK_FAILED: "the device's check failed",
    CHECK_REFUSED: "the device refused a release",
}
# The device never checks more often than this (lcm_device.schedule.MIN_INTERVAL_S;
# tests/test_simulate_run.py keeps the two equal).
MIN_CHECK_INTERVAL_S = 60
MAX_CHECK_INTERVAL_S = 365 * 24 * 3600


def timeline_line(line: str) -> str:
    """A device output line made readable: log lines lose the device id and sequence."""
    if line.startswith("--- "):
        return line[4:]
    m = _LOG_LINE.match(line)
    if m:
        return f"  {m.group(1)}  {m.group(2)}"
    return f"  | {line}"


def print_line(line: str) -> None:
    out.print(timeline_line(line), highlight=False)


@command_edge
def simulate_command(
    state: Annotated[
        Path,
        typer.Option(
            "--state",
            help="Folder holding the device's flash; a device there keeps the configuration "
            "it was provisioned with, as a board does (a new folder starts afresh).",
        ),
    ],
    web_url: Annotated[
        str | None,
        typer.Option(
            "--web-url",
            help="Browser base URL of a new device: https://github.com or an lcm host.",
        ),
    ] = None,
    repo: Annotated[
        str | None, typer.Option("--repo", help="The app repo of a new device, OWNER/NAME.")
    ] = None,
    root: Annotated[
        list[Path] | None,
        typer.Option(
            "--root", help="Root public key (.pub) of a new device's app repo, pinned; repeatable."
        ),
    ] = None,
    manager_repo: Annotated[
        str | None,
        typer.Option("--manager-repo", help="The manager's own repo of a new device, OWNER/NAME."),
    ] = None,
    manager_root: Annotated[
        list[Path] | None,
        typer.Option(
            "--manager-root",
            help="Root public key (.pub) of a new device's manager repo, pinned; repeatable.",
        ),
    ] = None,
    heap: Annotated[
        str | None, typer.Option("--heap", help="MicroPython heap size, e.g. 160k.")
    ] = None,
    data_heap: Annotated[
        str | None,
        typer.Option(
            "--data-heap",
            help="Model a board whose manager is frozen: load all its code first, then "
            "leave only this much heap for data, e.g. 24k (docs/device.md, Memory).",
        ),
    ] = None,
    once: Annotated[
        bool,
        typer.Option(
            "--once",
            help="One check/update cycle and its trial boot, then stop "
            "(default: run like a board until Ctrl-C); the exit code says how the check "
            f"went: 0 installed or nothing new, {EXIT_CHECK_FAILED} failed, "
            f"{EXIT_CHECK_REFUSED} refused.",
        ),
    ] = False,
    https_ca: Annotated[
        Path | None,
        typer.Option(
            "--https-ca",
            help="CA certificate (PEM) of an HTTPS host: the trust anchor of a new device.",
        ),
    ] = None,
    board: Annotated[
        str | None,
        typer.Option(
            "--board", help="Board of a new device, as it tells the host (default: esp32)."
        ),
    ] = None,
    channel: Annotated[
        str | None,
        typer.Option(
            "--channel", help="Release channel of a new device: stable (default) or beta."
        ),
    ] = None,
    check_interval: Annotated[
        int | None,
        typer.Option(
            "--check-interval",
            help="Seconds between the scheduled checks of a new device "
            "(config check_interval_s; default: 14400).",
        ),
    ] = None,
    log_host: Annotated[
        str | None,
        typer.Option(
            "--log-host",
            help="Where the UDP log lines of a new device go (lcm logs; default: "
            f"{DEFAULT_LOG_HOST}); 255.255.255.255 broadcasts.",
        ),
    ] = None,
    log_port: Annotated[
        int | None,
        typer.Option(
            "--log-port",
            min=1,
            max=65535,
            help=f"UDP port of the log lines of a new device (default: {DEFAULT_PORT}).",
        ),
    ] = None,
    mqtt: Annotated[
        str | None,
        typer.Option(
            "--mqtt",
            help="MQTT broker of a new device (config mqtt_url): push hints and status, "
            "as `lcm fleet status` shows (docs/fleet.md).",
        ),
    ] = None,
    max_boots: Annotated[
        int | None, typer.Option("--max-boots", help="Stop after this many boots.")
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="End with a JSON status line; its check field says how the check went "
            "(installed, idle, failed, refused), check_reason why it failed or was refused.",
        ),
    ] = False,
    setup: Annotated[
        bool,
        typer.Option("--setup", help="Start in setup mode: serve the portal until Ctrl-C."),
    ] = False,
    radio_script: Annotated[
        Path | None,
        typer.Option(
            "--radio-script",
            help="With --setup: the fake radio's script (default: lcm/state/radio.json).",
        ),
    ] = None,
) -> None:
    """Simulate a device: provision a blank state folder, then boot it like a board."""
    # --help says the rest: the options "of a new device" are what a new device is
    # provisioned with and keeps, as a board does (one given for a device provisioned
    # before that differs from what it keeps is an error: refuse_ignored); --once's exit
    # code says how the device's check went (3 failed, 4 refused; 1 is this command's).
    if heap is not None:
        check_heap(heap)
    env = {}
    if data_heap is not None:
        check_heap(data_heap, "--data-heap", 1024)  # a model's parameter: a board's free heap
        env["LCM_DATA_HEAP"] = str(heap_bytes(data_heap))
        heap = heap or ROM_MODEL_HEAP  # room for all of the manager's code besides
        if heap_bytes(data_heap) >= heap_bytes(heap):
            raise SimulateError(
                f"--data-heap {data_heap} leaves no room in --heap {heap} for the manager's "
                "code: give a larger --heap, or leave it out"
            )
    if state.exists() and not state.is_dir():
        raise SimulateError(f"--state {state} is a file: give a folder (new, or a device's)")
    if max_boots is not None and max_boots < 1:
        raise SimulateError("--max-boots must be at least 1")
    settings: dict[str, object] = {}
    if channel is not None:
        if channel not in CHANNELS:
            raise SimulateError(f"--channel must be {' or '.join(CHANNELS)}, got {channel!r}")
        settings["channel"] = channel
    if check_interval is not None:
        if not MIN_CHECK_INTERVAL_S <= check_interval <= MAX_CHECK_INTERVAL_S:
            raise SimulateError(
                f"--check-interval must be from {MIN_CHECK_INTERVAL_S} s (the device's "
                f"shortest interval) to {MAX_CHECK_INTERVAL_S} s (a year), got {check_interval}"
            )
        settings["check_interval_s"] = check_interval
    if log_host is not None:
        settings["log_host"] = check_log_host(log_host)
    if log_port is not None:
        settings["log_port"] = log_port
    if mqtt is not None:
        settings["mqtt_url"] = check_mqtt_url(mqtt)  # ImageError (a PublisherError) names it
    if radio_script is not None and not setup:
        raise SimulateError("--radio-script needs --setup")
    if not (state / "main.py").exists():
        if web_url is not None:
            check_web_url(web_url)
        kept = setup_session_config(state)  # what a setup page chose there, if any
        chosen = repo or kept.get("repo")
        if root and chosen is None:
            raise SimulateError("--root needs --repo (the repo whose releases it verifies)")
        if once and chosen is None and not setup:
            raise SimulateError(
                "--once needs --repo: a device without a repo opens its setup page and waits "
                "there (use --setup to serve it)"
            )
        if web_url is None:
            if not setup:
                raise SimulateError(
                    "--web-url is needed to provision a device (with --repo and --root, "
                    "unless its setup page chooses them)"
                )
            if repo is not None or root:
                raise SimulateError("--repo and --root need --web-url")
            # A board fresh from the factory without a manager yet: the portal asks for
            # Wi-Fi and the repo; a later run with --web-url installs from there.
            if serve_setup(state, radio_script, heap):
                say(
                    "set up; to install: lcm device simulate --state "
                    f"{state} --web-url URL (what the page chose is kept)"
                )
            return
        try:
            provision_new(
                state,
                web_url,
                repo,
                root,
                manager_repo,
                manager_root,
                https_ca,
                board or DEFAULT_BOARD,
                settings,
                kept,
            )
        except MissingRootError as exc:
            raise SimulateError(
                f"the app repo {exc.repo} needs its root public key: --root KEY.pub "
                "(repeatable); or, instead of --repo, --setup: the device's setup page asks "
                "for the repo and pins its root key by fingerprint (the key id `lcm keys "
                "show` prints) or trust on first use"
            ) from None
    else:
        # A device of an earlier run boots as it is: it keeps its own settings.
        given: dict[str, tuple[str, object]] = {}
        if web_url is not None:
            given["--web-url"] = (web_url, web_url)
        if repo is not None:
            given["--repo"] = (repo, repo)
        if root:
            given["--root"] = (_paths(root), [signing.load_trusted_key(p) for p in root])
        if manager_repo is not None:
            given["--manager-repo"] = (manager_repo, manager_repo)
        if manager_root:
            keys = [signing.load_trusted_key(p) for p in manager_root]
            given["--manager-root"] = (_paths(manager_root), keys)
        if https_ca is not None:
            given["--https-ca"] = (str(https_ca), read_https_ca(https_ca))
        if board is not None:
            given["--board"] = (board, board)
        for option, key in _SETTING_OPTIONS:
            if key in settings:
                given[option] = (str(settings[key]), settings[key])
        refuse_ignored(state, given)
        say(f"booting the device in {state} (its configuration is kept)")
    if setup and not serve_setup(state, radio_script, heap):
        return
    run_device(state, heap, once, max_boots, env, as_json)


# The settings of a new device the command collects, by option.
_SETTING_OPTIONS = (
    ("--channel", "channel"),
    ("--check-interval", "check_interval_s"),
    ("--log-host", "log_host"),
    ("--log-port", "log_port"),
    ("--mqtt", "mqtt_url"),
)


def _paths(paths: list[Path]) -> str:
    return " ".join(str(p) for p in paths)


def refuse_ignored(state: Path, given: dict[str, tuple[str, object]]) -> None:
    """SimulateError naming the options of a new device (`given`: option -> (as typed,
    as the device stores it)) that the device in `state` would ignore: the ones that
    differ from the configuration it keeps."""
    ignored = ignored_options(state, {option: value for option, (_, value) in given.items()})
    if not ignored:
        return
    lines = [
        f"  {option} {given[option][0]} (the device has {kept})" for option, kept in ignored.items()
    ]
    raise SimulateError(
        f"{state} holds a device provisioned before, which keeps the configuration it was "
        "provisioned with, as a real board does; these options of a new device would be "
        "ignored:\n"
        + "\n".join(lines)
        + f"\nTo boot it as it is, leave them out; to start afresh with them, give a new "
        f"--state folder (or delete {state}: the device and all it installed)."
    )


def read_https_ca(path: Path) -> bytes:
    """The --https-ca certificate as DER (what the device's TLS client loads)."""
    try:
        return der_from_pem(path.read_bytes())
    except OSError as exc:
        raise SimulateError(f"cannot read --https-ca {path}: {exc.strerror}") from None


def provision_new(
    state: Path,
    web_url: str,
    repo: str | None,
    root: list[Path] | None,
    manager_repo: str | None,
    manager_root: list[Path] | None,
    https_ca: Path | None,
    board: str,
    settings: dict[str, object],
    kept: dict[str, object],
) -> None:
    """Provision a new device in `state`, keeping what a setup session chose there
    (`kept`: its config, setup_session_config).

    With a repo the device has no radio: the host's network is its network (the unix
    HAL puts its logger online from power-on). Without one it gets the built-in air
    and no Wi-Fi settings: its boot opens the setup portal, which asks for both.
    """
    roots = [signing.load_trusted_key(p) for p in root or []]
    manager_roots = [signing.load_trusted_key(p) for p in manager_root or []]
    ca = None if https_ca is None else read_https_ca(https_ca)
    settings.setdefault("log_port", DEFAULT_PORT)
    if "log_host" not in settings and not kept.get("log_host"):
        settings["log_host"] = DEFAULT_LOG_HOST  # else: what the setup page chose
    # Without a repo the device's boot opens its setup portal, in the built-in air.
    default_air = not (repo or kept.get("repo") or (state / RADIO_SCRIPT).exists())
    provision(
        state,
        web_url=web_url,
        repo=repo,
        roots=roots,
        manager_repo=manager_repo,
        manager_roots=manager_roots,
        board=board,
        https_ca=ca,
        settings=settings,
    )
    if kept:
        say(f"provisioned the device set up in {state} (what its setup page chose is kept)")
    else:
        say(f"provisioned a blank device in {state}")
    if default_air:
        use_default_air(state)
    if not (repo or kept.get("repo")):
        say("no repo yet: the device opens its setup portal (below) to ask for it")


def run_device(
    state: Path,
    heap: str | None,
    once: bool,
    max_boots: int | None,
    env: dict[str, str],
    as_json: bool,
) -> None:
    """Boot a provisioned device (like a board until Ctrl-C, or `once`) and report."""
    if not once:
        say("running like a board: Ctrl-C stops it")
    # Where the device serves its setup portal when it cannot join its network.
    http_port, dns_port = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM)
    env = {**env, "LCM_PORTAL": f"{http_port},{dns_port}"}
    # `kill`/terminate stops the simulated device too, like Ctrl-C.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        status = simulate(
            state,
            heap=heap,
            once=once,
            max_boots=max_boots,
            on_line=print_line,
            interval_s=1.0,
            env=env,
            board=BOARD_ONCE if once else BOARD_RUN,
        )
    finally:
        signal.signal(signal.SIGTERM, previous)
    report(status, as_json, once, state)


def report(status: SimStatus, as_json: bool, once: bool, state: Path) -> None:
    """The summary (and the JSON line); with `once`, a check that failed or was refused
    ends the command with its exit code (the demo, in-process, reads the status instead)."""
    say(("stopped: " if status.stopped else "done: ") + status.summary())
    code = _CHECK_EXITS.get(status.check or "") if once else None
    if code is not None:
        what = _CHECK_SAYS[status.check or ""]
        text = f" {what} (exit {code}): {status.check_reason}"
        err.print(Text.assemble(("error:", "bold red"), text), highlight=False)
        hint = trust_hint(state, status.check_reason or "")
        if hint is not None:
            err.print(Text.assemble(("hint:", "bold"), " " + hint), highlight=False)
    if as_json:
        # One line, last: what scripts and CI parse.
        sys.stdout.write(json.dumps(status.as_json(), sort_keys=True) + "\n")
    if code is not None:
        raise typer.Exit(code)


def use_default_air(state: Path) -> None:
    """Give the device the built-in air (lcm_sim/fakeradio.py) and say what is in it."""
    write_default_radio(state)
    home = DEFAULT_RADIO["networks"][0]
    say(
        f"radio: the built-in air ({RADIO_SCRIPT}): network {home['ssid']!r} "
        f"password {home['password']!r}, and an open 'cafe'"
    )


def serve_setup(state: Path, radio_script: Path | None, heap: str | None) -> bool:
    """Run the device in setup mode, print how to reach it, relay its log until it ends;
    True when it joined a network there (False: timed out, or stopped with Ctrl-C)."""
    if radio_script is None and not (state / RADIO_SCRIPT).exists():
        use_default_air(state)
    sim = start_setup(state, radio_script=radio_script, heap=heap)
    # `kill`/terminate ends the simulated device too, like Ctrl-C.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        say(f"setup mode: portal {sim.url}")
        say(f"  DNS: {sim.address} port {sim.dns_port}")
        password = sim.ap_password or "(open network)"
        say(f"  setup network: {sim.ap_name} password {password}")
        say("  Ctrl-C stops the device")
        code = _relay(sim)
        joined = "RESULT connected" in sim.lines
        say(f"the device left setup mode (exit {code}){': connected' if joined else ''}")
        return joined
    except KeyboardInterrupt:
        say("stopped")
        return False
    finally:
        sim.stop()
        signal.signal(signal.SIGTERM, previous)


def _relay(sim: SetupSim) -> int:
    shown = 0
    while True:
        running = sim.process.poll() is None
        sim.output()  # moves what the device printed into sim.lines
        for line in sim.lines[shown:]:
            print_line(line)
        shown = len(sim.lines)
        if not running:
            code = sim.wait()
            for line in sim.lines[shown:]:  # printed just before it ended
                print_line(line)
            return code
        time.sleep(0.2)


def _interrupt(signum: int, frame: object) -> None:
    raise Terminated


def say(text: str) -> None:
    out.print(text, highlight=False)
