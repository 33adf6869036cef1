"""Debian's nginx serving a folder on a free loopback port, started and stopped by a test.

with running_nginx(root, tmp_path / "nginx") as web:
    web.url          # http://127.0.0.1:PORT
    web.requests()   # access log lines: (request line, status, bytes sent, Range header)
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.sysdeps import require

CONFIG = """\
{user}daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log;
events {{ worker_connections 64; }}
http {{
    log_format lcm '$request\\t$status\\t$bytes_sent\\t$http_range';
    access_log {prefix}/access.log lcm;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    default_type application/octet-stream;
    sendfile on;
    keepalive_timeout 30;
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
"""


@dataclass
class Nginx:
    url: str
    prefix: Path

    def requests(self) -> list[tuple[str, int, int, str]]:
        """Logged requests (nginx writes a line when the answer is done)."""
        log = self.prefix / "access.log"
        lines = log.read_text().splitlines() if log.exists() else []
        rows = []
        for line in lines:
            request, status, sent, ranged = line.split("\t")
            rows.append((request, int(status), int(sent), "" if ranged == "-" else ranged))
        return rows


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


@contextlib.contextmanager
def running_nginx(root: Path, prefix: Path) -> Iterator[Nginx]:
    """nginx serving `root` on 127.0.0.1 (a free port); its files live in `prefix`."""
    nginx = require("/usr/sbin/nginx", "nginx")
    prefix.mkdir(parents=True, exist_ok=True)
    # As root, workers would run as "nobody" and could not read a test's private folder.
    user = "user root root;\n" if os.geteuid() == 0 else ""
    for _attempt in range(3):  # another process may take the port between probe and bind
        port = _free_port()
        conf = prefix / "nginx.conf"
        conf.write_text(CONFIG.format(user=user, prefix=prefix, port=port, root=root))
        proc = subprocess.Popen(
            [nginx, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 10
        while proc.poll() is None and not _listening(port) and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.poll() is None and _listening(port):
            break
        proc.kill()
        _out, errors = proc.communicate()
    else:
        raise RuntimeError(f"nginx did not start: {errors}")
    try:
        yield Nginx(f"http://127.0.0.1:{port}", prefix)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
