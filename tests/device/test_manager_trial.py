"""A manager trial fails only for the manager's own faults (docs/device.md, "Trial boots").

A genuine new manager is on trial; the network is down, then a hostile server
answers the checks with bytes that make the client fail (a Location that is
not UTF-8). None of that is held against the manager: it is not rolled back
or marked bad, and after the bound on trial boots it is confirmed. Then the
honest server is back and the next app release installs.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from publisher.device.manager import manager_files
from publisher.device.simulate import read_state
from tests.device.bootkit import boot
from tests.device.enginekit import (
    Repo,
    app_files,
    provision_with_manager,
    run,
    slot_is_complete,
    text,
)
from tests.hostserver import running_host
from tests.test_http_servers import RawServer

# Not UTF-8, and short enough to be kept as text: the client fails on it (a crash of the
# check, or a named HTTP error), and no answer about releases comes back.
NON_ASCII_REDIRECT = (
    b"HTTP/1.1 302 Found\r\nLocation: /acme/widget/releases/tag/"
    + b"\xff" * 100
    + b"\r\nContent-Length: 0\r\n\r\n"
)


def set_web_url(state: Path, url: str) -> None:
    path = state / "lcm/state/config.json"
    cfg = json.loads(path.read_text())
    cfg["web_url"] = url
    path.write_text(json.dumps(cfg))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_network_and_hostile_server_do_not_fail_a_manager_trial(tmp_path: Path, mpy: Any) -> None:
    with running_host(tmp_path, repos=("acme/widget", "acme/lcm")) as host:
        app = Repo(host)
        app.publish("1.0.0", app_files("1.0.0", n=2))
        manager = Repo(host, name="acme/lcm")
        files = manager_files(mpy.build)
        manager.publish("0.2.0", files)
        state = tmp_path / "device"
        provision_with_manager(
            state,
            mpy.build,
            app,
            manager,
            {"gestures": False, "trial_boots": 2, "http_timeout_ms": 1000},
        )
        st = run(state, mpy).state
        assert st["mgr_tag"] == "v0.2.0" and st["mgr_trial"] is None
        files = dict(files)
        files["lcm.py"] += b"# v0.3.0\n"
        manager.publish("0.3.0", files)
        assert boot(state, mpy, check_now=True)[0] == 75  # v0.3.0 installed, on trial

        outs = []
        # The network is down for three trial boots (more than trial_boots), each ending
        # in a reset: the worst case, since a power-on would forgive the boot before it.
        set_web_url(state, f"http://127.0.0.1:{closed_port()}")
        for _ in range(3):
            code, out = boot(state, mpy)
            outs.append(out)
            assert code == 0, out
        # Then a hostile server, until the bound on trial boots (3 x 2 + 1).
        with RawServer({"/acme/widget/releases/latest": [NON_ASCII_REDIRECT]}) as server:
            set_web_url(state, server.url())
            for _ in range(4):
                code, out = boot(state, mpy)
                outs.append(out)
                assert code == 0, out
        log = "\n".join(outs)
        assert "rolling back" not in log and "failed its trial" not in log, log
        assert log.count("not held against it") == 6, log
        assert "manager: confirmed v0.3.0 after 7 boots without a fault of its own" in outs[-1]
        st = read_state(state)
        assert st["mgr_tag"] == "v0.3.0" and st["mgr_trial"] is None and not st.get("mgr_bad")
        assert slot_is_complete(state, st["mgr"])

        set_web_url(state, host.url)
        app.publish("1.1.0", app_files("1.1.0", n=2))
        later = run(state, mpy)
        assert later.state["app_tag"] == "v1.1.0", text(later)
        assert later.state["mgr_tag"] == "v0.3.0"


def test_an_answer_from_the_server_confirms_a_manager_trial(tmp_path: Path, mpy: Any) -> None:
    with running_host(tmp_path, repos=("acme/widget", "acme/lcm")) as host:
        app = Repo(host)
        app.publish("1.0.0", app_files("1.0.0", n=2))
        manager = Repo(host, name="acme/lcm")
        files = manager_files(mpy.build)
        manager.publish("0.2.0", files)
        state = tmp_path / "device"
        provision_with_manager(state, mpy.build, app, manager, {"gestures": False})
        run(state, mpy)
        files = dict(files)
        files["lcm.py"] += b"# v0.3.0\n"
        manager.publish("0.3.0", files)
        assert boot(state, mpy, check_now=True)[0] == 75
        set_web_url(state, f"http://127.0.0.1:{closed_port()}")
        code, out = boot(state, mpy)
        assert code == 0 and "not held against it; trial boot 1 of at most 10" in out, out
        set_web_url(state, host.url)
        code, out = boot(state, mpy)
        assert code == 0 and "app: v1.0.0 is installed, nothing new" in out, out
        assert "manager: confirmed v0.3.0" in out, out
        assert read_state(state)["mgr_trial"] is None


def test_a_module_missing_from_a_new_manager_fails_its_trial(tmp_path: Path, mpy: Any) -> None:
    """Its own fault: a module that does not import during a check (no server makes that)."""
    with running_host(tmp_path, repos=("acme/widget", "acme/lcm")) as host:
        app = Repo(host)
        app.publish("1.0.0", app_files("1.0.0", n=2))
        manager = Repo(host, name="acme/lcm")
        files = manager_files(mpy.build)
        manager.publish("0.2.0", files)
        state = tmp_path / "device"
        provision_with_manager(
            state, mpy.build, app, manager, {"gestures": False, "trial_boots": 2}
        )
        assert run(state, mpy).state["mgr_tag"] == "v0.2.0"
        broken = {p: d for p, d in files.items() if p != "lcm_device/install.mpy"}
        manager.publish("0.3.0", broken)
        app.publish("1.1.0", app_files("1.1.0", n=2))  # the trial's check reaches install

        status = run(state, mpy, once=False, max_boots=4)

        out = text(status)
        assert "app: check broken: ImportError" in out, out
        assert "main.py: manager v0.3.0 failed its trial; rolling back" in out, out
        assert status.state["mgr_tag"] == "v0.2.0" and status.state["mgr_bad"] == "v0.3.0"
        later = run(state, mpy)  # the previous manager installs the app update
        assert later.state["app_tag"] == "v1.1.0", text(later)
