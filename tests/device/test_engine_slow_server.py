"""Slow retrieval: a server that trickles holds the device no longer than the check's budget.

Each case is a scripted server (tests/test_http_servers.py) that answers the browser
URLs of v2.0.0 with genuine signed assets but stays just inside the per-read limits
(a read timeout of 1 s, 256 bytes/s per response) for as long as the device lets it.
The check must end with the named reason, the schedule must back off, the running
app must still boot, and the next honest server must still deliver v2.0.0.

A TLS server that trickles its handshake is bounded the same way (MicroPython's
handshake runs non-blocking inside the first send). With a per-read timeout longer
than the budget, one wait in each phase (a connect that never completes, a silent
TLS server, a silent server, headers then silence, body bytes then silence) must be
cut to the budget: each server answers afterwards in a way that would end the check
with another reason, so the device's logged reason (BudgetError) and the count of
requests show the cut, without timing anything here; bench/bench_attacks.py prints
the times (the device logs how long each check held it). The devices here get a small
budget (check_slack_s 4, check_rate 64 KB/s: about 5.4 s before a manifest is
verified) so the suite stays fast, except where the cap on resumes is under test;
bench/bench_attacks.py measures the time held against the budget.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from publisher.device.simulate import der_from_pem
from tests.device.enginekit import (
    Repo,
    install_first_release,
    run,
    slot_is_complete,
    text,
)
from tests.device.test_engine_hostile_server import DL, routes_for
from tests.test_http_servers import CLOSE, RawServer, Request, Sleep, response

TIGHT = {"check_slack_s": 4, "check_rate": 65536}
# mbedTLS keeps its context and the CAs in the MicroPython heap (test_engine_ca_rotation.py).
TLS_DATA_KB = 40


def drip(status: int, body: bytes, length: int, step: int = 40, pause: float = 0.1) -> Any:
    """A response whose headers announce `length` bytes and whose body comes at 400 B/s
    (above the per-response minimum of 256 B/s), then stops."""

    def answer(req: Request) -> Iterator[Any]:
        yield response(status, b"", [("Content-Length", str(length))], length=False)
        for i in range(0, len(body), step):
            yield Sleep(pause)
            yield body[i : i + step]
        yield CLOSE

    return answer


# Longer than any budget here (bench/bench_attacks.py's too): what a server says after
# it names a reason of its own, so only a wait cut at the budget ends with BudgetError.
SILENCE = Sleep(30)


def bytes_then_stall(pack: bytes, stall: Any = Sleep(1.5)) -> Callable[[Request], list[Any]]:
    # Every Range request: the headers and 10 bytes, then silence past the read timeout;
    # or (stall=SILENCE) silence past the budget, then the rest of the range in zeros:
    # a wait not cut at the budget would end in a refusal (the file's hash) instead.
    def answer(req: Request) -> list[Any]:
        first, last = req.headers["range"].removeprefix("bytes=").split("-")
        a, b = int(first), int(last)
        rng = f"bytes {a}-{b}/{len(pack)}"
        headers = [("Content-Range", rng), ("Content-Length", str(b - a + 1))]
        head = response(206, b"", headers, length=False)
        rest = b"\0" * (b - a + 1 - 10) if stall == SILENCE else b""
        return [head + pack[a : a + 10], stall, rest, CLOSE]

    return answer


def slow_headers(req: Request) -> Iterator[Any]:
    # One header byte every 0.3 s: each read is in time, the header block never is.
    for byte in response(200, b"x" * 100):
        yield Sleep(0.3)
        yield bytes([byte])


def slow_redirects(req: Request) -> list[Any]:
    # A chain of redirects, each just inside the read timeout, ending in a dropped connection.
    hop = int(req.path.rsplit("hop", 1)[1]) if "hop" in req.path else 0
    if hop >= 4:
        return [Sleep(0.8), CLOSE]
    return [Sleep(0.8), response(302, b"", [("Location", f"{DL}certs.sector?hop{hop + 1}")])]


CASES: dict[str, tuple[dict[str, Any], str]] = {
    # With the default time budget: the cap on resumes ends it.
    "bytes then stall": ({DL + "pack.lcm": bytes_then_stall}, "BudgetError: more than 3 resumes"),
    "bytes then stall, small budget": (
        {DL + "pack.lcm": bytes_then_stall},
        "BudgetError: check budget of 4 s spent",
    ),
    "slow headers": ({DL + "certs.sector": slow_headers}, "StalledError: headers not complete"),
    "slow redirects": ({DL + "certs.sector": slow_redirects}, "BudgetError: check budget"),
    "slow manifest": ({DL + "manifest.lcm": "slow manifest"}, "BudgetError: check budget"),
    "slow sector": ({DL + "certs.sector": "slow sector"}, "BudgetError: check budget"),
    # One blocking wait per phase that would outlast the budget on its own (the per-read
    # timeout is a minute here), each followed by an answer that fails otherwise: each
    # wait must be cut to what is left of the budget. (A TLS handshake: below.)
    "silent server": (
        {DL + "certs.sector": [SILENCE, b"garbage\r\n\r\n", CLOSE]},
        "BudgetError: check budget of 5 s spent",
    ),
    "headers then silence": (
        {DL + "certs.sector": [b"HTTP/1.1 200 X\r\nContent-Length: 9\r\n", SILENCE, b"\1\r\n\r\n"]},
        "BudgetError: check budget of 5 s spent",
    ),
    "body bytes then silence": (
        {DL + "pack.lcm": "body bytes then silence"},
        "BudgetError: check budget of 4 s spent",
    ),
    # Header bytes each in time, with a header timeout longer than the budget.
    "slow headers, long timeout": (
        {DL + "certs.sector": slow_headers},
        "BudgetError: check budget of 5 s spent",
    ),
}


# The cap on resumes under test with the default time budget; the time budget with
# resumes left uncapped (either would end the other's case, whichever came first).
LONG_WAITS = {**TIGHT, "check_resumes": 1000, "http_timeout_ms": 60000}
SETTINGS: dict[str, dict[str, Any]] = {
    "bytes then stall": {},
    "bytes then stall, small budget": {**TIGHT, "check_resumes": 1000},
    "silent server": LONG_WAITS,
    "headers then silence": LONG_WAITS,
    "body bytes then silence": LONG_WAITS,
    "slow headers, long timeout": LONG_WAITS,
}
# The one request each of these cases' servers answers (none after the budget is spent).
ONE_REQUEST = {
    "silent server": "certs.sector",
    "headers then silence": "certs.sector",
    "body bytes then silence": "pack.lcm",
    "slow headers, long timeout": "certs.sector",
}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, mpy_build: Path) -> tuple[Repo, Path]:
    tmp = tmp_path_factory.mktemp("slow")
    return install_first_release(tmp, mpy_build)


def set_config(state: Path, **changes: Any) -> None:
    path = state / "lcm/state/config.json"
    cfg = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            cfg.pop(key, None)
        else:
            cfg[key] = value
    path.write_text(json.dumps(cfg))


def lies(repo: Repo, case: str) -> dict[str, Any]:
    lie, _ = CASES[case]
    out = {}
    for path, route in lie.items():
        if route == "slow manifest":
            # A manifest that claims 80 000 bytes (under the format's cap) and drips them.
            route = drip(200, b"\0" * 80000, 80000)
        elif route == "slow sector":
            route = drip(200, repo.sector.ljust(4096, b"\0"), 4096)
        elif route == "body bytes then silence":
            out[path] = lambda pack: bytes_then_stall(pack, SILENCE)
            continue
        # routes_for calls each lie with the pack; only bytes_then_stall needs it.
        out[path] = route if route is bytes_then_stall else (lambda _pack, r=route: r)
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_trickling_server_is_bounded_and_the_app_runs(
    case: str, installed: tuple[Repo, Path], mpy: Any, tmp_path: Path
) -> None:
    repo, golden = installed
    state = tmp_path / "device"
    shutil.copytree(golden, state)
    with RawServer(routes_for(repo, lies(repo, case))) as server:
        set_config(state, web_url=server.url(), **SETTINGS.get(case, TIGHT))
        status = run(state, mpy)

        asked = [r.path for r in server.requests]
    out = text(status)
    assert "app: check failed: " + CASES[case][1] in out, out
    if case in ONE_REQUEST:
        # One wait, cut at the budget: neither retried nor resumed.
        assert sum(p.endswith(ONE_REQUEST[case]) for p in asked) == 1, asked
    assert status.exits == [75, 0], out
    assert status.state["app_tag"] == "v1.0.0" and "APP v1.0.0 running" in out
    assert slot_is_complete(state, "app0")
    schedule = json.loads((state / "lcm/state/schedule.json").read_text())
    assert schedule["failures"] >= 1, schedule  # backed off

    # An honest server next: the genuine v2.0.0 installs (default budget).
    with RawServer(routes_for(repo, {})) as server:
        set_config(state, web_url=server.url(), check_slack_s=None, check_rate=None)
        status = run(state, mpy)
    assert status.state["app_tag"] == "v2.0.0" and "APP v2.0.0 running" in text(status)


def test_budget_grows_with_the_signed_download(
    installed: tuple[Repo, Path], mpy: Any, tmp_path: Path
) -> None:
    """The logged budget is check_slack_s plus the sector cap, the manifest and the pack
    bytes to fetch at check_rate (defaults: 30 s and 1024 B/s)."""
    repo, golden = installed
    state = tmp_path / "device"
    shutil.copytree(golden, state)
    with RawServer(routes_for(repo, {})) as server:
        set_config(state, web_url=server.url())
        status = run(state, mpy)
    out = text(status)
    line = next(x for x in out.splitlines() if "check budget" in x)
    fetched = int(line.split("download: ")[1].split(" ")[0])
    manifest = len([r for r in server.requests if r.path.endswith("manifest.lcm")])
    assert manifest == 1
    from cert_sector.sector import MAX_SECTOR_SIZE

    budget = int(line.rsplit("check budget ", 1)[1].split(" ")[0])
    low = 30 + (MAX_SECTOR_SIZE + fetched) // 1024
    assert low <= budget <= low + 2, line  # + the manifest's own bytes (under 2 KB)
    assert status.state["app_tag"] == "v2.0.0"


class TricklingProxy:
    """A TCP proxy to `upstream` that passes the client's bytes at once and the server's
    10 at a time, every 0.5 s (each read in time): a TLS handshake that takes minutes."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.stop = threading.Event()
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while not self.stop.is_set():
                conn, _ = self.listener.accept()
                up = socket.create_connection(("127.0.0.1", self.upstream))
                threading.Thread(target=self._pipe, args=(conn, up, 65536, 0), daemon=True).start()
                threading.Thread(target=self._pipe, args=(up, conn, 10, 0.5), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, size: int, pause: float) -> None:
        with contextlib.suppress(OSError):
            while not self.stop.is_set():
                data = src.recv(size)
                if not data:
                    return
                dst.sendall(data)
                self.stop.wait(pause)

    def close(self) -> None:
        self.stop.set()
        self.listener.close()


def test_slow_tls_handshake_is_bounded(
    installed: tuple[Repo, Path], mpy: Any, tmp_path: Path
) -> None:
    ca = trustme.CA()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    repo, golden = installed
    state = tmp_path / "device"
    shutil.copytree(golden, state)
    (state / "lcm/state/certs/bootstrap.der").write_bytes(der_from_pem(ca.cert_pem.bytes()))
    with RawServer(routes_for(repo, {}), tls=ctx) as server:
        proxy = TricklingProxy(server.port)
        try:
            set_config(state, web_url=f"https://127.0.0.1:{proxy.port}", **TIGHT)
            status = run(state, mpy, data_at_least_kb=TLS_DATA_KB)
        finally:
            proxy.close()
        out = text(status)
        assert "app: check failed: BudgetError: check budget of 4 s spent" in out, out
        assert status.state["app_tag"] == "v1.0.0" and "APP v1.0.0 running" in out

        # The same server without the trickle: the genuine v2.0.0 installs.
        set_config(state, web_url=server.url(), check_slack_s=None, check_rate=None)
        status = run(state, mpy, data_at_least_kb=TLS_DATA_KB)
    assert status.state["app_tag"] == "v2.0.0" and "APP v2.0.0 running" in text(status)


def silent_listener(full: bool = False) -> tuple[socket.socket, socket.socket | None]:
    """A TCP listener that never accepts: the kernel completes each connection (it waits
    in the queue) and nothing ever answers: a TLS server silent after the connect. With
    `full`, its queue (one place) is taken by a connection made here (returned second, to
    be kept open): then a connect to it never completes (Linux drops the SYNs)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0 if full else 8)
    return listener, socket.create_connection(listener.getsockname()) if full else None


def connections_made(listener: socket.socket) -> int:
    """How many connections wait in the queue of a `silent_listener` (then closed)."""
    listener.settimeout(0.2)
    count = 0
    with contextlib.suppress(OSError):
        while True:
            listener.accept()[0].close()
            count += 1
    listener.close()
    return count


def test_silent_tls_server_is_cut_at_the_budget(
    installed: tuple[Repo, Path], mpy: Any, tmp_path: Path
) -> None:
    """A server that accepts the connection and never answers the TLS handshake, with a
    per-read timeout (a minute) longer than the budget: the handshake's one wait is cut
    to the budget (uncut, it would end in a StalledError a minute later)."""
    _repo, golden = installed
    state = tmp_path / "device"
    shutil.copytree(golden, state)
    silent, _ = silent_listener()
    set_config(state, web_url=f"https://127.0.0.1:{silent.getsockname()[1]}", **LONG_WAITS)
    status = run(state, mpy, data_at_least_kb=TLS_DATA_KB)
    out = text(status)
    assert "app: check failed: BudgetError: check budget of 4 s spent" in out, out
    assert connections_made(silent) == 1, out
    assert status.state["app_tag"] == "v1.0.0" and "APP v1.0.0 running" in out


def test_connect_that_never_completes_is_cut_at_the_budget(
    installed: tuple[Repo, Path], mpy: Any, tmp_path: Path
) -> None:
    """A server whose TCP handshake never completes, with a connect timeout (a minute)
    longer than the budget: the connect's wait is cut to the budget and named so (not
    a connect timeout: a check's cut wait ends in BudgetError, whatever the phase)."""
    _repo, golden = installed
    state = tmp_path / "device"
    shutil.copytree(golden, state)
    listener, filler = silent_listener(full=True)
    set_config(state, web_url=f"http://127.0.0.1:{listener.getsockname()[1]}", **LONG_WAITS)
    try:
        status = run(state, mpy)
    finally:
        assert filler is not None
        filler.close()
    out = text(status)
    assert "app: check failed: BudgetError: check budget of 4 s spent" in out, out
    assert connections_made(listener) == 1, out  # the filler's: the device never got in
    assert status.state["app_tag"] == "v1.0.0" and "APP v1.0.0 running" in out


def test_the_boots_two_checks_share_one_budget(
    installed: tuple[Repo, Path], mpy: Any, tmp_path: Path
) -> None:
    """A manager repo whose server says nothing spends the update boot's budget: the app
    check that follows has none left (it would install v2.0.0 with a budget of its own),
    so the app is down for one budget, not two; an honest server next delivers v2.0.0."""
    repo, golden = installed
    state = tmp_path / "device"
    shutil.copytree(golden, state)
    silent_manager = {"/acme/lcm/releases/latest": lambda _pack: [SILENCE, CLOSE]}
    with RawServer(routes_for(repo, silent_manager)) as server:
        set_config(state, web_url=server.url(), manager_repo="acme/lcm", **LONG_WAITS)
        status = run(state, mpy)
        asked = [req.path for req in server.requests]

    out = text(status)
    assert "manager: check failed: BudgetError: check budget of 4 s spent" in out, out
    assert "app: check failed: BudgetError: check budget of 4 s spent" in out, out
    assert not any("download" in path for path in asked), asked
    assert status.exits == [75, 0], out
    assert status.state["app_tag"] == "v1.0.0" and "APP v1.0.0 running" in out

    with RawServer(routes_for(repo, {})) as server:
        set_config(state, web_url=server.url(), manager_repo=None, check_slack_s=None)
        status = run(state, mpy)
    assert status.state["app_tag"] == "v2.0.0" and "APP v2.0.0 running" in text(status)
