"""Test helpers around `lcm host`: a running host on loopback and a PyGithub client for it.

with running_host(tmp_path) as host:            # repo "acme/widget" exists
    gh = github_client(host)                    # token "test-token"
    repo = gh.get_repo("acme/widget")
    ...
    host.requests        # RequestRecord(method, path, query, status, bytes_sent, connection_id)
    host.inject_fault("status502", 3)   # also drop_upload, drop_download, stall_download
    host.expire_signed_urls()
    host.create_repo("other/repo")
"""

from __future__ import annotations

import contextlib
import http.client
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from github import Auth, Github

from publisher.host.server import HostServer, start_host

TEST_TOKEN = "test-token"
TEST_REPO = "acme/widget"


@contextlib.contextmanager
def running_host(
    tmp_path: Path,
    token: str | None = TEST_TOKEN,
    repos: tuple[str, ...] = (TEST_REPO,),
    **kw: Any,
) -> Iterator[HostServer]:
    """A host on 127.0.0.1 (free port) storing under `tmp_path/host-data`; stopped on exit.

    Extra keywords go to `start_host` (rate_limit, tls=(certfile, keyfile), data_dir=...).
    """
    data_dir = kw.pop("data_dir", Path(tmp_path) / "host-data")
    host = start_host(data_dir, token=token, repos=repos, **kw)
    try:
        yield host
    finally:
        host.shutdown()


def signed_url(download_url: str) -> str:
    """Where the host's browser download URL redirects: the asset's signed URL (a plain GET,
    not followed), as a device resolves it."""
    parts = urlsplit(download_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port)
    try:
        conn.request("GET", parts.path)
        location = conn.getresponse().getheader("Location")
    finally:
        conn.close()
    assert location, f"{download_url} does not redirect"
    return location


def github_client(host: HostServer, token: str | None = TEST_TOKEN, **kw: Any) -> Github:
    """PyGithub against the host, with its default throttling off (tests make many writes)."""
    auth = Auth.Token(token) if token is not None else None
    kw.setdefault("seconds_between_requests", None)
    kw.setdefault("seconds_between_writes", None)
    return Github(base_url=host.api_url, auth=auth, **kw)
