"""The check budget, and how long trickling servers hold a device (MicroPython unix port).

Printed:
- the check budget the device computes (and logs) for a first install of 20
  files / 200 KB at the default settings (check_slack_s 30, check_rate 1024 B/s),
  and the budget before any manifest is verified (what a server without keys can
  spend);
- for each trickling shape of tests/device/test_engine_slow_server.py (the TLS
  handshake ones too), with a budget made small for the run (check_slack_s 5,
  check_rate 16 KB/s), how long the device's check held it, as the device logs it
  (`check failed: ... (held N ms, budget M ms)`: from the start of the check, where
  its budget starts, to its end), next to that budget; and what the rest of the
  boot took (process start, imports, the app's run, exit), which is not the check.
  The longest hold is the figure for the bar "a hostile server holds a device in a
  check no longer than the check budget": it must be within the budget plus
  BOUND_MS (docs/threat-model.md, "Check budget").

Run: python bench/bench_attacks.py (exit status 1 when a hold passes the bound)
"""

from __future__ import annotations

import json
import re
import shutil
import ssl
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trustme

from cert_sector.manifest import MAX_MANIFEST_SIZE
from cert_sector.sector import MAX_SECTOR_SIZE
from publisher.device.simulate import der_from_pem, provision, simulate
from publisher.micropython import build_mpy
from tests.device.enginekit import Repo, app_files
from tests.device.test_engine_hostile_server import BASE, routes_for
from tests.device.test_engine_slow_server import (
    CASES,
    SETTINGS,
    TricklingProxy,
    connections_made,
    lies,
    silent_listener,
)
from tests.hostserver import running_host
from tests.test_http_servers import RawServer, response

SMALL = {"check_slack_s": 5, "check_rate": 16384}
# How far past its budget a check may end (docs/threat-model.md, "Check budget"): no
# socket wait starts after the budget and each is cut to what is left of it, so what
# remains is the step under way when it runs out (a poll returning, a signature check,
# unwinding the check): milliseconds on this machine. (Name lookups are not cut: the
# servers here are IP addresses.)
BOUND_MS = 100
HELD = re.compile(r"app: (?:check failed|refused \S+): (\w+).*\(held (\d+) ms, budget (\d+) ms\)")


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


def bench_trickle(tmp: Path, build: Path) -> bool:
    with running_host(tmp / "host2") as host:
        repo = Repo(host)
        repo.publish("1.0.0", app_files("1.0.0", n=3))
        golden = device(tmp, "golden", host.url, repo, build)
        assert simulate(golden).state["app_tag"] == "v1.0.0"
    limit = budget_s(SMALL, MAX_SECTOR_SIZE + MAX_MANIFEST_SIZE)
    print(f"trickling servers, budget before a manifest is verified: {limit:.3f} s")
    # A boot against a server with nothing new: what a boot costs besides a check.
    idle = routes_for(repo, {})
    idle[BASE + "/latest"] = [response(302, b"", [("Location", BASE + "/tag/v1.0.0")])]
    with RawServer(idle) as server:
        base = min(boot(tmp / "idle", golden, server.url(), {})[0] for _ in range(2))
    print(f"  a boot with an idle check: {base:.2f} s")
    print(
        f"  {'server':30} {'ends with':14} {'held':>8} {'budget':>8} {'over':>6}  rest of the boot"
    )
    worst = (0, 0, 0)
    for case, (url, settings, shut) in shapes(repo, tmp):
        took, lines = boot(tmp / "t", golden, url, settings)
        shut()
        got = next((HELD.search(x) for x in lines if HELD.search(x)), None)
        if got is None:
            print(f"  {case:30} no hold logged: " + " | ".join(lines[-3:]))
            continue
        why, held, budget = got.group(1), int(got.group(2)), int(got.group(3))
        worst = max(worst, (held - budget, held, budget))
        print(
            f"  {case:30} {why:14} {held / 1000:7.3f}s {budget / 1000:7.3f}s"
            f" {held - budget:4d}ms  {took - held / 1000:.2f} s"
        )
    over, held, budget = worst
    ok = over <= BOUND_MS
    print(
        f"longest hold past its budget: {held / 1000:.3f} s of a {budget / 1000:.3f} s budget"
        f" ({over} ms over; bound {BOUND_MS} ms: {'within' if ok else 'PASSED'})"
    )
    return ok


def shapes(repo: Repo, tmp: Path) -> Iterator[tuple[str, tuple[str, dict, Callable]]]:
    """(name, (web_url, settings, stop)) of each trickling server, started."""
    for case in CASES:
        server = RawServer(routes_for(repo, lies(repo, case)))
        # The case's own settings (resumes, a per-read timeout past the budget), SMALL's budget.
        yield case, (server.url(), {**SETTINGS.get(case, {}), **SMALL}, server.close)
    # TLS: a handshake trickled 10 bytes every 0.5 s; then, with per-read and connect
    # timeouts past the budget: a server silent after the connect, a connect never done.
    ca = trustme.CA()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    (tmp / "ca.der").write_bytes(der_from_pem(ca.cert_pem.bytes()))
    server = RawServer(routes_for(repo, {}), tls=ctx)
    proxy = TricklingProxy(server.port)
    url = f"https://127.0.0.1:{proxy.port}"
    yield "slow TLS handshake", (url, SMALL, lambda: (proxy.close(), server.close()))
    long_waits = {**SMALL, "http_timeout_ms": 60000}
    silent, _ = silent_listener()
    url = f"https://127.0.0.1:{silent.getsockname()[1]}"
    yield "silent TLS server", (url, long_waits, lambda: connections_made(silent))
    # A connect that never completes (the listener's queue is full).
    full, filler = silent_listener(full=True)
    url = f"http://127.0.0.1:{full.getsockname()[1]}"
    yield "connect never completes", (url, long_waits, lambda: (filler.close(), full.close()))


def boot(state: Path, golden: Path, url: str, settings: dict) -> tuple[float, list[str]]:
    """Seconds one boot of a copy of `golden` aimed at `url` takes, and its log lines."""
    shutil.rmtree(state, ignore_errors=True)
    shutil.copytree(golden, state)
    ca = state.parent / "ca.der"
    if url.startswith("https:") and ca.exists():
        (state / "lcm/state/certs/bootstrap.der").write_bytes(ca.read_bytes())
    path = state / "lcm/state/config.json"
    cfg = json.loads(path.read_text())
    cfg.update(SMALL, web_url=url, **settings)
    path.write_text(json.dumps(cfg))
    start = time.monotonic()
    status = simulate(state)
    return time.monotonic() - start, status.lines


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        build = build_mpy(tmp / "mpy")
        bench_budget(tmp, build)
        if not bench_trickle(tmp, build):
            sys.exit(1)


if __name__ == "__main__":
    main()
