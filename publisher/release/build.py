"""The assets of one release: pack, signed manifest, SHA256SUMS (see docs/formats.md).

The pack and the manifest's file list are deterministic (files sorted
bytewise), so a re-run of an interrupted publish rebuilds the same pack; the
manifest is signed afresh only when no matching signed one is already
uploaded (ECDSA signatures are randomised), see `publisher/release/publish.py`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from cert_sector.assets import (
    BETA_POINTER_ASSET,
    CHAIN_ASSET,
    MANIFEST_ASSET,
    PACK_ASSET,
    SECTOR_ASSET,
    SUMS_ASSET,
)
from cert_sector.errors import FormatError
from cert_sector.release import check_tag
from cert_sector.semver import parse_version
from publisher import manifest_format as mf
from publisher.release.errors import SourceError
from publisher.release.source import SourceFile
from publisher.signing import Signer

# Upload order: the big pack first, the manifest (what makes a release usable) last.
ASSET_ORDER = (
    PACK_ASSET,
    SECTOR_ASSET,
    CHAIN_ASSET,
    SUMS_ASSET,
    BETA_POINTER_ASSET,
    MANIFEST_ASSET,
)


def version_from_tag(tag: str) -> str:
    """`v1.2.3` -> `1.2.3`; the tag of an lcm release is always "v" + semver."""
    try:
        check_tag(tag)
        if not tag.startswith("v"):
            raise FormatError("it does not start with 'v'")
        parse_version(tag[1:])
    except FormatError as exc:
        raise SourceError(
            f"--tag {tag!r} is not v + MAJOR.MINOR.PATCH[-PRE] (e.g. v1.2.0): {exc}"
        ) from None
    return tag[1:]


@dataclass
class ReleaseSpec:
    """Everything a release's content depends on, except sequence, date and signature."""

    repo: str
    version: str
    kind: str
    channel: str
    boards: list[str]
    min_manager: str
    files: list[SourceFile]
    pack: bytes = field(init=False)
    entries: list[mf.FileEntry] = field(init=False)

    def __post_init__(self) -> None:
        self.files = sorted(self.files, key=lambda f: f.path.encode("utf-8"))
        self.entries = []
        offset = 0
        for f in self.files:
            self.entries.append(
                mf.FileEntry(f.path, len(f.data), offset, hashlib.sha256(f.data).digest())
            )
            offset += len(f.data)
        self.pack = b"".join(f.data for f in self.files)

    def manifest(self, seq: int, created: int) -> mf.Manifest:
        return mf.Manifest(
            self.repo,
            self.version,
            seq,
            self.kind,
            self.channel,
            self.boards,
            self.min_manager,
            PACK_ASSET,
            len(self.pack),
            hashlib.sha256(self.pack).digest(),
            created,
            list(self.entries),
        )

    def sign(self, seq: int, created: int, signer: Signer) -> bytes:
        """The manifest asset's bytes, signed by `signer`."""
        try:
            body = mf.pack_body(self.manifest(seq, created))
        except FormatError as exc:
            raise SourceError(f"cannot build the manifest: {exc}") from None
        return mf.pack_manifest(body, signer.key_id, signer.sign(body))

    def same_content(self, other: mf.Manifest) -> bool:
        """Whether a parsed manifest describes exactly this content (any seq, date, key)."""
        mine = self.manifest(other.seq, other.created)
        return (
            (other.repo, other.version, other.kind, other.channel, other.min_manager)
            == (mine.repo, mine.version, mine.kind, mine.channel, mine.min_manager)
            and list(other.boards) == list(mine.boards)
            and (other.pack_name, other.pack_size, other.pack_sha256)
            == (mine.pack_name, mine.pack_size, mine.pack_sha256)
            and [(f.path, f.size, f.offset, f.sha256) for f in other.files]
            == [(f.path, f.size, f.offset, f.sha256) for f in mine.files]
        )


def sha256sums(assets: dict[str, bytes]) -> bytes:
    """`sha256sum`-compatible lines for `assets` (check with `sha256sum -c SHA256SUMS`)."""
    lines = [
        f"{hashlib.sha256(data).hexdigest()}  {name}\n"
        for name, data in sorted(assets.items())
        # certs.chain is not listed: its members are signed sectors, checked one by
        # one, and `lcm release verify` checks the list against the assets it verifies.
        if name not in (SUMS_ASSET, BETA_POINTER_ASSET, CHAIN_ASSET)
    ]
    return "".join(lines).encode()


def release_assets(
    manifest: bytes, pack: bytes, sector: bytes, beta_tag: str | None, chain: bytes | None = None
) -> dict[str, bytes]:
    """Name -> bytes of every asset of a release, in upload order.

    `beta_tag` is set for a full release: it becomes the latest release, so it
    carries the beta pointer (its own tag: the newest release of any channel).
    """
    assets = {MANIFEST_ASSET: manifest, PACK_ASSET: pack, SECTOR_ASSET: sector}
    if chain is not None:
        assets[CHAIN_ASSET] = chain  # every sector published, for devices to catch up
    assets[SUMS_ASSET] = sha256sums(assets)
    if beta_tag is not None:
        assets[BETA_POINTER_ASSET] = (beta_tag + "\n").encode()
    return {name: assets[name] for name in ASSET_ORDER if name in assets}
