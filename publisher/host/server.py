"""Wiring: the threaded HTTP/1.1 server, TLS, and `start_host` for tests and the CLI."""

from __future__ import annotations

import contextlib
import itertools
import logging
import re
import socket
import ssl
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from publisher.host.errors import HostError
from publisher.host.faults import RequestRecord
from publisher.host.handler import HostHandler
from publisher.host.limits import DEFAULT_LIMITS, ConnectionLimits
from publisher.host.mirror import Mirror, MirrorConfig
from publisher.host.names import is_repo_name
from publisher.host.ratelimit import RateLimiter
from publisher.host.state import HostState
from publisher.host.store import Store

log = logging.getLogger("lcm.host")

_HOSTNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.\-]{0,252}$")
_HOST_HEADER = re.compile(
    r"^(?P<name>[A-Za-z0-9.\-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::(?P<port>[0-9]{1,5}))?$"
)
_PUBLIC_URL = re.compile(
    r"^(https?)://([A-Za-z0-9.\-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(:[0-9]{1,5})?/?$"
)


def check_public_url(url: str) -> str:
    """`scheme://name[:port]` (no path): the base of the URLs this host hands out."""
    if not _PUBLIC_URL.match(url):
        raise HostError(
            f"not a public URL: {url!r} (expected http://NAME[:PORT] or https://NAME[:PORT])"
        )
    return url.rstrip("/")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128
    host: HostServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that breaks a TLS handshake or hangs up is not our failure.
        log.debug("connection from %s ended with an error", client_address, exc_info=True)


class _Server6(_Server):
    address_family = socket.AF_INET6


# The request log is for tests and benchmarks (requests per install, handshakes): the
# last MAX_RECORDS requests at most, each path and query cut to MAX_RECORDED_CHARS, so that a
# long-running host's memory does not grow with every request it ever answered.
MAX_RECORDS = 4096
MAX_RECORDED_CHARS = 2048


class HostServer:
    """A running host. `requests`, `inject_fault` and `expire_signed_urls` are for tests."""

    def __init__(
        self,
        data_dir: Path,
        *,
        bind: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        rate_limit: int = 60,
        tls: tuple[str | Path, str | Path] | None = None,
        repos: tuple[str, ...] | list[str] = (),
        asset_host: str | None = None,
        public_url: str | None = None,
        mirror: MirrorConfig | None = None,
        limits: ConnectionLimits = DEFAULT_LIMITS,
    ) -> None:
        # Arguments first: a refusal after the data folder is locked (or the port bound)
        # left them held until the garbage collector ran, and a retry found "another host".
        if rate_limit < 0:
            raise HostError("--rate-limit must be 0 or more")
        if asset_host is not None and not _HOSTNAME.match(asset_host):
            raise HostError(f"not a host name: {asset_host!r}")
        if limits.per_ip < 1:
            raise HostError("--max-connections-per-ip must be 1 or more")
        self.public_url = check_public_url(public_url) if public_url is not None else None
        self.tls_context = _tls_context(tls) if tls else None
        self.state = HostState(Store(Path(data_dir)), token, RateLimiter(rate_limit))
        try:
            for full_name in repos:
                self.create_repo(full_name)
            self.mirror = Mirror(self.state.store, mirror) if mirror is not None else None
            server_class = _Server6 if ":" in bind else _Server
            try:
                self._httpd = server_class((bind, port), HostHandler)
            except OSError as exc:
                raise HostError(f"cannot listen on {bind}:{port}: {exc.strerror or exc}") from None
        except BaseException:
            self.state.store.close()
            raise
        self.limits = limits
        self._httpd.host = self
        self.bind = bind
        self.asset_host = asset_host
        self.port: int = self._httpd.server_address[1]
        self.requests: list[RequestRecord] = []
        self._ids = itertools.count(1)
        self._open: dict[int, socket.socket] = {}
        self._per_ip: dict[str, int] = {}
        self._ip_of: dict[int, str] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # -- addresses ------------------------------------------------------------

    @property
    def authority(self) -> str:
        host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(self.bind, self.bind)
        host = f"[{host}]" if ":" in host else host
        return f"{host}:{self.port}"

    @property
    def scheme(self) -> str:
        return "https" if self.tls_context is not None else "http"

    @property
    def listen_url(self) -> str:
        """The address and port this host listens on, as a URL."""
        return f"{self.scheme}://{self.authority}"

    @property
    def url(self) -> str:
        """The base URL clients use: the public URL, else the listen address and port."""
        return self.public_url or self.listen_url

    def base_url_for(self, host_header: str | None) -> str:
        """The base of every absolute URL in an answer to a request with this `Host`.

        The configured public URL when there is one (a proxy, NAT or DNS name in
        front); else the name the client used with the port it used, and when its
        `Host` has no port (MicroPython's `requests` sends none), the port this host
        listens on, never the scheme's default. A `Host` that is not `name[:port]`
        (a port from 1 to 65535) is not echoed: the listen address then.
        """
        if self.public_url is not None:
            return self.public_url
        m = _HOST_HEADER.match(host_header or "")
        if m is None or not 0 < int(m.group("port") or self.port) < 65536:
            return self.listen_url
        return f"{self.scheme}://{m.group('name')}:{m.group('port') or self.port}"

    def asset_base_url(self) -> str:
        """Where signed asset URLs point: another name for this host, or "" (the base URL)."""
        if self.asset_host is None:
            return ""
        return f"{self.scheme}://{self.asset_host}:{self.port}"

    @property
    def api_url(self) -> str:
        return self.url + "/api/v3"

    @property
    def store(self) -> Store:
        return self.state.store

    # -- running --------------------------------------------------------------

    def start(self) -> HostServer:
        self.start_mirror()
        # A short poll interval only makes shutdown() quick (tests start many hosts).
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"lcm-host-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.start_mirror()
        self._httpd.serve_forever()

    def start_mirror(self) -> None:
        if self.mirror is not None:
            self.mirror.start()

    def shutdown(self) -> None:
        """Stop accepting (and mirroring), wake stalled handlers, close every connection."""
        self.state.stopping.set()
        if self.mirror is not None:
            self.mirror.stop()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()
        self.state.store.close()
        with self._lock:
            sockets = list(self._open.values())
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> HostServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # -- repos ----------------------------------------------------------------

    def create_repo(self, full_name: str) -> None:
        """Make OWNER/NAME exist (idempotent): GitHub repos are not created by the API here."""
        if not is_repo_name(full_name):
            raise HostError(f"not a repository name: {full_name!r} (expected OWNER/NAME)")
        self.state.store.ensure_repo(full_name)

    # -- test instrumentation -------------------------------------------------

    def inject_fault(self, kind: str, count: int = 1) -> None:
        """Make the next `count` matching requests fail; kinds in `faults.FAULT_KINDS`."""
        self.state.faults.inject(kind, count)

    def expire_signed_urls(self) -> None:
        self.state.signer.expire_all()

    def clear_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    def _record(self, record: RequestRecord) -> None:
        record.path = record.path[:MAX_RECORDED_CHARS]
        record.query = record.query[:MAX_RECORDED_CHARS]
        with self._lock:
            if len(self.requests) >= MAX_RECORDS:
                del self.requests[: MAX_RECORDS // 2]  # the older half, not one per request
            self.requests.append(record)

    def _new_connection(self, sock: socket.socket, ip: str) -> tuple[int, int]:
        """The connection's id, and how many connections its address has over `limits.per_ip`
        with it (above 0: it is refused)."""
        with self._lock:
            conn_id = next(self._ids)
            self._open[conn_id] = sock
            self._ip_of[conn_id] = ip
            self._per_ip[ip] = self._per_ip.get(ip, 0) + 1
            return conn_id, self._per_ip[ip] - self.limits.per_ip

    def _track_socket(self, conn_id: int, sock: socket.socket) -> None:
        with self._lock:
            self._open[conn_id] = sock

    def _forget_connection(self, conn_id: int) -> None:
        with self._lock:
            self._open.pop(conn_id, None)
            ip = self._ip_of.pop(conn_id, None)
            if ip is not None:
                self._per_ip[ip] -= 1
                if not self._per_ip[ip]:
                    del self._per_ip[ip]


def _tls_context(tls: tuple[str | Path, str | Path]) -> ssl.SSLContext:
    certfile, keyfile = tls
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(str(certfile), str(keyfile))
    except (OSError, ssl.SSLError) as exc:
        raise HostError(f"cannot load TLS certificate {certfile} / key {keyfile}: {exc}") from None
    return context


def start_host(
    data_dir: Path | str,
    *,
    bind: str = "127.0.0.1",
    port: int = 0,
    token: str | None = None,
    rate_limit: int = 60,
    tls: tuple[str | Path, str | Path] | None = None,
    repos: tuple[str, ...] | list[str] = (),
    asset_host: str | None = None,
    public_url: str | None = None,
    mirror: MirrorConfig | None = None,
    limits: ConnectionLimits = DEFAULT_LIMITS,
) -> HostServer:
    """Start a host serving `data_dir` in a background thread; `.shutdown()` stops it.

    `repos` are created if missing (OWNER/NAME). `asset_host` (e.g. "localhost"
    when clients use 127.0.0.1) makes signed asset URLs name another host, as
    GitHub's CDN does, so clients must follow a cross-host redirect (with SNI).
    `public_url` (`scheme://name[:port]`) is the base of every URL handed out.
    `mirror` makes it a pull-through mirror of an upstream's repos (`mirror.py`).
    `limits` bounds what one client may hold (`limits.py`).
    """
    host = HostServer(
        Path(data_dir),
        bind=bind,
        port=port,
        token=token,
        rate_limit=rate_limit,
        tls=tls,
        repos=repos,
        asset_host=asset_host,
        public_url=public_url,
        mirror=mirror,
        limits=limits,
    )
    return host.start()
