"""Signing keys: generation, storage, loading, and ECDSA P-256 signatures as r‖s.

Private keys are PKCS#8 PEM files written 0600, encrypted when a passphrase
is given. Passphrases come from an environment variable or a prompt, never
from the command line. Public keys are SubjectPublicKeyInfo PEM (`.pub`),
readable by openssl; on the wire they are 65-byte uncompressed points.
"""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from cert_sector.keys import key_id_hex
from publisher.errors import PublisherError
from publisher.fsutil import write_atomic

MAX_KEY_FILE = 64 * 1024


class SigningKeyError(PublisherError):
    """A key file that cannot be read, decrypted or used."""


class Signer:
    """A P-256 private key that signs bytes, returning 64-byte r‖s."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        if not isinstance(private_key.curve, ec.SECP256R1):
            raise SigningKeyError("only P-256 (secp256r1) keys are supported")
        self._key = private_key
        self.public_key = public_key_bytes(private_key.public_key())
        self.key_id = bytes.fromhex(key_id_hex(self.public_key))

    def sign(self, data: bytes) -> bytes:
        der = self._key.sign(data, ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def public_key_bytes(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def generate(directory: Path, name: str, passphrase: bytes | None) -> tuple[Path, Path, Signer]:
    """Create NAME.pem (0600) and NAME.pub in `directory`; refuses to overwrite."""
    if not name or "/" in name or name.startswith("."):
        raise SigningKeyError(f"invalid key name {name!r}")
    directory.mkdir(parents=True, exist_ok=True)
    pem_path, pub_path = directory / f"{name}.pem", directory / f"{name}.pub"
    for path in (pem_path, pub_path):
        if path.exists():
            raise SigningKeyError(f"{path} already exists; refusing to overwrite a key")
    key = ec.generate_private_key(ec.SECP256R1())
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    write_atomic(pem_path, pem, mode=0o600)
    pub = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    write_atomic(pub_path, pub)
    return pem_path, pub_path, Signer(key)


def read_passphrase(env_var: str | None, prompt: str) -> bytes | None:
    """The passphrase from `env_var` if set, else a prompt when interactive, else None."""
    if env_var:
        value = os.environ.get(env_var)
        if value is None:
            raise SigningKeyError(f"environment variable {env_var} is not set")
        return value.encode()
    if sys.stdin.isatty():
        return getpass.getpass(prompt).encode() or None
    return None


def _read_key_file(path: Path) -> bytes:
    try:
        if path.stat().st_size > MAX_KEY_FILE:
            raise SigningKeyError(f"{path} is too large to be a key file")
        return path.read_bytes()
    except OSError as exc:
        raise SigningKeyError(f"cannot read key file {path}: {exc.strerror}") from None


def load_signer(path: Path, passphrase_env: str | None = None) -> Signer:
    """Load a private key; asks for the passphrase only when the key is encrypted."""
    data = _read_key_file(path)
    if b"PRIVATE KEY" not in data:
        raise SigningKeyError(f"{path} is not a PEM private key")
    passphrase = None
    if b"ENCRYPTED" in data:
        passphrase = read_passphrase(passphrase_env, f"Passphrase for {path}: ")
        if passphrase is None:
            raise SigningKeyError(
                f"{path} is encrypted: set its passphrase in an environment variable "
                "(--passphrase-env) or run interactively"
            )
    try:
        key = serialization.load_pem_private_key(data, passphrase)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(
            f"cannot load {path}: wrong passphrase or not a key ({exc})"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise SigningKeyError(f"{path} is not an elliptic-curve key")
    return Signer(key)


def load_public_key(path: Path, passphrase_env: str | None = None) -> bytes:
    """The 65-byte public point of a .pub (SPKI PEM/DER or raw 65 bytes) or a .pem private key."""
    data = _read_key_file(path)
    if b"PRIVATE KEY" in data:
        return load_signer(path, passphrase_env).public_key
    try:
        if data.startswith(b"-----BEGIN"):
            key = serialization.load_pem_public_key(data)
        elif len(data) == 65 and data[0] == 4:
            key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), data)
        else:
            key = serialization.load_der_public_key(data)
    except ValueError as exc:
        raise SigningKeyError(f"{path} is not a public key ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise SigningKeyError(f"{path} is not a P-256 public key")
    return public_key_bytes(key)


def verify_with_cryptography(public_key: bytes, data: bytes, signature: bytes) -> bool:
    """Reference check of an r‖s signature with `cryptography` (tests and `verify` cross-checks)."""
    if len(signature) != 64:
        return False
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public_key)
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    try:
        key.verify(der, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True
