"""The pure-Python P-256 verifier on CPython: Wycheproof, and a cross-check with `cryptography`."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature
from hypothesis import given, settings
from hypothesis import strategies as st

from cert_sector.p256 import decode_public_key, verify_p256
from tests.keyfactory import new_signer
from tests.wycheproof import vectors

VECTORS = list(vectors())


def test_both_wycheproof_files_are_used() -> None:
    names = {v[0].split("#")[0] for v in VECTORS}
    assert names == {"ecdsa_secp256r1_sha256_p1363", "ecdsa_secp256r1_sha256"}
    assert len(VECTORS) > 700


@pytest.mark.parametrize("vector", VECTORS, ids=[v[0] for v in VECTORS])
def test_wycheproof(vector) -> None:
    _, key, digest, sig, expected = vector
    got = sig is not None and verify_p256(key, digest, sig)
    assert got is expected


def crypto_verifies(public: bytes, digest: bytes, sig: bytes) -> bool:
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public)
    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    if r <= 0 or s <= 0:
        return False

    try:
        key.verify(encode_dss_signature(r, s), digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    except InvalidSignature:
        return False
    return True


SIGNER = new_signer()


@settings(max_examples=60, deadline=None)
@given(message=st.binary(max_size=200), flip=st.integers(min_value=-1, max_value=64 * 8 - 1))
def test_cross_check_with_cryptography(message: bytes, flip: int) -> None:
    """cryptography signs, the pure verifier agrees; a flipped bit: both refuse."""
    digest = hashlib.sha256(message).digest()
    sig = bytearray(SIGNER.sign(message))
    if flip >= 0:
        sig[flip // 8] ^= 1 << (flip % 8)
    expected = crypto_verifies(SIGNER.public_key, digest, bytes(sig))
    assert verify_p256(SIGNER.public_key, digest, bytes(sig)) is expected
    assert expected is (flip < 0)


@settings(max_examples=30, deadline=None)
@given(message=st.binary(max_size=64), other=st.binary(min_size=1, max_size=64))
def test_signature_does_not_carry_to_another_digest(message: bytes, other: bytes) -> None:
    sig = SIGNER.sign(message)
    digest = hashlib.sha256(message + other).digest()
    assert verify_p256(SIGNER.public_key, digest, sig) is crypto_verifies(
        SIGNER.public_key, digest, sig
    )


@pytest.mark.parametrize(
    "key, digest, sig",
    [
        (b"", b"\0" * 32, b"\1" * 64),
        (SIGNER.public_key[:64], b"\0" * 32, b"\1" * 64),
        (SIGNER.public_key, b"\0" * 31, b"\1" * 64),
        (SIGNER.public_key, b"\0" * 32, b"\1" * 63),
        (b"\x02" + SIGNER.public_key[1:], b"\0" * 32, b"\1" * 64),
        (b"\x04" + b"\0" * 64, b"\0" * 32, b"\1" * 64),  # (0, 0): not on the curve
        (b"\x04" + b"\xff" * 64, b"\0" * 32, b"\1" * 64),  # coordinates >= p
        (SIGNER.public_key, b"\0" * 32, b"\0" * 64),  # r = s = 0
        (SIGNER.public_key, b"\0" * 32, b"\xff" * 64),  # r, s >= n
        (None, b"\0" * 32, b"\1" * 64),
        (SIGNER.public_key, "a" * 32, b"\1" * 64),
    ],
    # Named, not from the values: the key is made at import, and pytest-xdist's workers
    # must collect the same test ids.
    ids=[
        "empty key",
        "key cut short",
        "digest of 31 bytes",
        "signature of 63 bytes",
        "compressed-key prefix",
        "key (0, 0)",
        "key coordinates >= p",
        "r = s = 0",
        "r, s >= n",
        "key None",
        "digest a str",
    ],
)
def test_bad_inputs_return_false(key, digest, sig) -> None:
    assert verify_p256(key, digest, sig) is False


def test_public_key_validation() -> None:
    point = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), SIGNER.public_key)
    numbers = point.public_numbers()
    assert decode_public_key(SIGNER.public_key) == (numbers.x, numbers.y)
    tampered = bytearray(SIGNER.public_key)
    tampered[-1] ^= 1
    assert decode_public_key(bytes(tampered)) is None


def test_the_written_out_generator_is_g() -> None:
    from cert_sector import p256

    point = ec.derive_private_key(1, ec.SECP256R1()).public_key().public_numbers()
    assert (point.x, point.y) == (p256._GX, p256._GY)
