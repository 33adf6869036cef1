"""The check budget, and how long trickling servers hold a device (MicroPython unix port).

Printed:
- the check budget the device computes (and logs) for a first install of 20
  files / 200 KB at the default settings (check_slack_s 30, check_rate 1024 B/s),
  and the budget before any manifest is verified (what a server without keys can
  spend);
- for each trickling shape of tests/device/test_engine_slow_server.py, the wall
  time the device spent in its check against such a server (a boot's time minus
  that of a boot with nothing new), with a budget made small for the run
  (check_slack_s 5, check_rate 16 KB/s), next to that budget.
  The longest of them is the figure for the bar "a hostile server holds a device
  in a check no longer than the check budget".

Run: python bench/bench_attacks.py
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cert_sector.manifest import MAX_MANIFEST_SIZE
from cert_sector.sector import MAX_SECTOR_SIZE
from publisher.device.simulate import provision, simulate
from publisher.micropython import build_mpy
from tests.device.enginekit import Repo, app_files
from tests.device.test_engine_hostile_server import BASE, routes_for
from tests.device.test_engine_slow_server import CASES, lies
from tests.hostserver import running_host
from tests.test_http_servers import RawServer, response

SMALL = {"check_slack_s": 5, "check_rate": 16384}


def budget_s(cfg: dict, nbytes: int) -> float:
    return cfg.get("check_slack_s", 30) + nbytes / cfg.get("check_rate", 1024)


def device(tmp: Path, name: str, web: str, repo: Repo, build: Path, **settings) -> Path:
    state = tmp / name
    provision(
        state,
        web_url=web,
        repo=repo.name,
        roots=[repo.root.public_key],
        board="esp32",
        build=build,
        settings={"gestures": False, "http_timeout_ms": 1000, **settings},
    )
    return state


def bench_budget(tmp: Path, build: Path) -> None:
    with running_host(tmp / "host") as host:
        repo = Repo(host)
        repo.publish("1.0.0", app_files("1.0.0", n=20, size=10 * 1024))
        status = simulate(device(tmp, "budget", host.url, repo, build))
    line = next(x for x in status.lines if "check budget" in x)
    print("20 files / 200 KB, defaults:", line.split("download: ", 1)[1])
    print(
        f"before a manifest is verified: {budget_s({}, MAX_SECTOR_SIZE + MAX_MANIFEST_SIZE):.0f}"
        f" s (sector cap {MAX_SECTOR_SIZE} + manifest cap {MAX_MANIFEST_SIZE} bytes)"
    )


def bench_trickle(tmp: Path, build: Path) -> None:
    with running_host(tmp / "host2") as host:
        repo = Repo(host)
        repo.publish("1.0.0", app_files("1.0.0", n=3))
        golden = device(tmp, "golden", host.url, repo, build)
        assert simulate(golden).state["app_tag"] == "v1.0.0"
    limit = budget_s(SMALL, MAX_SECTOR_SIZE + MAX_MANIFEST_SIZE)
    print(f"trickling servers, budget before a manifest is verified: {limit:.1f} s")
    # The same boot against a server with nothing new: what a boot costs besides the check.
    idle = routes_for(repo, {})
    idle[BASE + "/latest"] = [response(302, b"", [("Location", BASE + "/tag/v1.0.0")])]
    base = min(held_for(tmp / "idle", golden, idle) for _ in range(2))
    longest = 0.0
    for case in CASES:
        state = tmp / ("t-" + case.replace(" ", "-"))
        took = held_for(state, golden, lies_routes(repo, case)) - base
        longest = max(longest, took)
        print(f"  {case:18} held {took:5.1f} s")
    print(f"longest hold: {longest:.1f} s of a {limit:.1f} s budget")


def lies_routes(repo: Repo, case: str) -> dict:
    return routes_for(repo, lies(repo, case))


def held_for(state: Path, golden: Path, routes: dict) -> float:
    """Seconds one boot of a copy of `golden` takes against a server with `routes`."""
    shutil.rmtree(state, ignore_errors=True)
    shutil.copytree(golden, state)
    with RawServer(routes) as server:
        path = state / "lcm/state/config.json"
        cfg = json.loads(path.read_text())
        cfg.update(SMALL, web_url=server.url())
        path.write_text(json.dumps(cfg))
        start = time.monotonic()
        simulate(state)
        return time.monotonic() - start


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        build = build_mpy(tmp / "mpy")
        bench_budget(tmp, build)
        bench_trickle(tmp, build)


if __name__ == "__main__":
    main()
