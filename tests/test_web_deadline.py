"""The publisher's downloads (`lcm release verify`, a mirror's refresh, `lcm release
export`) against a server that trickles: each is cut at its deadline, in every way a
server can send a body, through a proxy too; and a stopped one stays stopped."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler

import pytest

from publisher.release import web
from publisher.release.errors import VerifyError
from tests.lyingproxy import trickle
from tests.threadserver import serving

BODY = b"v1.2.10-trickled\n"


class Trickle(BaseHTTPRequestHandler):
    """A byte every 0.3 s; without a length the body ends when the connection does."""

    with_length = True

    def do_GET(self) -> None:
        trickle(self, BODY, 0.3, self.with_length)


class NoLength(Trickle):
    with_length = False


@pytest.fixture(autouse=True)
def short_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web, "SLACK_S", 1.0)


@pytest.mark.parametrize("handler", [Trickle, NoLength], ids=["length", "no-length"])
def test_a_trickled_body_is_cut_at_its_deadline_never_passed_off_as_whole(handler) -> None:
    """Without a length, the cut socket read as the body's end: 3 of 17 bytes came back
    as the whole pointer (`v1.2.10` could read as `v1.2.1`)."""
    browser = web.Browser()
    with serving(handler) as url:
        started = time.monotonic()
        with pytest.raises(VerifyError, match=r"took longer than 1 s: too slow, refused"):
            browser.fetch(f"{url}/pointer", 64, "latest")
    assert time.monotonic() - started < 4


def test_the_deadline_holds_through_a_proxy_from_the_environment(monkeypatch) -> None:
    """requests takes HTTP_PROXY from the environment; its connections were not the
    session's, and no deadline applied."""
    with serving(Trickle) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        browser = web.Browser()
        started = time.monotonic()
        with pytest.raises(VerifyError, match="too slow, refused"):
            browser.fetch("http://upstream.example/pointer", 64, "latest")
    assert time.monotonic() - started < 4


def test_a_stopped_browser_cuts_the_download_in_progress_and_every_later_one() -> None:
    browser = web.Browser()
    with serving(Trickle) as url:
        threading.Timer(0.5, browser.abort).start()
        with pytest.raises(VerifyError, match="cut, the download was stopped"):
            browser.fetch(f"{url}/a", 64, "certs.sector")
        # Between two requests (a signature being checked): the next one is not made.
        with pytest.raises(VerifyError, match="not fetched, the download was stopped"):
            browser.fetch(f"{url}/b", 64, "manifest.lcm")
