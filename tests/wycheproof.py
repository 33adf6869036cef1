"""Wycheproof ECDSA P-256/SHA-256 vectors as (public key, digest, r‖s or None, expected).

Both files of `../shared/testdata/wycheproof/` (a copy ships in `tests/data/`):
the IEEE P1363 one carries r‖s directly; the ASN.1 one carries DER, which is
decoded strictly here (an invalid DER encoding counts as a rejection, so its
signature is None).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "testdata" / "wycheproof"
LOCAL = HERE / "data" / "wycheproof"
FILES = {
    "ecdsa_secp256r1_sha256_p1363_test.json": False,
    "ecdsa_secp256r1_sha256_test.json": True,
}


def vector_dir() -> Path:
    return SHARED if SHARED.is_dir() else LOCAL


def der_to_raw(sig: bytes) -> bytes | None:
    """Strict DER ECDSA-Sig-Value → 64-byte r‖s; None for anything not canonical."""
    if len(sig) < 8 or sig[0] != 0x30 or sig[1] != len(sig) - 2 or sig[1] > 0x7F:
        return None
    pos = 2
    out = b""
    for _ in range(2):
        if pos + 2 > len(sig) or sig[pos] != 0x02:
            return None
        length = sig[pos + 1]
        value = sig[pos + 2 : pos + 2 + length]
        if length == 0 or length > 33 or len(value) != length:
            return None
        if value[0] & 0x80:  # negative
            return None
        if length > 1 and value[0] == 0 and not value[1] & 0x80:  # non-minimal
            return None
        number = int.from_bytes(value, "big")
        if number >= 1 << 256:
            return None
        out += number.to_bytes(32, "big")
        pos += 2 + length
    return out if pos == len(sig) else None


Vector = tuple[str, bytes, bytes, bytes | None, bool]


def vectors() -> Iterator[Vector]:
    """(id, public key, digest, signature or None, expected); 'acceptable' cases are skipped."""
    for name, is_der in FILES.items():
        data = json.loads((vector_dir() / name).read_text())
        for group in data["testGroups"]:
            key = bytes.fromhex(group["publicKey"]["uncompressed"])
            for test in group["tests"]:
                if test["result"] == "acceptable":
                    continue
                sig = bytes.fromhex(test["sig"])
                raw = der_to_raw(sig) if is_der else sig
                digest = hashlib.sha256(bytes.fromhex(test["msg"])).digest()
                yield (
                    f"{name.split('_test')[0]}#{test['tcId']}",
                    key,
                    digest,
                    raw,
                    test["result"] == "valid",
                )
