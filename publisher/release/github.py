"""The PyGithub session `lcm release` works through: retries, drafts, idempotent assets.

PyGithub's own urllib3 retry is switched off: it would re-send a POST whose
body stream was already consumed. Instead every step here is idempotent and
retried as a whole (`Session.call`): before an upload is retried, the
release's assets are listed again, so a partial or lost-response upload is
found and replaced or kept, never duplicated.

Retried: 5xx answers, GitHub's secondary rate limits (403 with `Retry-After`
or "secondary rate limit", any 429 but the primary limit's), and dropped
connections, with exponential back-off and full jitter; a 404 only for what
this run created or listed a moment ago (`fresh`: GitHub is eventually
consistent), a few times. Not retried: 401 (wrong token), other 404s, 422, the
primary rate limit (which resets only on the hour), and a host name that does
not resolve (a name that does not resolve now will not in a minute).
"""

from __future__ import annotations

import hashlib
import io
import random
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import urlsplit

import requests
import urllib3
from github import Auth, Github, GithubException
from github.GitRelease import GitRelease
from github.GitReleaseAsset import GitReleaseAsset
from github.Repository import Repository

from publisher.release.errors import HostError
from publisher.urls import is_http_url

DEFAULT_API_URL = "https://api.github.com"
API_URL_ENV = "LCM_GITHUB_API"
DEFAULT_TOKEN_ENV = "GITHUB_TOKEN"
# Seconds before PyGithub gives up on one request (a stalled host).
REQUEST_TIMEOUT_S = 60
# Attempts at a step that answers 404 for something this run created or listed a
# moment ago: another replica of the host may not know it yet.
NOT_FOUND_ATTEMPTS = 4

T = TypeVar("T")
ProgressCallback = Callable[[str, int, int], None]


@dataclass
class RetryPolicy:
    """How often and how patiently a failed step is retried."""

    attempts: int = 8
    base_delay: float = 1.0
    max_delay: float = 60.0
    sleep: Callable[[float], None] = field(default=time.sleep)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_delay)
        # Full jitter: spreads the retries of many CI jobs hitting the same outage.
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))


def web_url_for(api_url: str) -> str:
    """The browser URL of a host from its API URL (GitHub, Enterprise or `lcm host`)."""
    url = api_url.rstrip("/")
    if url.endswith("/api/v3"):
        return url[: -len("/api/v3")]
    if url in ("https://api.github.com", "http://api.github.com"):
        return "https://github.com"
    raise HostError(f"cannot derive the web URL from --api-url {api_url}; pass --web-url")


def check_api_url(api_url: str) -> str:
    """The REST API base without its trailing '/'; HostError unless http(s) with a host."""
    if not is_http_url(api_url):
        raise HostError(
            f"--api-url {api_url!r} is not an http:// or https:// URL with a host (and a port "
            f"from 1 to 65535): e.g. https://api.github.com or http://HOST:PORT/api/v3 (or "
            f"${API_URL_ENV})"
        )
    return api_url.rstrip("/")


def _header(exc: GithubException, name: str) -> str | None:
    headers = {k.lower(): v for k, v in (exc.headers or {}).items()}
    return headers.get(name)


def _retry_after(exc: GithubException) -> float | None:
    value = _header(exc, "retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _message(exc: GithubException) -> str:
    data = exc.data
    if isinstance(data, dict) and data.get("message"):
        return str(data["message"])
    return exc.message or str(data)[:200]


def _is_secondary_rate_limit(exc: GithubException) -> bool:
    if exc.status not in (403, 429):
        return False
    if exc.status == 429 and _header(exc, "x-ratelimit-remaining") != "0":
        # A 429 is a rate limit whatever else it says; GitHub's advice when it names
        # no wait is to wait and retry (the back-off policy's waits).
        return True
    return _retry_after(exc) is not None or "secondary rate limit" in _message(exc).lower()


def _is_not_found(exc: BaseException) -> bool:
    return isinstance(exc, GithubException) and exc.status == 404


def _is_name_taken(exc: BaseException) -> bool:
    """GitHub's 422 for an asset name another upload took first."""
    if not isinstance(exc, GithubException) or exc.status != 422:
        return False
    errors = exc.data.get("errors") if isinstance(exc.data, dict) else None
    return any(isinstance(e, dict) and e.get("code") == "already_exists" for e in errors or [])


class PartialUploadError(Exception):
    """The host acknowledged fewer bytes than were sent; the next attempt replaces it."""


class AssetTakenError(HostError):
    """Another upload took the asset's name between this run's listing and its upload:
    another run is writing to the same release."""


def _reason(exc: BaseException) -> str:
    """A failure in a few words, for a retry notice: the HTTP status, or the socket error
    (requests nests it in a long message), else the exception's class."""
    if isinstance(exc, GithubException):
        return f"{exc.status} {_message(exc)}"
    found = re.search(r"\[Errno -?\d+\][^'\")]*", str(exc))
    return found.group(0).strip() if found else type(exc).__name__


def _unresolved_host(exc: BaseException) -> str | None:
    """The host name whose resolution failed for good (a socket.gaierror other than a
    temporary failure, nested by requests in urllib3's errors): "" when the error does not
    say which; None for any other error."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    host = ""
    while todo:
        cur = todo.pop()
        if id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, urllib3.exceptions.NewConnectionError):
            host = str(getattr(cur.conn, "host", "") or host)
        if isinstance(cur, socket.gaierror):
            # "Temporary failure in name resolution" is worth the retries; an unknown name not.
            return None if cur.errno == socket.EAI_AGAIN else host
        nested = [cur.__cause__, cur.__context__, getattr(cur, "reason", None), *cur.args]
        todo += [e for e in nested if isinstance(e, BaseException)]
    return None


def _is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, PartialUploadError):
        return True
    if isinstance(exc, GithubException):
        return exc.status >= 500 or _is_secondary_rate_limit(exc)
    return isinstance(exc, requests.exceptions.RequestException | ConnectionError | TimeoutError)


class _ProgressReader(io.BytesIO):
    """An upload body that reports how many bytes the HTTP client has read."""

    def __init__(self, data: bytes, name: str, progress: ProgressCallback | None) -> None:
        super().__init__(data)
        self._name = name
        self._total = len(data)
        self._progress = progress

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        if self._progress is not None:
            self._progress(self._name, self.tell(), self._total)
        return chunk


def asset_matches(asset: GitReleaseAsset, data: bytes, fetch: Callable[[], bytes]) -> bool:
    """Whether an uploaded asset holds exactly `data` (host digest when given, else bytes)."""
    if asset.state != "uploaded" or asset.size != len(data):
        return False
    digest = asset.digest
    if digest:
        algorithm, _, value = digest.partition(":")
        if algorithm == "sha256":
            return value.lower() == hashlib.sha256(data).hexdigest()
    return fetch() == data


def fetcher(session: Session, asset: GitReleaseAsset, size: int) -> Callable[[], bytes]:
    """Downloads `asset` (at most `size` bytes) when called: the fallback of `asset_matches`."""
    return lambda: session.download(asset, size)


class Session:
    """One PyGithub connection plus the retry policy; raises HostError only."""

    def __init__(
        self,
        api_url: str,
        token: str | None,
        *,
        token_env: str = DEFAULT_TOKEN_ENV,
        retry: RetryPolicy | None = None,
        on_retry: Callable[[str], None] | None = None,
    ) -> None:
        self.api_url = check_api_url(api_url)
        self.token_env = token_env
        self.retry = retry or RetryPolicy()
        # Told of each retry before its wait (the command prints it): a host that does not
        # answer should not look like a command that hangs.
        self.on_retry = on_retry
        self.gh = Github(
            base_url=self.api_url,
            auth=Auth.Token(token) if token else None,
            timeout=REQUEST_TIMEOUT_S,
            retry=None,
            seconds_between_requests=None,
            seconds_between_writes=None,
        )
        self.retries = 0

    def call(self, what: str, step: Callable[[], T], fresh: bool = False) -> T:
        """Run the idempotent `step`, retrying transient failures; `what` names it in errors.

        `fresh`: the step works on something this run created or listed a moment ago, so
        a 404 is the host lagging (GitHub is eventually consistent) and is retried too.
        """
        attempt = 0
        while True:
            try:
                return step()
            except HostError:
                raise
            except Exception as exc:
                unresolved = _unresolved_host(exc)
                if unresolved is not None:
                    raise self.unresolved(what, unresolved, exc) from None
                limit = self.retry.attempts
                if fresh and _is_not_found(exc):
                    limit = min(NOT_FOUND_ATTEMPTS, limit)
                    if attempt + 1 >= limit:
                        raise HostError(
                            f"{what}: {_reason(exc)} after {attempt + 1} attempts, for what "
                            "this run created or listed a moment ago (the host lagging, or "
                            "another run deleted it); re-run"
                        ) from None
                elif not _is_retryable(exc) or attempt + 1 >= limit:
                    raise self.explain(what, exc) from None
                wait = self.retry.delay(
                    attempt, _retry_after(exc) if isinstance(exc, GithubException) else None
                )
                attempt += 1
                self.retries += 1
                if self.on_retry is not None:
                    self.on_retry(
                        f"{what}: {_reason(exc)}; attempt {attempt + 1} of {limit} in {wait:.1f} s"
                    )
                self.retry.sleep(wait)

    def unresolved(self, what: str, host: str, exc: BaseException) -> HostError:
        """A host name that does not resolve: said at once, not retried."""
        host = host or urlsplit(self.api_url).hostname or self.api_url
        return HostError(
            f"{what}: cannot resolve the host name {host} ({_reason(exc)}); not retried. "
            f"Check the name and this machine's DNS, or point --api-url (or ${API_URL_ENV}) "
            f"at your host (now {self.api_url})"
        )

    def explain(self, what: str, exc: BaseException) -> HostError:
        """A HostError saying what failed and why, in the user's terms (never the token)."""
        if isinstance(exc, GithubException):
            status, message = exc.status, _message(exc)
            if status == 401:
                return HostError(
                    f"{what}: the host rejected the token in ${self.token_env} "
                    f"(401 {message}); check that it is set and still valid"
                )
            headers = {k.lower(): v for k, v in (exc.headers or {}).items()}
            if status in (403, 429) and headers.get("x-ratelimit-remaining") == "0":
                reset = headers.get("x-ratelimit-reset", "")
                when = (
                    time.strftime("%H:%M:%S UTC", time.gmtime(int(reset)))
                    if reset.isdigit()
                    else "the next hour"
                )
                return HostError(
                    f"{what}: the API rate limit is used up until {when} ({status} {message})"
                )
            if status == 403 and not _is_secondary_rate_limit(exc):
                return HostError(
                    f"{what}: forbidden (403 {message}); the token in ${self.token_env} "
                    "needs write access to the repository's contents"
                )
            if _is_retryable(exc):
                return HostError(
                    f"{what}: the host kept failing ({status} {message}) "
                    f"after {self.retry.attempts} attempts"
                )
            return HostError(f"{what}: {status} {message}")
        if _is_retryable(exc):
            return HostError(
                f"{what}: connection to {self.api_url} failed after "
                f"{self.retry.attempts} attempts ({type(exc).__name__}: {exc})"
            )
        return HostError(f"{what}: {type(exc).__name__}: {exc}")

    def repo(self, name: str) -> Repository:
        def step() -> Repository:
            try:
                return self.gh.get_repo(name)
            except GithubException as exc:
                if exc.status == 404:
                    api = self.api_url.rstrip("/")
                    hint = ""
                    if not api.endswith("/api/v3") and api != DEFAULT_API_URL:
                        hint = "; an lcm host's (or GitHub Enterprise's) API URL ends in /api/v3"
                    raise HostError(
                        f"repository {name} not found at {self.api_url} "
                        f"(or the token cannot see it){hint}"
                    ) from None
                raise

        return self.call(f"opening repository {name}", step)

    def releases(self, repo: Repository) -> list[GitRelease]:
        """Every release of `repo`, drafts included when the token can see them."""
        return self.call(
            f"listing the releases of {repo.full_name}", lambda: list(repo.get_releases())
        )

    def assets(self, release: GitRelease, fresh: bool = False) -> list[GitReleaseAsset]:
        return self.call(
            f"listing the assets of {release.tag_name}",
            lambda: list(release.get_assets()),
            fresh,
        )

    def download(self, asset: GitReleaseAsset, max_size: int) -> bytes:
        """An asset's bytes through the API (drafts included), at most `max_size` bytes."""
        if asset.size > max_size:
            raise HostError(f"{asset.name} is {asset.size} bytes, more than {max_size} expected")

        def step() -> bytes:
            _, _, chunks = asset.download_asset(chunk_size=64 * 1024)
            data = bytearray()
            for chunk in chunks:
                data += chunk
                if len(data) > max_size:
                    raise HostError(f"{asset.name}: more than {max_size} bytes downloaded")
            return bytes(data)

        return self.call(f"downloading {asset.name}", step)

    def upload(
        self,
        release: GitRelease,
        name: str,
        data: bytes,
        progress: ProgressCallback | None = None,
        content_type: str = "application/octet-stream",
        known: list[GitReleaseAsset] | None = None,
        fresh: bool = False,
    ) -> str:
        """Make asset `name` of `release` hold `data`: "kept", "uploaded" or "replaced".

        Each attempt first looks at what the host has (the first one may use
        `known`, a fresh listing the caller already holds): the same bytes are
        kept (an earlier run or a lost response already uploaded them); a
        partial or different asset of that name is deleted and uploaded again.
        An asset of that name uploaded by someone else between the listing and
        the upload (422 "already_exists") is another run writing to the same
        release: AssetTakenError, not replaced (the two runs would take turns).
        `fresh`: as for `call`.
        """
        outcome = "uploaded"
        listing = known

        def step() -> str:
            nonlocal outcome, listing
            present = listing if listing is not None else list(release.get_assets())
            listing = None  # a retry looks again: the failed attempt may have left something
            for asset in present:
                if asset.name != name:
                    continue
                if asset_matches(asset, data, fetcher(self, asset, len(data))):
                    if progress is not None:
                        progress(name, len(data), len(data))
                    return "kept" if outcome == "uploaded" else outcome
                asset.delete_asset()
                outcome = "replaced"
            if progress is not None:
                progress(name, 0, len(data))  # the clock of the upload's speed starts here
            body = _ProgressReader(data, name, progress)
            try:
                uploaded = release.upload_asset_from_memory(
                    body, len(data), name, content_type=content_type
                )
            except GithubException as exc:
                if _is_name_taken(exc):
                    raise AssetTakenError(
                        f"uploading {name} to {release.tag_name}: another {name} was uploaded "
                        f"meanwhile (another publish of {release.tag_name} running at the "
                        "same time?); re-run once it has ended"
                    ) from None
                raise
            if uploaded.size != len(data):
                raise PartialUploadError(f"the host stored {uploaded.size} of {len(data)} bytes")
            return outcome

        return self.call(f"uploading {name} to {release.tag_name}", step, fresh)
