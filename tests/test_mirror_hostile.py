"""The pull-through mirror against an upstream that lies in ways no lcm host does: a
beta release that is another build when fetched again, a trickle, answers that are not
HTTP a client can use, a tag that is a path. The upstream is a genuine lcm host behind
a proxy that lies (tests/lyingproxy.py); releases are made by `lcm release publish`'s
code."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from publisher.host.mirror import STAGING
from publisher.release import web
from publisher.release.verify import Trust
from tests.hostserver import TEST_REPO, running_host
from tests.lyingproxy import answer, body_of, lying_proxy, trickle
from tests.test_host_mirror import Upstream, mirror_of, served

BETA = "v2.1.0-beta.1"


def test_a_beta_release_fetched_again_as_an_older_build_is_not_stored(tmp_path):
    """The full release's beta.tag is checked against the beta release's manifest (a newer
    sequence); the mirror then fetches that release again to store it, and the upstream
    now serves an older genuine build of the same tag, which a beta device on the full
    release refuses (a roll-back). Nothing is stored."""
    up = Upstream(tmp_path)
    with running_host(tmp_path / "a") as genuine, running_host(tmp_path / "b") as old:
        up.release(genuine, "v1.0.0", seq=100)
        up.release(genuine, "v2.0.0", seq=200)
        up.release(genuine, BETA, prerelease=True, seq=250)
        up.release(old, BETA, prerelease=True, seq=120)  # an older build of the same tag
        manifests = []

        def lie(handler, path, forward):
            if f"/releases/download/{BETA}/" not in path:
                return False
            if path.endswith("/manifest.lcm"):
                manifests.append(path)
            # Each refresh fetches the manifest twice (the pointer's check, then to store
            # it): the first time the genuine build, then the old one.
            source = genuine if len(manifests) % 2 == 1 else old
            status, headers, body = forward_to(source, path)
            answer(handler, status, headers, body)
            return True

        with mirror_behind(genuine, lie, up, tmp_path) as mirror:
            error = mirror.mirror.status[TEST_REPO].error
            assert error is not None and error.startswith("beta.tag: of v2.0.0 points at"), error
            assert "sequence is 120 when fetched again to be stored" in error
            assert "older than v2.0.0 (200)" in error
            assert served(mirror) == []


def test_an_upstream_that_trickles_is_cut_at_its_deadline_and_stop_is_prompt(tmp_path, monkeypatch):
    """A byte of the sector every half second, under the per-read timeout: the download is
    refused at its deadline (named), the mirror keeps what it had; a host stopped while a
    refresh trickles stops at once, and the refresh's staged files are gone."""
    monkeypatch.setattr(web, "SLACK_S", 2.0)
    up = Upstream(tmp_path)
    with running_host(tmp_path / "a") as genuine:
        up.release(genuine, "v1.0.0")
        slow = {"on": False}

        def lie(handler, path, forward):
            if not (slow["on"] and path.endswith("/v2.0.0/certs.sector")):
                return False
            trickle(handler, body_of(forward, path), 0.5)
            return True

        with mirror_behind(genuine, lie, up, tmp_path) as mirror:
            assert [t for t, _, _ in served(mirror)] == ["v1.0.0"]
            up.release(genuine, "v2.0.0")
            slow["on"] = True
            started = time.monotonic()
            mirror.mirror.refresh()
            took = time.monotonic() - started
            error = mirror.mirror.status[TEST_REPO].error or ""
            assert error.startswith("certs.sector: ") and "took longer than 3 s" in error
            assert took < 15, took  # 2 s and the sector's size at 4 KB/s, not 2 minutes
            assert [t for t, _, _ in served(mirror)] == ["v1.0.0"]

            monkeypatch.setattr(web, "SLACK_S", 600.0)
            mirror.mirror.refresh_now()
            time.sleep(1.5)  # the schedule's refresh is now in the trickle
            staging = mirror.store.root / "mirror" / STAGING
            assert any(staging.iterdir())
            started = time.monotonic()
        stopped = time.monotonic() - started
        assert stopped < 10, stopped
        assert not any(staging.iterdir())


@pytest.mark.parametrize(
    ("where", "lie", "named"),
    [
        ("latest", (302, {"Location": "/acme/widget/releases/tag/.."}), "invalid release tag"),
        ("latest", (302, {"Location": "http://[::1"}), "no client can use"),
        ("sector", (200, {"Content-Length": "\u00b2", "Connection": "close"}), "certs.sector: "),
        ("sector", (302, {"Location": "http://a..b/x"}), "certs.sector: "),
        ("sector", (302, {"Location": "http://127.0.0.1:1/\xff\xfe"}), "certs.sector: "),
    ],
    ids=["dot-dot-tag", "bad-redirect", "unicode-length", "bad-host", "non-utf8-location"],
)
def test_upstream_answers_a_client_cannot_use_are_refused_by_name(tmp_path, where, lie, named):
    up = Upstream(tmp_path)
    with running_host(tmp_path / "a") as genuine:
        up.release(genuine, "v1.0.0")
        suffix = "/releases/latest" if where == "latest" else "/certs.sector"

        def hostile(handler, path, forward):
            if not path.endswith(suffix):
                return False
            answer(handler, lie[0], lie[1], b"")
            return True

        with mirror_behind(genuine, hostile, up, tmp_path) as mirror:
            error = mirror.mirror.status[TEST_REPO].error or ""
            assert named in error and not error.startswith("internal error"), error
            assert served(mirror) == []


class FakeUrl:
    """What `mirror_of` reads of an upstream host: its URL."""

    def __init__(self, url: str) -> None:
        self.url = url


@contextmanager
def mirror_behind(genuine, lie, up: Upstream, tmp_path: Path) -> Iterator:
    """A mirror of the host `genuine` seen through a proxy that lies with `lie`, after its
    first refresh."""
    with lying_proxy(genuine.url, lie) as url:
        trust = Trust(roots=[up.keys.root.public_key])
        with mirror_of(FakeUrl(url), tmp_path, trust) as mirror:
            assert mirror.mirror is not None
            mirror.mirror.refresh()
            yield mirror


def forward_to(host, path: str):
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(host.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        headers = {k: v for k, v in resp.getheaders() if k.lower() in ("location",)}
        return resp.status, headers, body
    finally:
        conn.close()
