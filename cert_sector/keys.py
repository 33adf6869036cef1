"""Public keys and key ids.

A public key is a P-256 point in uncompressed SEC1 form (65 bytes, 0x04‖X‖Y).
Its key id is the first 8 bytes of its SHA-256: short enough to print and to
store next to every signature, long enough that a collision is not a concern
among the handful of keys one sector lists (duplicates are refused anyway).
"""

import binascii
import hashlib

from cert_sector.errors import FormatError

PUBLIC_KEY_SIZE = 65
KEY_ID_SIZE = 8
SIGNATURE_SIZE = 64


def key_id(public_key):
    """The 8-byte id of a 65-byte public key."""
    return hashlib.sha256(public_key).digest()[:KEY_ID_SIZE]


def key_id_hex(public_key):
    return binascii.hexlify(key_id(public_key)).decode()


def check_public_key(public_key, what):
    # Imported here: the verifier's tables are only needed when a key is checked.
    from cert_sector.p256 import decode_public_key

    if len(public_key) != PUBLIC_KEY_SIZE or decode_public_key(bytes(public_key)) is None:
        raise FormatError(what + " is not a valid P-256 public key")
    return public_key


def valid_signers(digest, signatures, keys):
    """The distinct `keys` that made a valid signature of `digest`.

    `signatures` is a list of (key id, r‖s). A signature by a key not in
    `keys` is ignored, not an error: a sector may carry signatures for both
    its old and its new roots.
    """
    from cert_sector.p256 import verify_p256

    signed = []
    for kid, sig in signatures:
        for key in keys:
            if key_id(key) == kid and key not in signed and verify_p256(key, digest, sig):
                signed.append(key)
    return signed
