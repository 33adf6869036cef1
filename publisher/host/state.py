"""What the routes share: the store, the URL signer, the rate limiter and the faults."""

from __future__ import annotations

import base64
import hmac
import threading
from dataclasses import dataclass, field

from publisher.host.faults import Faults
from publisher.host.ratelimit import RateLimiter
from publisher.host.store import Store
from publisher.host.urlsign import UrlSigner


@dataclass
class HostState:
    store: Store
    token: str | None
    limiter: RateLimiter
    signer: UrlSigner = field(default_factory=UrlSigner)
    faults: Faults = field(default_factory=Faults)
    # Set on shutdown: releases handlers parked by a "stall_download" fault.
    stopping: threading.Event = field(default_factory=threading.Event)

    def check_token(self, authorization: str | None) -> str:
        """ "none", "valid" or "invalid" for an `Authorization` header: `token T`, `Bearer T`,
        or Basic with T as the password (any user name), as GitHub takes them (`curl -u`,
        git's credential helpers)."""
        if not authorization:
            return "none"
        scheme, _, presented = authorization.strip().partition(" ")
        presented = presented.strip()
        if scheme.lower() == "basic":
            try:
                _user, _, presented = (
                    base64.b64decode(presented, validate=True).decode().partition(":")
                )
            except (ValueError, UnicodeError):
                return "invalid"
        elif scheme.lower() not in ("token", "bearer"):
            return "invalid"
        if not presented or self.token is None:
            return "invalid"
        ok = hmac.compare_digest(presented.encode(), self.token.encode())
        return "valid" if ok else "invalid"
