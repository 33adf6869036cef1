"""A static export served by Debian's nginx: a simulated device installs (with a transfer cut
mid-pack, resumed with Range) and updates from it, and an idle check is one small request
for the pointer file. No redirects anywhere: nginx serves files, nothing else."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from cert_sector.assets import PACK_ASSET
from publisher.release.export import export_releases
from publisher.release.github import Session
from tests.device.enginekit import Repo, app_files, new_device, run, text
from tests.hostserver import TEST_REPO, TEST_TOKEN, running_host
from tests.staticserver import running_nginx


class CuttingRelay:
    """A TCP relay to `port` that cuts the first connection whose answers pass `cut_at`
    bytes: a transfer dropped mid-way, as a flaky Wi-Fi link does it."""

    def __init__(self, port: int, cut_at: int) -> None:
        self.port = port
        self.cut_at = cut_at
        self.cuts = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.relay, args=(client,), daemon=True).start()

    def relay(self, client: socket.socket) -> None:
        with client, socket.create_connection(("127.0.0.1", self.port)) as server:
            up = threading.Thread(target=forward, args=(client, server), daemon=True)
            up.start()
            sent = 0
            try:
                while data := server.recv(4096):
                    if self.cuts == 0 and sent + len(data) > self.cut_at:
                        client.sendall(data[: self.cut_at - sent])
                        self.cuts += 1
                        break  # both sockets close: the device sees the body end early
                    client.sendall(data)
                    sent += len(data)
            except OSError:
                pass

    def close(self) -> None:
        self.listener.close()


def forward(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(4096):
            dst.sendall(data)
    except OSError:
        pass


def test_a_device_installs_and_updates_from_nginx_serving_an_export(
    tmp_path: Path, mpy: Any
) -> None:
    www = tmp_path / "www"
    with running_host(tmp_path) as host:
        repo = Repo(host)
        session = Session(host.api_url, TEST_TOKEN)
        v1 = app_files("1.0.0", n=10, size=2000)
        repo.publish("1.0.0", v1)
        first = export_releases(session, TEST_REPO, www, host.url)
        assert first.latest == "v1.0.0" and len(first.downloaded) == 3
        pointer = www / TEST_REPO / "releases" / "latest"
        assert pointer.read_bytes() == b"v1.0.0\n"

        with running_nginx(www, tmp_path / "nginx") as web:
            relay = CuttingRelay(int(web.url.rsplit(":", 1)[1]), cut_at=12000)
            try:
                state = new_device(tmp_path, mpy, SimpleNamespace(url=relay.url), repo)
                status = run(state, mpy)
                out = text(status)
                assert "APP v1.0.0 running" in out, out
                assert relay.cuts == 1 and "download: resuming pack at byte" in out, out
                packs = [r for r in web.requests() if PACK_ASSET in r[0]]
                assert packs and all(ranged.startswith("bytes=") for _, _, _, ranged in packs)
                assert {status for _, status, _, _ in packs} == {206}

                # v1.1.0 changes one file: the export adds only its assets, the device
                # fetches only that file's bytes with one Range request.
                v2 = dict(v1, **{"lib/m03.py": b"VALUE = 'changed'\n" + b"#" * 1981 + b"\n"})
                v2["main.py"] = v1["main.py"].replace(b"1.0.0", b"1.1.0")
                repo.publish("1.1.0", v2)
                second = export_releases(session, TEST_REPO, www, host.url)
                assert second.kept == 3 and all(d.startswith("v1.1.0/") for d in second.downloaded)
                assert pointer.read_bytes() == b"v1.1.0\n"
                since = len(web.requests())
                status = run(state, mpy)
                assert "APP v1.1.0 running" in text(status), text(status)
                ranges = [r for r in web.requests()[since:] if PACK_ASSET in r[0]]
                assert ranges and all(r[1] == 206 for r in ranges)
                assert sum(r[2] for r in ranges) < 2 * 2000 + 2 * 600

                # An idle check: one request, the pointer file, a few hundred bytes.
                since = len(web.requests())
                status = run(state, mpy)
                assert "app: v1.1.0 is installed, nothing new" in text(status), text(status)
                idle = web.requests()[since:]
                assert [(r[0].split()[1], r[1]) for r in idle] == [
                    (f"/{TEST_REPO}/releases/latest", 200)
                ]
                assert idle[0][2] <= 2048
            finally:
                relay.close()
