"""Bounded downloads through browser URLs, the way a device fetches a release.

No API, no token: `/OWNER/REPO/releases/latest` for the tag (a 302), then
`/releases/download/TAG/NAME`, which redirects to the CDN. Every download has
a maximum length; a server that sends more is refused, not believed. Every
request has a deadline too (`DeadlineSession`): `SLACK_S` plus its maximum length
at `MIN_RATE`, so a server that trickles bytes is refused, not waited for.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

import requests
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from publisher.release.deadline import DeadlineSession
from publisher.release.errors import MissingAssetError, VerifyError

# Seconds without progress before a download is abandoned (slow-retrieval attack).
STALL_TIMEOUT_S = 30
# A whole request: SLACK_S, plus its maximum length at MIN_RATE bytes a second.
SLACK_S = 30.0
MIN_RATE = 4096
CHUNK = 64 * 1024
USER_AGENT = "lcm-release-verify"


def _der_to_pem(der: bytes) -> bytes:
    try:
        return x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM)
    except ValueError as exc:
        raise VerifyError("--certs", f"holds a CA certificate that does not parse: {exc}") from None


class Browser:
    """A keep-alive HTTP client for browser URLs; errors name the asset being fetched."""

    def __init__(self, ca_certs: list[bytes] | None = None, ca_file: str | None = None) -> None:
        """TLS anchors: `ca_file` (PEM), else `ca_certs` (DER, as a cert sector holds them),
        else the system's."""
        self.http = DeadlineSession()
        self.http.headers["User-Agent"] = USER_AGENT
        self.requests = 0
        self._bundle: tempfile.TemporaryDirectory[str] | None = None
        # Passed with every request: a session-wide setting would lose to REQUESTS_CA_BUNDLE.
        self.verify: str | None = None
        if ca_file is not None:
            if not Path(ca_file).is_file():  # else ignored until an https URL needs it
                raise VerifyError("--ca-file", f"{ca_file}: no such file")
            self.verify = ca_file
        elif ca_certs:
            self._bundle = tempfile.TemporaryDirectory(prefix="lcm-verify-")
            path = Path(self._bundle.name) / "cas.pem"
            path.write_bytes(b"".join(_der_to_pem(der) for der in ca_certs))
            self.verify = str(path)

    def close(self) -> None:
        self.http.close()
        if self._bundle is not None:
            self._bundle.cleanup()

    def abort(self) -> None:
        """Cut the request in progress (from another thread): it fails at once."""
        self.http.abort()

    @contextlib.contextmanager
    def _request(self, url: str, size: int, what: str, failed: str = "") -> Iterator[None]:
        """One request of at most `size` bytes, held to its deadline. A server's
        unusable answer (a Location that is no URL, non-ASCII in a header) is a
        VerifyError naming `what`, as a refused one is, and `failed` says why."""
        seconds = SLACK_S + size / MIN_RATE
        if self.http.aborted:
            raise VerifyError(what, f"{url}: not fetched, the download was stopped")
        try:
            with self.http.deadline(seconds):
                yield
                # A cut socket reads as the end of the stream: a body without a length
                # would pass for whole.
                self._check_cut(url, seconds, what)
        except (requests.RequestException, ValueError) as exc:
            self._check_cut(url, seconds, what)
            if isinstance(exc, ValueError):  # requests' InvalidURL and UnicodeError too
                raise VerifyError(what, f"{url} answered what no client can use: {exc}") from None
            raise VerifyError(what, f"{failed or f'download from {url} failed'}: {exc}") from None

    def _check_cut(self, url: str, seconds: float, what: str) -> None:
        if self.http.aborted:
            raise VerifyError(what, f"{url}: cut, the download was stopped")
        if self.http.expired:
            raise VerifyError(what, f"{url} took longer than {seconds:.0f} s: too slow, refused")

    def location(self, url: str, what: str, pointer_max: int = 0) -> str | bytes | None:
        """The Location of a redirect at `url` (not followed). With `pointer_max`, a 200
        answer is a static host's pointer file (`lcm release export`, which cannot
        redirect): its body, at most `pointer_max` bytes, as the device reads it."""
        self.requests += 1
        hint = ""
        if url.startswith("https://github.com/"):
            hint = " (another host than GitHub: --web-url)"
        with self._request(url, pointer_max, what, f"cannot reach {url}{hint}"), self.http.get(
            url, allow_redirects=False, stream=True, timeout=STALL_TIMEOUT_S,
            verify=self.verify,
        ) as resp:  # fmt: skip
            if resp.status_code in (301, 302, 303, 307, 308):
                return resp.headers.get("Location")
            if resp.status_code == 200 and pointer_max:
                return b"".join(_bounded(resp, pointer_max, what))
            if resp.status_code == 404:
                raise VerifyError(what, f"not found at {url} (404): no such repository?")
            raise VerifyError(what, f"{url} answered {resp.status_code}, not a redirect")

    def stream(self, url: str, max_size: int, what: str) -> Iterator[bytes]:
        """The body at `url` in chunks; refuses more than `max_size` bytes."""
        self.requests += 1
        with (
            self._request(url, max_size, what),
            self.http.get(url, stream=True, timeout=STALL_TIMEOUT_S, verify=self.verify) as resp,
        ):
            if resp.status_code == 404:
                raise MissingAssetError(what, f"missing from the release (404 at {url})")
            if resp.status_code != 200:
                raise VerifyError(what, f"download failed: {resp.status_code} at {url}")
            yield from _bounded(resp, max_size, what)

    def ranged(self, url: str, first: int, last: int, what: str) -> tuple[int, str, bytes, str]:
        """GET `url` with `Range: bytes=FIRST-LAST`, as a device reads the pack: the status,
        Content-Range, at most one byte more of the body than was asked, and the URL that
        answered (after redirects)."""
        self.requests += 1
        want = last - first + 1
        with self._request(url, want, what), self.http.get(
            url, headers={"Range": f"bytes={first}-{last}"}, stream=True,
            timeout=STALL_TIMEOUT_S, verify=self.verify,
        ) as resp:  # fmt: skip
            body = b""
            for chunk in resp.iter_content(CHUNK):
                body += chunk
                if len(body) > want:
                    break
            return (
                resp.status_code,
                resp.headers.get("Content-Range", ""),
                body[: want + 1],
                resp.url,
            )

    def fetch(self, url: str, max_size: int, what: str) -> bytes:
        return b"".join(self.stream(url, max_size, what))


def _bounded(resp: requests.Response, max_size: int, what: str) -> Iterator[bytes]:
    """The body of `resp` in chunks; VerifyError past `max_size` bytes (declared or read)."""
    declared = resp.headers.get("Content-Length")
    if (
        declared is not None
        and declared.isascii()
        and declared.isdigit()
        and int(declared) > max_size
    ):
        raise VerifyError(what, f"is {declared} bytes, more than the {max_size} allowed")
    got = 0
    for chunk in resp.iter_content(CHUNK):
        got += len(chunk)
        if got > max_size:
            raise VerifyError(what, f"more than the {max_size} bytes allowed")
        yield chunk
