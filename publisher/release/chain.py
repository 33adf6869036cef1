"""`certs.chain`: every cert sector a repo has published, so devices can catch up.

A device verifies a new sector against the one it trusts (rules S4-S6), so a
device that missed several root rotations needs each sector in between. Each
release carries them all in one asset (layout: docs/formats.md, "Sector
chain"): members `u16 length | sector`, ascending sequence, one per sequence,
the last being the release's own `certs.sector`, at most MAX_CHAIN_SIZE bytes
(the oldest members are dropped to fit: a device older than the chain needs
re-provisioning).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from cert_sector import sector as sf
from cert_sector.assets import CHAIN_ASSET, MAX_CHAIN_SIZE, SECTOR_ASSET
from cert_sector.errors import FormatError, TrustError
from publisher.release.github import Session

if TYPE_CHECKING:
    from publisher.release.publish import KnownRelease


def split_chain(data: bytes) -> list[bytes]:
    """The members of a chain; TrustError (FormatError) when it is malformed."""
    out, i = [], 0
    while i < len(data):
        if i + 2 > len(data):
            raise FormatError("certs.chain: truncated member length")
        (n,) = struct.unpack(">H", data[i : i + 2])
        if not 0 < n <= sf.MAX_SECTOR_SIZE or i + 2 + n > len(data):
            raise FormatError(f"certs.chain: member of {n} bytes at offset {i}")
        out.append(data[i + 2 : i + 2 + n])
        i += 2 + n
    return out


def build_chain(sectors: list[bytes], current: bytes) -> bytes:
    """The chain of `sectors` (any order, duplicates and unparseable ones dropped)
    up to and ending with `current`."""
    top = sf.parse_sector(current).seq
    by_seq: dict[int, bytes] = {}
    for data in sectors:
        try:
            seq = sf.parse_sector(data).seq
        except TrustError:
            continue
        if seq < top:
            by_seq.setdefault(seq, data)
    members = [by_seq[s] for s in sorted(by_seq)] + [current]
    parts = [struct.pack(">H", len(m)) + m for m in members]
    while sum(len(p) for p in parts) > MAX_CHAIN_SIZE:
        parts.pop(0)
    return b"".join(parts)


def published_sectors(session: Session, known: list[KnownRelease]) -> list[bytes]:
    """Every sector the repo's published releases carry: the newest release's chain
    when it has one (it holds all earlier ones), else each release's certs.sector."""
    published = sorted(
        (k for k in known if not k.release.draft and k.manifest is not None),
        key=lambda k: k.manifest.seq if k.manifest else -1,
        reverse=True,
    )
    found: list[bytes] = []
    for k in published:
        assets = {a.name: a for a in session.assets(k.release) if a.state == "uploaded"}
        if CHAIN_ASSET in assets:
            try:
                return found + split_chain(session.download(assets[CHAIN_ASSET], MAX_CHAIN_SIZE))
            except TrustError:
                pass  # a damaged chain: fall back to the releases' own sectors
        if SECTOR_ASSET in assets:
            found.append(session.download(assets[SECTOR_ASSET], sf.MAX_SECTOR_SIZE))
    return found
