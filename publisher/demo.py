"""`lcm demo`: the whole product on one machine, narrated.

Everything is real except the hardware: `lcm host` on a free loopback port
stands in for GitHub, the keys and cert sectors are made as a maintainer
makes them, releases are published by running `lcm release publish` (the
app) and `lcm release publish --manager` (the manager) as a maintainer does,
and the device is the manager's own code running in the MicroPython unix
port as an ESP32 with stock firmware would run it, from `.mpy` files
(`lcm device simulate`).

The story: publish the manager and app v1 → a blank device installs v1 →
publish v2 → the device updates and confirms it → publish a v3 that crashes
at import → the device tries it, fails its trial boots and rolls back to v2.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.text import Text

from cert_sector.version import MANAGER_VERSION
from lcm_sim import BOARD_ONCE
from publisher import certs, signing
from publisher.device.simulate import provision, simulate
from publisher.errors import PublisherError
from publisher.fsutil import write_atomic
from publisher.host.server import HostServer, start_host
from publisher.micropython import REPO_ROOT

# The maintainer's token reaches `lcm release publish` through this variable, never argv.
DEMO_TOKEN_ENV = "LCM_DEMO_TOKEN"
OWNER = "lcm-demo"
MANAGER_REPO = f"{OWNER}/manager"
APP_REPO = f"{OWNER}/sensor"
EXAMPLE_APP = REPO_ROOT / "examples" / "sensor"
# The simulated board is an ESP32 with stock firmware: the manager in `.mpy` files, which
# update themselves (an ESP8266 runs it frozen into its firmware: docs/hobbyist.md). The
# unix port loads that bytecode into the GC heap, so the device gets room for its code on
# top of its working heap; bench/bench_update.py measures both. (192k:
# the attack defences of issue 10 added bytecode to the update boot, the check
# budget, sectors parsed from flash, epochs and the chain walk: 168k the least
# with them, 160k before; the boot state's two generations, trial rules and
# self-repair added about 6 KB of .mpy: 184k fails, 192k runs the demo.)
DEMO_HEAP = "192k"

LOG_PREFIX = re.compile(r"^[0-9a-f]{12} \d+ (\S+Z )?")

# The broken v3: an app that raises at import, as a bad release would.
BROKEN_LINE = 'raise RuntimeError("v3: sensor driver not found")  # the bug this demo ships\n'


class DemoError(PublisherError):
    """A demo step did not end as the story says it must."""


@dataclass
class Repo:
    """One repo of the demo: its keys and current cert sector."""

    name: str
    root: signing.Signer
    root_pub: Path
    release_pem: Path
    sector: bytes


def make_repo(name: str, keydir: Path) -> Repo:
    """Root and release keys (as `lcm keys new`) and a first cert sector (as `lcm certs build`)."""
    short = name.split("/")[1]
    root_pem, root_pub, root = signing.generate(keydir, f"{short}-root", None)
    release_pem, release_pub, _ = signing.generate(keydir, f"{short}-release", None)
    sector, _ = certs.build_sector(
        repo=name, root_keys=[str(root_pem)], release_keys=[str(release_pub)]
    )
    return Repo(name, root, root_pub, release_pem, sector)


def app_version(workdir: Path, version: str, broken: bool = False) -> Path:
    """A copy of the example app with its VERSION set (and, for v3, the bug)."""
    dest = workdir / f"sensor-{version}"
    shutil.copytree(EXAMPLE_APP, dest, ignore=shutil.ignore_patterns("__pycache__"))
    main = dest / "main.py"
    text = main.read_text().replace('VERSION = "1.0.0"', f'VERSION = "{version}"')
    if broken:
        text = text.replace("import lcm\n", "import lcm\n\n" + BROKEN_LINE, 1)
    main.write_text(text)
    return dest


class Demo:
    """The demo's state: a host, two repos, a device folder; `run()` tells the story."""

    def __init__(self, console: Console, workdir: Path, heap: str = DEMO_HEAP) -> None:
        self.console = console
        self.workdir = workdir
        self.heap = heap
        self.token = secrets.token_hex(16)
        self.host: HostServer | None = None
        self.manager: Repo | None = None
        self.app: Repo | None = None

    def say(self, text: str) -> None:
        self.console.print(text, highlight=False)

    def done(self, milestone: str, rest: str) -> None:
        self.console.print(Text.assemble((milestone, "bold green"), rest))

    def step(self, title: str) -> None:
        self.console.rule(Text(title, style="bold cyan"), align="left")

    def start(self) -> None:
        self.step("1. A release host on loopback (stands in for GitHub)")
        self.host = start_host(
            self.workdir / "host", token=self.token, repos=(MANAGER_REPO, APP_REPO)
        )
        self.say(f"lcm host serving {self.host.url} (REST API at {self.host.api_url})")

        self.step("2. Keys and cert sectors, as a maintainer makes them")
        keydir = self.workdir / "keys"
        self.manager = make_repo(MANAGER_REPO, keydir)
        self.app = make_repo(APP_REPO, keydir)
        for repo in (self.manager, self.app):
            self.say(
                f"{repo.name}: root key {repo.root.key_id.hex()}, "
                f"cert sector of {len(repo.sector)} bytes"
            )

    def publish(self, repo: Repo, tag: str, *args: str) -> None:
        """Run `lcm release publish` as a maintainer does (token in the environment)."""
        assert self.host is not None
        sector = self.workdir / f"{repo.name.split('/')[1]}.sector"
        write_atomic(sector, repo.sector)
        command = ["release", "publish", *args, "--repo", repo.name, "--tag", tag]
        command += ["--key", str(repo.release_pem), "--certs", str(sector)]
        command += ["--api-url", self.host.api_url, "--token-env", DEMO_TOKEN_ENV]
        self.say(f"$ lcm {' '.join(command)}")
        proc = subprocess.run(
            [sys.executable, "-c", "from publisher.cli import main; main()", *command, "--json"],
            env={**os.environ, DEMO_TOKEN_ENV: self.token},
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise DemoError(f"lcm release publish failed: {proc.stderr.strip()}")
        result = json.loads(proc.stdout)
        self.say(
            f"published {repo.name} {result['tag']} (sequence {result['sequence']}, "
            f"{len(result['assets'])} assets: {', '.join(sorted(result['assets']))})"
        )

    def publish_manager(self) -> None:
        """The manager's own release: its modules as .mpy, exactly what a manager slot holds."""
        assert self.manager is not None
        self.publish(self.manager, f"v{MANAGER_VERSION}", "--manager")

    def provision_device(self) -> Path:
        """A factory-fresh simulated board pinned to both repos' roots (as `lcm device image`)."""
        assert self.host is not None and self.manager is not None and self.app is not None
        state = self.workdir / "device"
        provision(
            state,
            web_url=self.host.url,
            repo=self.app.name,
            roots=[self.app.root.public_key],
            manager_repo=self.manager.name,
            manager_roots=[self.manager.root.public_key],
            board="esp32",
            build=self.workdir / "mpy",
            # A simulated board logs to loopback only: never broadcast from a workstation.
            settings={"log_host": "127.0.0.1"},
        )
        self.say(
            f"simulated ESP32 in {state} (MicroPython unix port, -X heapsize={self.heap}: "
            "the manager's .mpy bytecode and its working heap)"
        )
        return state

    def run_device(self, state: Path, expect_app: str, expect_refused: str | None = None) -> None:
        """Boot the device until its app runs; check it ends on `expect_app`."""

        def show(line: str) -> None:
            if line.startswith("--- "):
                self.console.print(Text("  " + line, style="dim"))
                return
            # Log lines carry device id, sequence and time for `lcm logs`; here, only the text.
            text = LOG_PREFIX.sub("", line)
            self.console.print(Text.assemble("  ", ("device", "green"), " ", text))

        # As `lcm device simulate --once`: output as it comes, and the board counted as
        # staying on after each run (its next run is no quick power cycle).
        status = simulate(state, heap=self.heap, on_line=show, board=BOARD_ONCE)
        got = status.state.get("app_tag")
        if got != expect_app:
            raise DemoError(f"the device runs {got}, expected {expect_app}")
        if status.state.get("app_trial") is not None:
            raise DemoError(f"{got} is still in trial: the app did not confirm itself")
        if expect_refused and status.state.get("app_bad") != expect_refused:
            raise DemoError(f"the device did not roll back from {expect_refused}")

    def stop(self) -> None:
        if self.host is not None:
            self.host.shutdown()
            self.host = None


def tell_story(demo: Demo) -> None:
    """Steps 3-7: publish, install, update, roll back."""
    assert demo.manager is not None and demo.app is not None
    demo.step("3. Publish the manager and app v1.0.0")
    demo.publish_manager()
    demo.publish(demo.app, "v1.0.0", str(app_version(demo.workdir, "1.0.0")), "--compile-mpy")

    demo.step("4. A blank device installs v1.0.0")
    state = demo.provision_device()
    demo.run_device(state, "v1.0.0")
    demo.done("v1.0.0 installed", " and confirmed by the app")

    demo.step("5. Publish v1.1.0; the device fetches only what changed")
    demo.publish(demo.app, "v1.1.0", str(app_version(demo.workdir, "1.1.0")), "--compile-mpy")
    demo.run_device(state, "v1.1.0")
    demo.done("v1.1.0 installed", " and confirmed by the app")

    demo.step("6. Publish a broken v1.2.0 (it raises at import)")
    broken = app_version(demo.workdir, "1.2.0", broken=True)
    demo.publish(demo.app, "v1.2.0", str(broken), "--compile-mpy")
    demo.run_device(state, "v1.1.0", expect_refused="v1.2.0")
    demo.done("rolled back to v1.1.0", ": v1.2.0 failed its trial boots")


def run_demo(console: Console, *, keep: bool = False, heap: str = DEMO_HEAP) -> None:
    """Tell the whole story; with `keep`, leave the host running and say how to use it."""
    workdir = Path(tempfile.mkdtemp(prefix="lcm-demo-"))
    demo = Demo(console, workdir, heap)
    try:
        demo.start()
        tell_story(demo)
        demo.step("7. Done")
        if keep:
            keep_running(demo)
    finally:
        demo.stop()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


def keep_running(demo: Demo) -> None:
    """`--keep`: say how to point a second simulated device at the host, serve until Ctrl-C."""
    assert demo.host is not None and demo.app is not None
    demo.say(f"the host keeps running at {demo.host.url}; files in {demo.workdir}")
    demo.say("a second simulated device, in another terminal:")
    demo.say(
        f"  lcm device simulate --state {demo.workdir / 'device2'} --web-url {demo.host.url} "
        f"--repo {demo.app.name} --root {demo.app.root_pub} --heap {demo.heap}"
    )
    token_file = demo.workdir / "token"
    write_atomic(token_file, demo.token.encode(), mode=0o600)
    demo.say(f"publish more (the host's write token is in {token_file}, mode 0600):")
    demo.say(
        f"  {DEMO_TOKEN_ENV}=$(cat {token_file}) lcm release publish DIR "
        f"--repo {demo.app.name} --tag v1.3.0 --key {demo.app.release_pem} "
        f"--api-url {demo.host.api_url} --token-env {DEMO_TOKEN_ENV}"
    )
    demo.say("Ctrl-C stops the host.")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
