"""Formats and trust rules shared by the publisher and the device.

Pure Python that runs unchanged on CPython and MicroPython: the cert sector
(`sector`), the release manifest (`manifest`), and the P-256 verifier
(`p256`). Nothing here does I/O beyond reading a stream it is handed.
"""

from cert_sector.errors import (
    ExpiredError,
    FormatError,
    MismatchError,
    RollbackError,
    SignatureError,
    TrustError,
)


def verify_p256(public_key, digest, signature):
    """True only when `signature` (64 bytes r‖s) by `public_key` (65 bytes) signs `digest`.

    See `cert_sector.p256` for the rules. The verifier is imported on first
    use: importing this package (as every device module does) must not cost
    the verifier's heap on an idle check.
    """
    from cert_sector.p256 import verify_p256 as verify

    return verify(public_key, digest, signature)


__all__ = [
    "ExpiredError",
    "FormatError",
    "MismatchError",
    "RollbackError",
    "SignatureError",
    "TrustError",
    "verify_p256",
]
