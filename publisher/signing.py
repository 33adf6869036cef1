"""Signing keys behind one interface, and ECDSA P-256 signatures as r‖s.

Every command that signs takes a key **spec** and opens it with `open_signer`:

  PATH            a PKCS#8 PEM private key file (0600; encrypted when a
                  passphrase was given: the passphrase from an environment
                  variable or a prompt, never from the command line)
  pkcs11:URI      a key in a PKCS#11 token (publisher/pkcs11_signer.py)
  exec:CMD ARGS   an external command: the 32-byte digest on stdin, the
                  signature on stdout (publisher/exec_signer.py)

Whatever the kind, `Signer.sign` hashes the data, has the key sign the
digest, accepts 64-byte r‖s or DER, and checks the signature against the
signer's public key before returning it: a token or a command that answers
garbage is an error naming it, never a bad signature in a release.

Public keys are SubjectPublicKeyInfo PEM (`.pub`), readable by openssl; on
the wire they are 65-byte uncompressed points.
"""

from __future__ import annotations

import abc
import getpass
import hashlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    Prehashed,
    decode_dss_signature,
    encode_dss_signature,
)

from cert_sector.keys import key_id_hex
from publisher.errors import PublisherError
from publisher.fsutil import read_at_most, write_atomic

MAX_KEY_FILE = 64 * 1024


class SigningKeyError(PublisherError):
    """A key file that cannot be read, decrypted or used."""


# The spec prefixes of keys that are not files.
PKCS11_PREFIX = "pkcs11:"
EXEC_PREFIX = "exec:"


class Signer(abc.ABC):
    """A P-256 private key, wherever it lives, that signs bytes as 64-byte r‖s.

    A subclass sets `public_key` (65 bytes) and `describe` (what to name in
    messages), and implements `sign_digest`.
    """

    public_key: bytes
    describe: str

    @property
    def key_id(self) -> bytes:
        return bytes.fromhex(key_id_hex(self.public_key))

    @abc.abstractmethod
    def sign_digest(self, digest: bytes) -> bytes:
        """The key's raw ECDSA signature of a SHA-256 digest: r‖s or DER."""

    def sign(self, data: bytes) -> bytes:
        """r‖s over SHA-256(data), checked against the public key before it is returned."""
        raw = self.sign_digest(hashlib.sha256(data).digest())
        signature = signature_from_output(raw, self.describe)
        if not verify_with_cryptography(self.public_key, data, signature):
            raise SigningKeyError(
                f"{self.describe} returned a signature that does not verify against its "
                f"public key {key_id_hex(self.public_key)}: refusing to use it"
            )
        return signature


class KeySigner(Signer):
    """A private key held in memory (read from a PEM file, or made by a test)."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey, describe: str = "key") -> None:
        if not isinstance(private_key.curve, ec.SECP256R1):
            raise SigningKeyError("only P-256 (secp256r1) keys are supported")
        self._key = private_key
        self.public_key = public_key_bytes(private_key.public_key())
        self.describe = describe

    def sign_digest(self, digest: bytes) -> bytes:
        return self._key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))


def signature_from_output(raw: bytes, who: str) -> bytes:
    """64-byte r‖s from a signer's answer: r‖s already, or a DER ECDSA-Sig-Value."""
    if len(raw) == 64:
        return raw
    try:
        r, s = decode_dss_signature(raw)
    except ValueError:
        raise SigningKeyError(
            f"{who} returned {len(raw)} bytes that are neither a 64-byte r‖s "
            "nor a DER ECDSA signature"
        ) from None
    if not (0 < r < 2**256 and 0 < s < 2**256):
        raise SigningKeyError(f"{who} returned a DER signature with out-of-range r or s")
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def open_signer(spec: str, passphrase_env: str | None = None) -> Signer:
    """The signer a `--key` spec names: a PEM file, `pkcs11:URI` or `exec:CMD ARGS`."""
    if spec.startswith(PKCS11_PREFIX):
        from publisher.pkcs11_signer import open_pkcs11

        return open_pkcs11(spec)
    if spec.startswith(EXEC_PREFIX):
        from publisher.exec_signer import ExecSigner

        return ExecSigner(spec)
    return load_signer(Path(spec), passphrase_env)


def is_signer_spec(spec: str) -> bool:
    """Whether `spec` names a private key (a signer), not only a public key."""
    if spec.startswith((PKCS11_PREFIX, EXEC_PREFIX)):
        return True
    path = Path(spec)
    if path.suffix == ".pem":
        return True
    try:
        with open(path, "rb") as f:
            return b"PRIVATE KEY" in f.read(200)
    except OSError:
        return False


def public_key_bytes(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def public_key_pem(public_key: bytes) -> bytes:
    """SubjectPublicKeyInfo PEM (a `.pub` file) of a 65-byte point."""
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public_key)
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def check_key_name(name: str) -> None:
    """A key's NAME names files in the key folder: NAME.pem and NAME.pub, nothing elsewhere."""
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise SigningKeyError(
            f"invalid key name {name!r}: a file name in --dir (no '/', not starting with '.')"
        )
    if not name.isprintable():
        raise SigningKeyError(f"invalid key name {name!r}: it holds control characters")
    if ":" in name:
        # `exec:`/`pkcs11:` name signers, and KEY:CHANNELS a key's scope: NAME.pem could
        # never be given as a key.
        raise SigningKeyError(f"invalid key name {name!r}: no ':' (it separates key specs)")


def generate(directory: Path, name: str, passphrase: bytes | None) -> tuple[Path, Path, KeySigner]:
    """Create NAME.pem (0600) and NAME.pub in `directory`; refuses to overwrite."""
    check_key_name(name)
    if directory.exists() and not directory.is_dir():
        raise SigningKeyError(f"--dir {directory} is not a folder")
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
    return pem_path, pub_path, KeySigner(key, str(pem_path))


def read_passphrase(env_var: str | None, prompt: str) -> bytes | None:
    """The passphrase from `env_var` if named, else a prompt when interactive, else None."""
    if env_var:
        value = os.environ.get(env_var)
        if value is None:
            raise SigningKeyError(f"environment variable {env_var} is not set")
        if not value:
            # A CI secret that is missing often expands to "": taken as "no passphrase",
            # `keys new` would write the key unencrypted.
            raise SigningKeyError(f"environment variable {env_var} is empty: no passphrase")
        return value.encode()
    if sys.stdin.isatty():
        return getpass.getpass(prompt).encode() or None
    return None


def _read_key_file(path: Path) -> bytes:
    try:
        data = read_at_most(path, MAX_KEY_FILE)
    except OSError as exc:
        raise SigningKeyError(f"cannot read key file {path}: {exc.strerror}") from None
    if len(data) > MAX_KEY_FILE:
        raise SigningKeyError(f"{path} is too large to be a key file")
    return data


def load_signer(path: Path, passphrase_env: str | None = None) -> KeySigner:
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
    return KeySigner(key, str(path))


def load_public_key(spec: str | Path, passphrase_env: str | None = None) -> bytes:
    """The 65-byte public point of a .pub (SPKI PEM/DER or raw 65 bytes), a .pem private
    key, or any signer spec (`pkcs11:`, `exec:`)."""
    if isinstance(spec, str) and spec.startswith((PKCS11_PREFIX, EXEC_PREFIX)):
        return open_signer(spec).public_key
    path = Path(spec)
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


def load_trusted_key(spec: str | Path) -> bytes:
    """A root to pin as trusted (`--root` and the like), of which only the public half is
    used: a .pub, a signer spec or an unencrypted .pem. An encrypted .pem is refused
    naming its .pub: these commands have no passphrase to unlock it, nor need one."""
    if isinstance(spec, str) and spec.startswith((PKCS11_PREFIX, EXEC_PREFIX)):
        return load_public_key(spec)
    path = Path(spec)
    data = _read_key_file(path)
    if b"PRIVATE KEY" in data and b"ENCRYPTED" in data:
        raise SigningKeyError(
            f"{path} is an encrypted private key; a trusted root is given by its public "
            f"key: {path.with_suffix('.pub')} (`lcm keys new` writes it beside the .pem)"
        )
    return load_public_key(path)


def load_trusted_keys(specs: Sequence[str | Path], option: str = "--root") -> list[bytes]:
    """`load_trusted_key` of each; the same key twice is refused, naming it: counted twice
    it would seem to meet a threshold that one holder's signature cannot meet."""
    keys: list[bytes] = []
    for spec in specs:
        key = load_trusted_key(spec)
        if key in keys:
            raise SigningKeyError(
                f"{option} {spec}: the same root key ({key_id_hex(key)}) was given twice"
            )
        keys.append(key)
    return keys


def verify_with_cryptography(public_key: bytes, data: bytes, signature: bytes) -> bool:
    """Reference check of an r‖s signature with `cryptography` (tests and `verify` cross-checks)."""
    if len(signature) != 64:
        return False
    try:
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public_key)
    except ValueError:  # not a point of P-256 (another curve's key): it verifies nothing
        return False
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    try:
        key.verify(der, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True
