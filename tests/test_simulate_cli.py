"""`lcm device simulate` from the command line (CPython side; the device runs in the unix port)."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import trustme
from typer.testing import CliRunner

from cert_sector.keys import key_id_hex
from publisher.cli import app
from publisher.device.setup_sim import free_port
from publisher.device.simulate import NEW_DEVICE_OPTIONS, der_from_pem
from tests.device.enginekit import ENGINE_HEAP_KB, Repo, app_files
from tests.hostserver import running_host
from tests.keyfactory import new_signer

runner = CliRunner()
HEAP = f"{ENGINE_HEAP_KB}k"


def write_root(tmp_path: Path, repo: Repo) -> Path:
    pub = tmp_path / "root.pub"
    pub.write_bytes(repo.root.public_key)
    return pub


def simulate_args(state: Path, url: str, pub: Path, *more: str) -> list[str]:
    return [
        "device",
        "simulate",
        "--state",
        str(state),
        "--web-url",
        url,
        "--repo",
        "acme/widget",
        "--root",
        str(pub),
        "--heap",
        HEAP,
        *more,
    ]


def test_once_installs_and_prints_timeline_and_json(tmp_path: Path) -> None:
    with running_host(tmp_path) as host:
        repo = Repo(host)
        repo.publish("1.0.0", app_files("1.0.0", n=5))
        pub = write_root(tmp_path, repo)
        state = tmp_path / "dev"

        result = runner.invoke(app, simulate_args(state, host.url, pub, "--once", "--json"))

        assert result.exit_code == 0, result.output
        lines = result.output.splitlines()
        assert lines[0] == f"provisioned a blank device in {state}"
        assert "boot 1" in lines
        switched = "app: switched to app0 (v1.0.0), trial boot next"
        assert any(line.endswith(switched) for line in lines)
        assert "exit 75 (reset)" in lines and "exit 0 (app returned)" in lines
        assert "  | APP v1.0.0 running" in lines
        status = json.loads(lines[-1])
        assert status["app"] == "v1.0.0" and status["trial"] is False and status["exits"] == [75, 0]
        assert status["check"] == "installed" and status["check_reason"] is None
        assert status["failed_trial"] is None and status["failed_trial_why"] is None

        assert "check_interval_s" not in json.loads((state / "lcm/state/config.json").read_text())

        again = runner.invoke(app, simulate_args(state, host.url, pub, "--once", "--json"))
        assert again.exit_code == 0, again.output
        assert again.output.startswith(f"booting the device in {state} (its configuration is kept)")
        assert any(line.endswith("nothing new") for line in again.output.splitlines())
        assert json.loads(again.stdout.splitlines()[-1])["check"] == "idle"


def test_once_says_in_its_exit_code_and_json_how_the_check_went(tmp_path: Path) -> None:
    pub = tmp_path / "root.pub"
    pub.write_bytes(new_signer().public_key)
    # Nothing listens there: the check fails (the network), retried at the next check.
    nobody = f"http://127.0.0.1:{free_port(socket.SOCK_STREAM)}"

    failed = runner.invoke(app, simulate_args(tmp_path / "dev1", nobody, pub, "--once", "--json"))

    assert failed.exit_code == 3, failed.output
    status = json.loads(failed.stdout.splitlines()[-1])
    assert status["check"] == "failed" and status["app"] is None, status
    assert status["check_reason"].startswith("app: check failed: NetworkError: connect to "), status
    assert f"error: the device's check failed (exit 3): {status['check_reason']}" in failed.output

    with running_host(tmp_path) as host:
        Repo(host).publish("1.0.0", app_files("1.0.0", n=2))
        # The device pins a root that signed nothing of this repo: the release is refused.
        refused = runner.invoke(
            app, simulate_args(tmp_path / "dev2", host.url, pub, "--once", "--json")
        )
        # The same without --json: the exit code alone tells a script.
        plain = runner.invoke(app, simulate_args(tmp_path / "dev3", host.url, pub, "--once"))

    assert refused.exit_code == 4, refused.output
    status = json.loads(refused.stdout.splitlines()[-1])
    assert status["check"] == "refused" and status["app"] is None, status
    assert status["check_reason"].startswith("app: refused v1.0.0: "), status
    assert "error: the device refused a release (exit 4): app: refused v1.0.0: " in refused.output
    assert plain.exit_code == 4, plain.output
    # What to do about it: the key the device pinned, and how to pin another.
    hint = " ".join(plain.output.split())  # the console wraps long lines
    pinned = key_id_hex(pub.read_bytes())
    assert "hint: the release's cert sector is not signed by the root keys the device " in hint
    assert f"(it pinned {pinned} when it was set up" in hint
    assert f"set the device up afresh: a new --state folder (or delete {tmp_path / 'dev3'})" in hint


def test_an_existing_device_refuses_options_that_differ_from_what_it_keeps(
    tmp_path: Path,
) -> None:
    with running_host(tmp_path) as host:
        repo = Repo(host)
        repo.publish("1.0.0", app_files("1.0.0", n=2))
        pub = write_root(tmp_path, repo)
        other = tmp_path / "other.pub"
        other.write_bytes(new_signer().public_key)
        state = tmp_path / "dev"
        first = runner.invoke(
            app, simulate_args(state, host.url, pub, "--once", "--check-interval", "60")
        )
        assert first.exit_code == 0, first.output
        config = (state / "lcm/state/config.json").read_bytes()

        # Meant to point the device at a mirror, with a longer interval: it would keep its own.
        moved = runner.invoke(
            app,
            [
                *("device", "simulate", "--state", str(state), "--once"),
                *("--web-url", "http://127.0.0.1:8100", "--check-interval", "120"),
                *("--root", str(other), "--mqtt", "mqtt://broker.lan", "--channel", "stable"),
            ],
        )

        assert moved.exit_code == 1, moved.output
        lines = moved.output.splitlines()
        assert lines[0] == (
            f"error: {state} holds a device provisioned before, which keeps the configuration "
            "it was provisioned with, as a real board does; these options of a new device "
            "would be ignored:"
        )
        assert lines[1:5] == [
            f"  --web-url http://127.0.0.1:8100 (the device has {host.url})",
            f"  --root {other} (the device has key id {key_id_hex(repo.root.public_key)})",
            "  --check-interval 120 (the device has 60)",
            "  --mqtt mqtt://broker.lan (the device has none)",
        ]
        # --channel stable is what the device has (the default): no conflict.
        assert lines[5] == (
            "To boot it as it is, leave them out; to start afresh with them, give a new "
            f"--state folder (or delete {state}: the device and all it installed)."
        )
        assert len(lines) == 6 and (state / "lcm/state/config.json").read_bytes() == config

        # What the device has, defaults spelled out and a trailing slash included: it boots.
        same = runner.invoke(
            app,
            simulate_args(
                state,
                host.url + "/",
                pub,
                *("--once", "--check-interval", "60", "--channel", "stable", "--board", "esp32"),
                *("--log-host", "127.0.0.1", "--log-port", "45678"),
            ),
        )

    assert same.exit_code == 0, same.output
    assert same.output.startswith(f"booting the device in {state} (its configuration is kept)\n")
    assert "error" not in same.output and "ignored" not in same.output


def test_help_marks_every_option_of_a_new_device() -> None:
    lcm = Path(sys.executable).parent / "lcm"
    # Wide enough for each option's help to be one line.
    env = {**os.environ, "TERMINAL_WIDTH": "400"}
    result = subprocess.run(
        [str(lcm), "device", "simulate", "--help"], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    rows = {}
    for line in result.stdout.splitlines():
        m = re.match(r"^\W*(--[a-z-]+)\s+<[^>]*>(?:\s+\[[^]]*\])?\s+(.*?)\s*\W*$", line)
        if m:
            rows[m.group(1)] = m.group(2)
    assert set(NEW_DEVICE_OPTIONS) < set(rows), rows
    for option, text in rows.items():
        assert ("of a new device" in text) == (option in NEW_DEVICE_OPTIONS), (option, text)
    assert "3 failed, 4 refused" in rows["--once"]


def test_data_heap_models_a_board_with_its_manager_frozen(tmp_path: Path) -> None:
    with running_host(tmp_path) as host:
        repo = Repo(host)
        repo.publish("1.0.0", app_files("1.0.0", n=20, size=2048))
        pub = write_root(tmp_path, repo)
        args = simulate_args(tmp_path / "dev", host.url, pub, "--once", "--json")
        args.remove("--heap")
        args.remove(HEAP)

        result = runner.invoke(app, [*args, "--data-heap", "24k"])

        assert result.exit_code == 0, result.output
        assert "  | lcm-hal: code in ROM, data heap 24576" in result.output.splitlines()
        assert json.loads(result.output.splitlines()[-1])["app"] == "v1.0.0", result.output

        # With 4 KB for data the check runs out of heap, says so, and nothing is lost.
        repo.publish("1.1.0", app_files("1.1.0", n=20, size=2048))
        result = runner.invoke(app, [*args, "--data-heap", "4k"])
        assert "MemoryError" in result.output, result.output
        status = json.loads(result.stdout.splitlines()[-1])
        assert status["app"] == "v1.0.0", result.output
        # A device that crashes before its check says how it went: a failed check.
        assert result.exit_code == 3, result.output
        assert status["check"] == "failed" and status["exits"] == [1], status
        assert status["check_reason"] == "boot 1 (its check) ended with exit 1 (crash)", status


def test_full_install_over_https_costs_few_handshakes(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_pem, key_pem, ca_pem = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_pem))
    cert.private_key_pem.write_to_path(str(key_pem))
    ca.cert_pem.write_to_path(str(ca_pem))
    with running_host(tmp_path, tls=(cert_pem, key_pem)) as host:
        der = der_from_pem(ca_pem.read_bytes())
        repo = Repo(host, verify=str(ca_pem), cas=[der])
        repo.publish("1.0.0", app_files("1.0.0"))
        pub = write_root(tmp_path, repo)
        host.clear_requests()

        result = runner.invoke(
            app,
            simulate_args(
                tmp_path / "dev", host.url, pub, "--once", "--json", "--https-ca", str(ca_pem)
            ),
        )

        assert result.exit_code == 0, result.output
        assert json.loads(result.output.splitlines()[-1])["app"] == "v1.0.0", result.output
        handshakes = {r.connection_id for r in host.requests}
        assert len(handshakes) <= 3, host.requests


def test_refuses_bad_arguments_with_a_clear_error(tmp_path: Path) -> None:
    pub = tmp_path / "root.pub"
    pub.write_bytes(new_signer().public_key)
    url = "http://127.0.0.1:9"
    cases = [
        (["--repo", "not-a-repo"], "repo must be owner/name"),
        (["--heap", "lots"], "--heap must look like 160k"),
        (["--data-heap", "24 KB"], "--data-heap must look like 24k"),
        (["--root", str(tmp_path / "missing.pub")], "missing.pub"),
        (["--https-ca", str(pub)], "--https-ca is not a PEM certificate"),
        (["--web-url", "ftp://example.org"], "--web-url 'ftp://example.org' must be an http"),
        (["--web-url", "http://x:99999"], "a port from 1 to 65535"),
        (["--heap", "0"], "--heap must look like 160k or 2m, at least 8k, got '0'"),
        (["--data-heap", "24k", "--heap", "16k"], "--data-heap 24k leaves no room in --heap"),
        (["--check-interval", "99999999999999"], "to 31536000 s (a year)"),
        (["--log-host", "999.999.1.1"], "--log-host '999.999.1.1' must be an IPv4 address"),
        (["--log-host", "a b"], "--log-host 'a b' must be an IPv4 address"),
        (["--manager-repo", "acme/manager"], "--manager-repo needs at least one --manager-root"),
        (["--channel", "nightly"], "--channel must be stable or beta, got 'nightly'"),
        (["--check-interval", "0"], "--check-interval must be from 60 s"),
        (["--mqtt", "http://broker.lan"], "--mqtt 'http://broker.lan' must be mqtt://HOST"),
        (["--mqtt", "mqtt://me:pw@broker.lan"], "no credentials"),
    ]
    for extra, message in cases:
        args = simulate_args(tmp_path / "dev", url, pub, "--once") + extra
        result = runner.invoke(app, args)
        assert result.exit_code != 0, (extra, result.output)
        assert message in result.output, (extra, result.output)
        assert not (tmp_path / "dev" / "main.py").exists()
    no_root = simulate_args(tmp_path / "dev", url, pub, "--once")
    del no_root[no_root.index("--root") : no_root.index("--root") + 2]
    result = runner.invoke(app, no_root)
    assert result.exit_code == 1, result.output
    assert result.output == (
        "error: the app repo acme/widget needs its root public key: --root KEY.pub "
        "(repeatable); or, instead of --repo, --setup: the device's setup page asks for the "
        "repo and pins its root key by fingerprint (the key id `lcm keys show` prints) or "
        "trust on first use\n"
    )
    assert not (tmp_path / "dev" / "main.py").exists()
    # --root without --repo; --once for a device without a repo (its setup page would wait).
    no_repo = simulate_args(tmp_path / "dev", url, pub, "--once")
    del no_repo[no_repo.index("--repo") : no_repo.index("--repo") + 2]
    result = runner.invoke(app, no_repo)
    assert result.exit_code == 1 and "--root needs --repo" in result.output, result.output
    del no_repo[no_repo.index("--root") : no_repo.index("--root") + 2]
    result = runner.invoke(app, no_repo)
    assert result.exit_code == 1 and "--once needs --repo" in result.output, result.output
    (tmp_path / "a-file").write_text("x")
    result = runner.invoke(app, simulate_args(tmp_path / "a-file", url, pub, "--once"))
    assert result.exit_code == 1 and "is a file: give a folder" in result.output, result.output
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "precious.txt").write_text("keep me")
    result = runner.invoke(app, simulate_args(tmp_path / "busy", url, pub, "--once"))
    assert result.exit_code == 1 and "is not empty and holds no simulated device" in result.output
    assert (tmp_path / "busy" / "precious.txt").read_text() == "keep me"


def start_cli(*args: str) -> tuple[subprocess.Popen[str], queue.Queue[str | None]]:
    """`lcm device simulate ARGS` as a subprocess; its output lines arrive on the queue."""
    lcm = Path(sys.executable).parent / "lcm"
    proc = subprocess.Popen(
        [str(lcm), "device", "simulate", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return proc, lines


def read_until(lines: queue.Queue[str | None], prefix: str, seen: list[str]) -> str:
    while True:
        line = lines.get(timeout=120)  # a hang guard, not a timed assertion
        assert line is not None, "the command ended early:\n" + "\n".join(seen)
        seen.append(line)
        if line.strip().startswith(prefix):
            return line.strip()


def test_setup_serves_the_portal_until_stopped(tmp_path: Path) -> None:
    radio = tmp_path / "radio.json"
    radio.write_text(
        json.dumps(
            {
                "mac": "a4cf12b3c4d5",
                "networks": [
                    {"ssid": "cafe & bar", "rssi": -60, "auth": 0},
                    {"ssid": "home", "rssi": -50, "auth": 3, "password": "secret-pass"},
                ],
            }
        )
    )
    proc, lines = start_cli(
        "--state", str(tmp_path / "dev"), "--setup", "--radio-script", str(radio)
    )
    seen: list[str] = []
    try:
        url = read_until(lines, "setup mode: portal ", seen).split()[-1]
        dns = read_until(lines, "DNS: ", seen)
        network = read_until(lines, "setup network: ", seen)
        assert url.startswith("http://127.0.0.1:")
        assert re.fullmatch(r"DNS: 127\.0\.0\.1 port \d+", dns)
        assert re.fullmatch(r"setup network: LCM-B3C4D5 password \S{8,}", network)

        with urllib.request.urlopen(url, timeout=30) as resp:
            page = resp.read().decode()

        assert resp.status == 200
        assert "cafe &amp; bar" in page and "home" in page
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    assert code == 0, "\n".join(seen)
    rest = []
    while (line := lines.get(timeout=60)) is not None:
        rest.append(line)
    assert rest[-1] == "stopped", rest
    # The simulated device stopped with the command: nothing listens there any more.
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=30)


def test_setup_refuses_bad_arguments_with_a_clear_error(tmp_path: Path) -> None:
    state = str(tmp_path / "dev")
    cases = [
        (["--setup", "--radio-script", str(tmp_path / "none.json")], "none.json"),
        (["--radio-script", str(tmp_path / "r.json")], "--radio-script needs --setup"),
        ([], "--web-url is needed to provision a device"),
        (["--setup", "--repo", "acme/widget"], "--repo and --root need --web-url"),
    ]
    for extra, message in cases:
        result = runner.invoke(app, ["device", "simulate", "--state", state, *extra])
        assert result.exit_code == 1, (extra, result.output)
        assert message in result.output, (extra, result.output)


def test_channel_check_interval_and_broker_configure_a_new_device(tmp_path: Path) -> None:
    with running_host(tmp_path) as host:
        repo = Repo(host)
        repo.publish("1.0.0", app_files("1.0.0", n=2))
        pub = write_root(tmp_path, repo)
        state = tmp_path / "dev"
        extra = ["--once", "--channel", "beta", "--check-interval", "60"]
        # A broker nobody listens on: the device installs and runs its app all the same.
        extra += ["--mqtt", "mqtt://127.0.0.1:9/"]

        result = runner.invoke(app, simulate_args(state, host.url, pub, *extra))

        assert result.exit_code == 0, result.output
        cfg = json.loads((state / "lcm/state/config.json").read_text())
        assert cfg["channel"] == "beta" and cfg["check_interval_s"] == 60
        assert cfg["mqtt_url"] == "mqtt://127.0.0.1:9"
        assert "APP v1.0.0 running" in result.output


def test_setup_without_a_radio_script_uses_the_built_in_air(tmp_path: Path) -> None:
    state = tmp_path / "dev"
    proc, lines = start_cli("--state", str(state), "--setup")
    seen: list[str] = []
    try:
        radio = read_until(lines, "radio: the built-in air", seen)
        url = read_until(lines, "setup mode: portal ", seen).split()[-1]
        with urllib.request.urlopen(url, timeout=30) as resp:
            page = resp.read().decode()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert "network 'home' password 'lcm-home-pass'" in radio
    assert 'value="home"' in page and 'value="cafe"' in page
    assert json.loads((state / "lcm/state/radio.json").read_text())["networks"][0]["ssid"] == "home"
