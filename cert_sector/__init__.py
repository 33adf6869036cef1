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
from cert_sector.p256 import verify_p256

__all__ = [
    "ExpiredError",
    "FormatError",
    "MismatchError",
    "RollbackError",
    "SignatureError",
    "TrustError",
    "verify_p256",
]
