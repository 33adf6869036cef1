"""Errors raised by the formats and the trust rules.

Every refusal is one of these, with a message naming what was wrong, so the
device can log the reason and the publisher can show it.
"""


class TrustError(Exception):
    """Base: the bytes are not something the device may trust."""


class FormatError(TrustError):
    """Malformed bytes: bad magic, truncation, a length past the end, trailing data."""


class SignatureError(TrustError):
    """Missing, unknown, invalid or too few signatures."""


class ScopeError(SignatureError):
    """A release key signed outside the channels or boards its cert sector allows it."""


class RollbackError(TrustError):
    """A sequence number that is not higher than the one already trusted."""


class ExpiredError(TrustError):
    """A cert sector whose expiry is in the past (only checked when the clock is known)."""


class MismatchError(TrustError):
    """Valid bytes meant for something else: another repo, board, channel or manager version."""
