"""Errors of `lcm release`: each names what was wrong; all are PublisherErrors."""

from __future__ import annotations

from publisher.errors import PublisherError


class SourceError(PublisherError):
    """The SOURCE folder or firmware file cannot be released as it is."""


class HostError(PublisherError):
    """The release host (GitHub or `lcm host`) refused or failed a request."""


class ReleaseConflictError(PublisherError):
    """The requested release clashes with what is already published."""


class VerifyError(PublisherError):
    """A published release does not verify; `asset` names the asset that failed."""

    def __init__(self, asset: str, reason: str) -> None:
        super().__init__(f"{asset}: {reason}")
        self.asset = asset
        self.reason = reason


class MissingAssetError(VerifyError):
    """The release has no such asset (404): for the optional ones, not a failure."""
