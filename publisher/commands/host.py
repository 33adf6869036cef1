"""`lcm host`: serve a GitHub-compatible release host (REST API, uploads, browser URLs)."""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path
from typing import Annotated

import typer

from cert_sector.errors import TrustError
from publisher import sector_format as sf
from publisher.certs import read_sector
from publisher.console import command_edge, err, out
from publisher.errors import PublisherError
from publisher.host.limits import ConnectionLimits
from publisher.host.mirror import DEFAULT_INTERVAL, MirrorConfig, MirrorSpec
from publisher.host.server import HostServer
from publisher.printable import printable
from publisher.release.verify import Trust
from publisher.signing import load_trusted_key


def mirror_spec(text: str) -> MirrorSpec:
    """`OWNER/REPO=PINS`: PINS is a trusted cert sector, or root public keys joined by ","."""
    repo, sep, pins = text.partition("=")
    if not sep or not pins:
        raise PublisherError(
            f"--mirror {text!r}: give OWNER/REPO=PINS, PINS being the repo's trusted cert "
            "sector or its root public keys (comma-separated), as a device pins them"
        )
    paths = [Path(p) for p in pins.split(",")]
    if len(paths) == 1:
        data = read_sector(paths[0])
        try:
            sf.parse_sector(data)
        except TrustError:
            pass  # not a sector: a public key file
        else:
            return MirrorSpec(repo, Trust(sector=data))
    return MirrorSpec(repo, Trust(roots=[load_trusted_key(p) for p in paths]))


@command_edge
def host(
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="TCP port (0 = any free one).")
    ] = 8000,
    bind: Annotated[
        str, typer.Option("--bind", help="Address to listen on (0.0.0.0 for a LAN fleet).")
    ] = "127.0.0.1",
    data: Annotated[
        Path, typer.Option("--data", help="Folder for releases and assets (kept across restarts).")
    ] = Path("lcm-host-data"),
    token_env: Annotated[
        str,
        typer.Option("--token-env", help="Env var holding the token that allows writes."),
    ] = "LCM_HOST_TOKEN",
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", help="PEM certificate chain: serve HTTPS.")
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option("--tls-key", help="PEM private key of --tls-cert.")
    ] = None,
    rate_limit: Annotated[
        int,
        typer.Option("--rate-limit", min=0, help="Anonymous API requests per hour per client IP."),
    ] = 60,
    max_connections_per_ip: Annotated[
        int,
        typer.Option(
            "--max-connections-per-ip",
            min=1,
            help="Connections open at once from one client address; more are answered 503.",
        ),
    ] = ConnectionLimits.per_ip,
    repo: Annotated[
        list[str] | None,
        typer.Option("--repo", help="OWNER/NAME to serve (created if new); repeatable."),
    ] = None,
    mirror: Annotated[
        list[str] | None,
        typer.Option(
            "--mirror",
            help="OWNER/REPO=PINS: mirror the repo's verified releases from --upstream "
            "(PINS: its trusted cert sector, or root public keys); repeatable.",
        ),
    ] = None,
    upstream: Annotated[
        str, typer.Option("--upstream", help="Browser base URL of the mirrored host.")
    ] = "https://github.com",
    upstream_ca: Annotated[
        Path | None,
        typer.Option("--upstream-ca", help="PEM CAs for an HTTPS upstream (default: system's)."),
    ] = None,
    mirror_interval: Annotated[
        float,
        typer.Option("--mirror-interval", help="Seconds between refreshes (SIGHUP: at once)."),
    ] = DEFAULT_INTERVAL,
    public_url: Annotated[
        str | None,
        typer.Option(
            "--public-url",
            envvar="LCM_HOST_PUBLIC_URL",
            help="Base of the URLs handed out (scheme://name[:port]), e.g. behind a proxy.",
        ),
    ] = None,
) -> None:
    """Serve releases the way GitHub does, for PyGithub and for devices, until Ctrl-C."""
    if (tls_cert is None) != (tls_key is None):
        raise PublisherError("give both --tls-cert and --tls-key, or neither")
    token = os.environ.get(token_env) or None
    tls = (tls_cert, tls_key) if tls_cert is not None and tls_key is not None else None
    mirror_config = None
    if mirror:
        mirror_config = MirrorConfig(
            upstream,
            [mirror_spec(text) for text in mirror],
            interval=mirror_interval,
            ca_file=str(upstream_ca) if upstream_ca is not None else None,
        )
    _log_to_stderr()
    server = HostServer(
        data,
        bind=bind,
        port=port,
        token=token,
        rate_limit=rate_limit,
        tls=tls,
        repos=repo or [],
        public_url=public_url,
        mirror=mirror_config,
        limits=ConnectionLimits(per_ip=max_connections_per_ip),
    )
    if token is None:
        err.print(f"warning: ${token_env} is not set: the host is read-only (writes answer 401)")
    repos = ", ".join(sorted(server.store.repos)) or "none (add with --repo OWNER/NAME)"
    out.print(f"lcm host serving {data} at {server.listen_url}", highlight=False)
    if server.public_url is not None:
        out.print(f"  public URL    {server.public_url}", highlight=False)
    out.print(f"  API base URL  {server.api_url}", highlight=False)
    out.print(f"  repos         {repos}", highlight=False)
    if server.mirror is not None:
        mirrored = ", ".join(spec.repo for spec in server.mirror.specs)
        out.print(
            f"  mirroring     {mirrored} from {upstream} every {mirror_interval:g} s "
            f"(kill -HUP {os.getpid()}: at once)",
            highlight=False,
        )
        refresh = server.mirror.refresh_now
        signal.signal(signal.SIGHUP, lambda _sig, _frame: refresh())
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        out.print("stopped")
    finally:
        server.shutdown()


class _LogFormatter(logging.Formatter):
    """One line per record, UTC time first; text an upstream sent (a tag, an error
    message) is shown with its control characters escaped."""

    def converter(self, secs: float | None) -> time.struct_time:
        return time.gmtime(secs)

    def formatMessage(self, record: logging.LogRecord) -> str:
        return printable(super().formatMessage(record))


def _log_to_stderr() -> None:
    """The host's own log on stderr: what the mirror stored or refused, and internal
    errors (with their traceback). The per-request log (debug) stays off."""
    handler = logging.StreamHandler()
    handler.setFormatter(_LogFormatter("%(asctime)s %(message)s", "%Y-%m-%dT%H:%M:%SZ"))
    logger = logging.getLogger("lcm.host")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
