"""A real MQTT broker for the fleet tests: Debian's mosquitto on a free loopback port.

with running_broker(tmp_path) as broker:
    broker.add_device("acme/widget", "240ac4000001", "pw1")   # user = device id
    broker.url                      # mqtt://127.0.0.1:PORT
    broker.tls_url                  # mqtts://localhost:PORT (when started with tls=CA)
    broker.restart()                # stop and start again (same port, same files)
    broker.log_text()               # mosquitto's log (ACL denials are logged there)

The password file is made with `mosquitto_passwd` (same Debian package). The
ACL is the one docs/fleet.md recommends: the publisher (user `publisher`) may
write every repo's release topic and read everything under lcm/; a device may
read only its repo's release topic and write only its own status topic
(`lcm/OWNER/REPO/status/DEVICE_ID`, DEVICE_ID = its user name); `viewer` (the
dashboard and `lcm fleet status`) may only read. Nothing here skips: a missing
mosquitto fails the test with the command that installs it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MOSQUITTO = "/usr/sbin/mosquitto"
PUBLISHER = ("publisher", "publisher-secret")
VIEWER = ("viewer", "viewer-secret")
INSTALL = "apt-get install -y mosquitto"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    def __init__(self, folder: Path, tls: Any = None) -> None:
        if not Path(MOSQUITTO).exists() or shutil.which("mosquitto_passwd") is None:
            raise RuntimeError(f"mosquitto is not installed: {INSTALL}")
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.tls_port = _free_port() if tls is not None else 0
        self.devices: dict[str, tuple[str, str]] = {}  # user -> (password, repo)
        self.proc: subprocess.Popen[bytes] | None = None
        self.users = {PUBLISHER[0]: PUBLISHER[1], VIEWER[0]: VIEWER[1]}
        conf = [
            # As root mosquitto would switch to the user `mosquitto`, who cannot read
            # this temp folder: stay who we are.
            *(["user root"] if os.geteuid() == 0 else []),
            "per_listener_settings false",
            "allow_anonymous false",
            f"password_file {folder / 'passwd'}",
            f"acl_file {folder / 'acl'}",
            "persistence true",
            f"persistence_location {folder}/",
            f"log_dest file {folder / 'mosquitto.log'}",
            "log_type all",
            "connection_messages true",
            f"listener {self.port} 127.0.0.1",
        ]
        if tls is not None:
            cert = tls.issue_cert("localhost", "127.0.0.1")
            cert.private_key_pem.write_to_path(str(folder / "key.pem"))
            cert.cert_chain_pems[0].write_to_path(str(folder / "cert.pem"))
            tls.cert_pem.write_to_path(str(folder / "ca.pem"))
            conf += [
                f"listener {self.tls_port} 127.0.0.1",
                f"certfile {folder / 'cert.pem'}",
                f"keyfile {folder / 'key.pem'}",
            ]
        (folder / "mosquitto.conf").write_text("\n".join(conf) + "\n")
        self._write_auth()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def tls_url(self) -> str:
        return f"mqtts://localhost:{self.tls_port}"

    def add_device(self, repo: str, device_id: str, password: str) -> None:
        """A device account: reads `lcm/REPO/release`, writes `lcm/REPO/status/DEVICE_ID`."""
        self.devices[device_id] = (password, repo)
        self.users[device_id] = password
        self._write_auth()
        if self.proc is not None:
            self.proc.send_signal(signal.SIGHUP)  # mosquitto reloads passwords and ACL
            time.sleep(0.2)

    def _write_auth(self) -> None:
        passwd = self.folder / "passwd"
        passwd.write_text("".join(f"{u}:{p}\n" for u, p in self.users.items()))
        subprocess.run(["mosquitto_passwd", "-U", str(passwd)], check=True, capture_output=True)
        os.chmod(passwd, 0o600)
        acl = [
            f"user {PUBLISHER[0]}",
            "topic write lcm/+/+/release",
            "topic read lcm/#",
            "",
            f"user {VIEWER[0]}",
            "topic read lcm/#",
            "",
        ]
        for user, (_pw, repo) in self.devices.items():
            acl += [
                f"user {user}",
                f"topic read lcm/{repo}/release",
                f"topic write lcm/{repo}/status/{user}",
                "",
            ]
        (self.folder / "acl").write_text("\n".join(acl))
        os.chmod(self.folder / "acl", 0o600)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.folder / "mosquitto.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"mosquitto exited {self.proc.returncode}: {err}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.2),
            ):
                return
            time.sleep(0.05)
        raise RuntimeError("mosquitto did not start listening within 10 s")

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_text(self) -> str:
        path = self.folder / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""


@contextlib.contextmanager
def running_broker(folder: Path, tls: Any = None) -> Iterator[Broker]:
    broker = Broker(Path(folder) / "broker", tls)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
