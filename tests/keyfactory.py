"""Keys, sectors and manifests made in-process for tests."""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives.asymmetric import ec

from cert_sector.assets import PACK_ASSET
from publisher import manifest_format as mf
from publisher import sector_format as sf
from publisher.signing import KeySigner, Signer


def new_signer() -> Signer:
    return KeySigner(ec.generate_private_key(ec.SECP256R1()))


def make_sector(
    repo: str,
    roots: list[Signer],
    release: list[Signer],
    *,
    seq: int = 1,
    threshold: int = 1,
    expires: int = 0,
    cas: list[bytes] | None = None,
    signers: list[Signer] | None = None,
    scopes: dict[int, tuple[int, list[str]]] | None = None,
    epoch: int = 0,
    first_seq: int = 0,
) -> bytes:
    body = sf.pack_body(
        sf.Sector(
            repo,
            seq,
            expires,
            threshold,
            [s.public_key for s in roots],
            [s.public_key for s in release],
            cas or [],
            scopes=scopes,
            epoch=epoch,
            first_seq=first_seq,
        )
    )
    signers = roots if signers is None else signers
    return sf.pack_sector(body, [(s.key_id, s.sign(body)) for s in signers])


def make_manifest(
    repo: str,
    key: Signer,
    files: dict[str, bytes],
    *,
    seq: int = 1,
    version: str = "1.0.0",
    channel: str = "stable",
    boards: tuple[str, ...] = ("esp32",),
    kind: str = "files",
    min_manager: str = "",
) -> tuple[bytes, bytes]:
    """(manifest bytes, pack bytes) for `files`."""
    entries = []
    offset = 0
    pack = b""
    for path in sorted(files, key=lambda p: p.encode()):
        data = files[path]
        entries.append(mf.FileEntry(path, len(data), offset, hashlib.sha256(data).digest()))
        offset += len(data)
        pack += data
    m = mf.Manifest(
        repo,
        version,
        seq,
        kind,
        channel,
        boards,
        min_manager,
        PACK_ASSET,
        len(pack),
        hashlib.sha256(pack).digest(),
        1_700_000_000,
        entries,
    )
    body = mf.pack_body(m)
    return mf.pack_manifest(body, key.key_id, key.sign(body)), pack
