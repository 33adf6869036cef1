"""Expiring signed asset URLs, as GitHub's CDN hands them out.

A browser download URL answers 302 to `/api/objects/ASSET_ID/NAME?expires=T&sig=S&jwt=J`
where S is an HMAC of the asset id and T under a key that lives only in this
process. J is filler as long as the token in GitHub's own signed asset URLs,
which run to 1.2-1.5 KB: clients meet URLs that long here too (a device's HTTP
buffer must hold one in its `Location` header and its request line).
Such URLs sit under `/api/` because PyGithub only follows a redirect
on the base host into `/api/` (it asserts that), and they are not rate limited.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time

from publisher.host.errors import ApiError

URL_LIFETIME = 300  # seconds, as GitHub's signed asset URLs
OBJECTS_PREFIX = "/api/objects/"
SIG_HEX_LENGTH = 64  # hex of an HMAC-SHA256
JWT_LENGTH = 1200  # characters of the `jwt` filler: the URL then has github.com's ~1.35 KB


class UrlSigner:
    def __init__(self, lifetime: int = URL_LIFETIME) -> None:
        self.lifetime = lifetime
        self._key = secrets.token_bytes(32)
        self._retired: list[bytes] = []
        self._lock = threading.Lock()

    def _mac(self, key: bytes, asset_id: int, expires: int) -> str:
        return hmac.new(key, f"{asset_id}:{expires}".encode(), hashlib.sha256).hexdigest()

    def query(self, asset_id: int) -> str:
        expires = int(time.time()) + self.lifetime
        with self._lock:
            sig = self._mac(self._key, asset_id, expires)
        jwt = secrets.token_urlsafe(JWT_LENGTH)[:JWT_LENGTH]
        return f"expires={expires}&sig={sig}&jwt={jwt}"

    def check(self, asset_id: int, expires_text: str | None, sig: str | None) -> None:
        """Refuse (403, as the CDN does) a URL that is unsigned, forged or expired."""
        well_formed = (
            expires_text is not None
            and sig is not None
            and 0 < len(expires_text) <= 12
            and all(c in "0123456789" for c in expires_text)
            and len(sig) == SIG_HEX_LENGTH
            and all(c in "0123456789abcdef" for c in sig)
        )
        if not well_formed:
            raise ApiError(403, "Signed URL required: missing or malformed expires/sig")
        assert expires_text is not None and sig is not None
        expires = int(expires_text)
        with self._lock:
            current = self._key
            retired = list(self._retired)
        if hmac.compare_digest(self._mac(current, asset_id, expires), sig):
            if expires < time.time():
                raise ApiError(403, "Signed URL expired: request the download URL again")
            return
        if any(hmac.compare_digest(self._mac(k, asset_id, expires), sig) for k in retired):
            raise ApiError(403, "Signed URL expired: request the download URL again")
        raise ApiError(403, "Signed URL signature does not match")

    def expire_all(self) -> None:
        """Every URL handed out so far stops working (tests: a device must re-resolve)."""
        with self._lock:
            self._retired.append(self._key)
            self._key = secrets.token_bytes(32)
