"""`lcm release verify`: check a published release exactly as a device would.

Only browser URLs (the same resolution code as the device,
`cert_sector.release`), then the whole chain; the first failure is raised
as a VerifyError naming the asset:

  certs.sector  verifies against the pinned roots (--root) or the trusted
                sector (--certs; identical bytes, or a valid rotation of it)
  certs.chain   (a mirror's verifier, `chain=True`, when the release has one) walks
                from that trust to certs.sector, link by link (rules C1-C4 in
                publisher/release/chain.py): a certs.sector that the trust did not
                sign directly is verified through it, as a device does
  manifest.lcm  signed by a release key of that sector, for this repo, with
                a sequence above --installed-seq, for this tag's version, and
                (--board) for that board, which can install its kind
  pack.lcm      exactly the declared size; every file's SHA-256 as listed;
                (--board, firmware) an image for that board's chip; (`ranges`: `lcm
                release verify`) a byte range of it answered 206, as devices read it
  SHA256SUMS    matches the verified assets (humans rely on it)
  beta.tag      on a full release: a valid tag whose release is at least as new
  rollout.lcm   when the release has one (a staged roll-out): rules R1-R4 of
                cert_sector/rollout.py, signed by a release key of that sector,
                for this repo, tag and manifest sequence
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from cert_sector import rollout as ro
from cert_sector.assets import (
    BETA_POINTER_ASSET,
    CHAIN_ASSET,
    MANIFEST_ASSET,
    MAX_CHAIN_SIZE,
    MAX_TAG,
    PACK_ASSET,
    ROLLOUT_ASSET,
    SECTOR_ASSET,
    SUMS_ASSET,
)
from cert_sector.errors import ExpiredError, SignatureError, TrustError
from cert_sector.fwimage import CHIP_IDS
from cert_sector.fwimage import check_header as check_firmware_header
from cert_sector.keys import key_id_hex
from cert_sector.release import (
    check_tag,
    download_url,
    latest_url,
    tag_from_location,
    tag_from_pointer,
)
from publisher import manifest_format as mf
from publisher import sector_format as sf
from publisher.release.chain import verify_chain
from publisher.release.errors import MissingAssetError, VerifyError
from publisher.release.preflight import KNOWN_BOARDS
from publisher.release.web import Browser
from publisher.timefmt import format_date

# SHA256SUMS lists a handful of assets: a few hundred bytes.
MAX_SUMS_SIZE = 4096
MAX_POINTER_SIZE = MAX_TAG + 2
# The bytes of a firmware image's header a device checks before writing (rule F1).
FIRMWARE_HEAD = 16


@dataclass
class Trust:
    """What the verifier starts from: pinned roots, or a trusted cert sector's bytes."""

    roots: list[bytes] = field(default_factory=list)
    threshold: int = 1
    sector: bytes | None = None


@dataclass
class VerifyResult:
    repo: str
    tag: str
    sequence: int
    version: str
    channel: str
    kind: str
    boards: list[str]
    files: int
    pack_size: int
    sector_sequence: int
    beta_pointer: str | None
    requests: int = 0
    warnings: list[str] = field(default_factory=list)
    # A staged release's roll-out ("10 %", "halted at 10 %", with its roll-out sequence
    # in `rollout_seq`); None: no rollout.lcm, the release is out to the whole fleet.
    rollout: str | None = None
    rollout_seq: int | None = None

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _trust_error(asset: str, exc: TrustError) -> VerifyError:
    return VerifyError(asset, f"{exc} ({type(exc).__name__})")


def _expired(data: bytes, now: int | None) -> VerifyError:
    """Rule S7's refusal with dates instead of the device's Unix seconds."""
    expired = sf.parse_sector(data).expires
    when = f" (now {format_date(now)})" if now is not None else ""
    return VerifyError(SECTOR_ASSET, f"expired on {format_date(expired)}{when} (ExpiredError)")


def trusted_of(trust: Trust, repo: str) -> sf.Sector | sf.PinnedRoots:
    """What `trust` is to the sector rules: its sector, else its pinned roots."""
    if trust.sector is not None:
        return sf.parse_sector(trust.sector)
    return sf.PinnedRoots(repo, trust.roots, trust.threshold)


def check_sector(data: bytes, repo: str, trust: Trust, now: int | None) -> sf.Sector:
    try:
        if trust.sector is not None:
            trusted = sf.parse_sector(trust.sector)
            if data == trust.sector:
                # The very sector the caller trusts: only its repo and own roots to check.
                return sf.verify_sector(
                    data, sf.PinnedRoots(repo, trusted.roots, trusted.threshold), now
                )
            if trusted.repo != repo:
                raise VerifyError("--certs", f"is a sector for {trusted.repo}, not {repo}")
            return sf.verify_sector(data, trusted, now)
        return sf.verify_sector(data, sf.PinnedRoots(repo, trust.roots, trust.threshold), now)
    except ExpiredError:
        raise _expired(data, now) from None
    except SignatureError as exc:
        raise _with_root_ids(_trust_error(SECTOR_ASSET, exc), data, trust) from None
    except TrustError as exc:
        raise _trust_error(SECTOR_ASSET, exc) from None


def _with_root_ids(error: VerifyError, data: bytes, trust: Trust) -> VerifyError:
    """A sector not signed by the trusted roots, with the key ids on both sides: the usual
    cause is a --root (or --certs) that is not the repo's."""
    try:
        sector = sf.parse_sector(data)
        trusted = sf.parse_sector(trust.sector).roots if trust.sector else trust.roots
    except TrustError:
        return error
    ids = ", ".join
    return VerifyError(
        SECTOR_ASSET,
        f"{error.reason}; its roots are {ids(key_id_hex(k) for k in sector.roots)}, "
        f"the trusted ones {ids(key_id_hex(k) for k in trusted)}",
    )


class _FileChecker:
    """Hashes the pack's bytes file by file (manifest order) and checks each file's SHA-256."""

    def __init__(self, files: list[mf.FileEntry]) -> None:
        self._files = iter(files)
        self._current: mf.FileEntry | None = None
        self._left = 0
        self._hash = hashlib.sha256()
        self._next()

    def _next(self) -> None:
        # Finish every file whose bytes are all in (empty files at once).
        while True:
            current = self._current
            if current is not None:
                if self._left:
                    return
                if self._hash.digest() != current.sha256:
                    raise VerifyError(
                        PACK_ASSET,
                        f"file {current.path} does not match its SHA-256 in the manifest",
                    )
            self._current = next(self._files, None)
            if self._current is None:
                return
            self._left = self._current.size
            self._hash = hashlib.sha256()

    def feed(self, view: memoryview) -> None:
        while view and self._current is not None:
            take = view[: self._left]
            self._hash.update(take)
            self._left -= len(take)
            view = view[len(take) :]
            self._next()

    def done(self) -> bool:
        return self._current is None


def tls_anchors(trust: Trust) -> list[bytes]:
    """The CAs a device would check the hosts' TLS with: those of the sector it trusts."""
    if trust.sector is None:
        return []
    try:
        return sf.parse_sector(trust.sector).cas
    except TrustError as exc:
        raise VerifyError("--certs", str(exc)) from None


class Verifier:
    def __init__(
        self,
        web_url: str,
        repo: str,
        trust: Trust,
        now: int | None = None,
        ca_file: str | None = None,
        board: str | None = None,
        chain: bool = False,
        known: list[bytes] | None = None,
        ranges: bool = False,
        stale_pointers: bool = False,
    ) -> None:
        self.web_url = web_url.rstrip("/")
        self.repo = repo
        self.trust = trust
        self.now = now
        self.board = board
        self.chain = chain  # also verify the release's certs.chain (a mirror serves it)
        self.known = known  # the chain's members served before (rule C5)
        self.ranges = ranges  # also check that the host serves the pack by byte ranges
        # An older full release's stale beta.tag is a note, not a failure (`release verify
        # --tag`); a mirror, which serves the pointer, never takes one that fails.
        self.stale_pointers = stale_pointers
        self.pack_head = b""
        self.browser = Browser(tls_anchors(trust), ca_file)

    def url(self, tag: str, name: str) -> str:
        return download_url(self.web_url, self.repo, tag, name)

    def resolve(self, tag: str | None, channel: str) -> str:
        """The tag to verify: given, the latest full release, or the beta pointer's."""
        if tag is not None:
            try:
                return check_tag(tag)
            except TrustError as exc:
                raise VerifyError("--tag", str(exc)) from None
        # As the device (lcm_device/update.py): /releases/latest redirects to the latest
        # full release, or, on a static host (`lcm release export`), is a pointer file.
        answer = self.browser.location(
            latest_url(self.web_url, self.repo), "latest release", MAX_POINTER_SIZE
        )
        try:
            if isinstance(answer, bytes):
                latest: str | None = tag_from_pointer(answer)
            else:
                latest = tag_from_location(answer, self.repo)
        except TrustError as exc:
            raise VerifyError("latest release", str(exc)) from None
        if latest is None:
            raise VerifyError("latest release", f"{self.repo} has no published full release")
        if channel != "beta":
            return latest
        # Beta: that release's beta.tag names the newest release of any channel; without
        # one (404), the latest full release.
        try:
            pointer = self.browser.fetch(
                self.url(latest, BETA_POINTER_ASSET), MAX_POINTER_SIZE, BETA_POINTER_ASSET
            )
        except MissingAssetError:
            return latest
        try:
            return tag_from_pointer(pointer)
        except TrustError as exc:
            raise VerifyError(BETA_POINTER_ASSET, f"of the latest release: {exc}") from None

    def sector(self, tag: str, data: bytes) -> sf.Sector:
        """The release's verified sector `data`: against the trust, and through its
        certs.chain where that is walked. A mirror (`chain`) walks the chain of every
        release that has one (it serves it: every link must hold); otherwise it is walked
        where a device walks it (lcm_device/metadata.py): the trust (a sector older than
        `data`, or pinned roots) does not sign it."""
        direct = None
        try:
            sector = check_sector(data, self.repo, self.trust, self.now)
        except VerifyError as exc:
            if not (self.chain or self._device_walks(data)):
                raise
            direct = exc  # perhaps root rotations the trust missed: the chain bridges them
        if direct is None and not self.chain:
            return sector
        try:
            chain = self.browser.fetch(self.url(tag, CHAIN_ASSET), MAX_CHAIN_SIZE, CHAIN_ASSET)
        except MissingAssetError:  # a release without a chain: its sector alone
            if direct is None:
                return sector
            if self.chain:
                raise direct from None
            raise VerifyError(direct.asset, f"{direct.reason}; no {CHAIN_ASSET} in {tag}") from None
        try:
            # Parsed before: a trust that does not parse failed check_sector already.
            sector = verify_chain(chain, data, trusted_of(self.trust, self.repo), self.known)
        except TrustError as exc:
            why = f"{str(exc).removeprefix(CHAIN_ASSET + ': ')} ({type(exc).__name__})"
            if direct is not None:  # the sector's own failure first, as a device logs it
                raise VerifyError(direct.asset, f"{direct.reason}; {CHAIN_ASSET}: {why}") from None
            raise VerifyError(CHAIN_ASSET, why) from None
        try:
            sf.check_expiry(sector, self.now)  # Rule S7 for the end of the chain
        except ExpiredError:
            raise _expired(data, self.now) from None
        return sector

    def _device_walks(self, data: bytes) -> bool:
        """Whether a device that holds the trust walks the chain to `data`: `data` is
        newer and not signed by the trusted roots (rules S4, S6)."""
        trusted = trusted_of(self.trust, self.repo)  # pinned roots: a board with no sector
        try:
            fresh = sf.parse_sector(data)
            sf.verify_sector(data, trusted, None)
        except SignatureError:
            return fresh.seq > trusted.seq
        except TrustError:
            return False
        return False

    def manifest(
        self, tag: str, sector: sf.Sector, installed_seq: int
    ) -> tuple[mf.Manifest, bytes]:
        data = self.browser.fetch(
            self.url(tag, MANIFEST_ASSET), mf.MAX_MANIFEST_SIZE, MANIFEST_ASSET
        )
        try:
            # Any channel here: which channel a device follows decided the tag already.
            m = mf.verify_manifest(
                data, sector, self.repo, installed_seq, board=self.board, channel="beta"
            )
        except TrustError as exc:
            raise _trust_error(MANIFEST_ASSET, exc) from None
        if self.board is not None and m.kind == "firmware" and self.board not in CHIP_IDS:
            raise VerifyError(
                MANIFEST_ASSET,
                f"is a firmware release, which {self.board} boards cannot install "
                "(no OTA partitions)",
            )
        if "v" + m.version != tag:
            raise VerifyError(
                MANIFEST_ASSET, f"is for version {m.version}, but the release tag is {tag}"
            )
        if m.pack_name != PACK_ASSET:
            raise VerifyError(MANIFEST_ASSET, f"names pack {m.pack_name!r}, not {PACK_ASSET}")
        return m, data

    def pack(self, tag: str, m: mf.Manifest) -> bytes:
        """Stream the pack, checking each file's hash as its bytes pass; its SHA-256."""
        whole = hashlib.sha256()
        files = _FileChecker(m.files)
        got = 0
        for chunk in self.browser.stream(self.url(tag, PACK_ASSET), m.pack_size, PACK_ASSET):
            whole.update(chunk)
            if len(self.pack_head) < FIRMWARE_HEAD:
                self.pack_head += chunk[: FIRMWARE_HEAD - len(self.pack_head)]
            got += len(chunk)
            files.feed(memoryview(chunk))
        if got != m.pack_size or not files.done():
            raise VerifyError(PACK_ASSET, f"is {got} bytes, the manifest declares {m.pack_size}")
        if whole.digest() != m.pack_sha256:
            raise VerifyError(PACK_ASSET, "does not match the manifest's pack SHA-256")
        if self.board is not None and m.kind == "firmware":
            try:
                check_firmware_header(self.pack_head, self.board)  # the device's rule F1
            except TrustError as exc:
                raise _trust_error(PACK_ASSET, exc) from None
        return whole.digest()

    def ranged(self, tag: str, m: mf.Manifest) -> None:
        """Devices read the pack by byte ranges and refuse a 200 to a Range request
        (lcm_device/http.py): a host that ignores Range serves every byte right, yet no
        device can install from it. So ask, as a device does, for the pack's first byte."""
        if not m.pack_size:
            return
        url = self.url(tag, PACK_ASSET)
        status, content_range, body, answered = self.browser.ranged(url, 0, 0, PACK_ASSET)
        if status == 206 and content_range == f"bytes 0-0/{m.pack_size}":
            if body == self.pack_head[:1]:
                return
            got = f"206 with {len(body)} byte(s) that are not the pack's first"
        elif status == 206:
            got = f"206 with Content-Range {content_range[:60]!r}"
        else:
            got = f"{status} (the whole file)" if status == 200 else str(status)
        host = urlsplit(answered).netloc or answered
        raise VerifyError(
            PACK_ASSET,
            f"{host} does not serve byte ranges (asked for Range: bytes=0-0 of {url}, it "
            f"answered {got}, not 206 with Content-Range 'bytes 0-0/{m.pack_size}'): devices "
            "read the pack by ranges and cannot install from this host; serve the files with "
            "a web server that answers Range requests (nginx, Apache, a CDN or object store; "
            "not `python -m http.server`)",
        )

    def sums(self, tag: str, expected: dict[str, bytes]) -> None:
        data = self.browser.fetch(self.url(tag, SUMS_ASSET), MAX_SUMS_SIZE, SUMS_ASSET)
        want = "".join(f"{digest.hex()}  {name}\n" for name, digest in sorted(expected.items()))
        if data != want.encode():
            raise VerifyError(SUMS_ASSET, "does not list the SHA-256 of the verified assets")

    def pointer(self, tag: str, m: mf.Manifest, sector: sf.Sector) -> str | None:
        """A full release's beta.tag must name a release at least as new as itself."""
        if m.channel != "stable":
            return None
        data = self.browser.fetch(
            self.url(tag, BETA_POINTER_ASSET), MAX_POINTER_SIZE, BETA_POINTER_ASSET
        )
        try:
            target = tag_from_pointer(data)
        except TrustError as exc:
            raise VerifyError(BETA_POINTER_ASSET, str(exc)) from None
        if target == tag:
            return target
        try:
            other, _ = self.manifest(target, sector, -1)
        except VerifyError as exc:
            raise VerifyError(
                BETA_POINTER_ASSET, f"points at {target}, which fails: {exc}"
            ) from None
        if other.seq < m.seq:
            raise VerifyError(
                BETA_POINTER_ASSET,
                f"points at {target} (sequence {other.seq}), older than {tag} ({m.seq})",
            )
        return target

    def rollout(self, tag: str, m: mf.Manifest, sector: sf.Sector) -> ro.Rollout | None:
        """A staged release's rollout.lcm, as a device checks it; None when it has none."""
        try:
            data = self.browser.fetch(
                self.url(tag, ROLLOUT_ASSET), ro.MAX_ROLLOUT_SIZE, ROLLOUT_ASSET
            )
        except MissingAssetError:
            return None  # optional: the release goes to the whole fleet
        try:
            doc = ro.verify_rollout(data, sector, self.repo, tag, 0, m.channel)  # R1-R3
        except TrustError as exc:
            raise _trust_error(ROLLOUT_ASSET, exc) from None
        if doc.manifest_seq != m.seq:  # R4
            raise VerifyError(
                ROLLOUT_ASSET,
                f"names manifest sequence {doc.manifest_seq}, the release's is {m.seq}",
            )
        return doc

    def run(self, tag: str | None, channel: str, installed_seq: int = -1) -> VerifyResult:
        try:
            asked = tag
            tag = self.resolve(tag, channel)
            try:
                sector_bytes = self.browser.fetch(
                    self.url(tag, SECTOR_ASSET), sf.MAX_SECTOR_SIZE, SECTOR_ASSET
                )
            except MissingAssetError as exc:
                if asked is None:
                    raise
                # --tag is not checked against the host first: a missing first asset is
                # the usual sign of a tag that has no release.
                raise MissingAssetError(
                    SECTOR_ASSET, f"{exc.reason}: is there a release tagged {asked!r}?"
                ) from None
            sector = self.sector(tag, sector_bytes)
            m, manifest_bytes = self.manifest(tag, sector, installed_seq)
            pack_digest = self.pack(tag, m)
            self.sums(
                tag,
                {
                    MANIFEST_ASSET: hashlib.sha256(manifest_bytes).digest(),
                    PACK_ASSET: pack_digest,
                    SECTOR_ASSET: hashlib.sha256(sector_bytes).digest(),
                },
            )
            notes: list[str] = []
            try:
                pointer = self.pointer(tag, m, sector)
            except VerifyError as exc:
                # Devices read beta.tag of the latest full release only: an older release's
                # stale pointer (its target deleted or yanked since) is for information.
                latest = None
                if self.stale_pointers and asked is not None and m.channel == "stable":
                    # Which is latest cannot be told: the pointer's error stands.
                    with contextlib.suppress(VerifyError):
                        latest = self.resolve(None, "stable")
                if latest is None or latest == tag:
                    raise
                pointer = None
                notes.append(f"{exc}: devices read it only from the latest full release")
            doc = self.rollout(tag, m, sector)
            if self.ranges:  # last: every byte is right, but can devices read them?
                self.ranged(tag, m)
        finally:
            self.browser.close()
        result = VerifyResult(
            self.repo,
            tag,
            m.seq,
            m.version,
            m.channel,
            m.kind,
            list(m.boards),
            len(m.files),
            m.pack_size,
            sector.seq,
            pointer,
            self.browser.requests,
            [
                f"the release is for board {b!r}, which no lcm device reports "
                f"({', '.join(KNOWN_BOARDS)}) unless configured so: check the name"
                for b in m.boards
                if b not in KNOWN_BOARDS
            ]
            + notes,
        )
        if doc is not None:
            result.rollout = ("halted at " if doc.halted else "") + f"{doc.share} %"
            result.rollout_seq = doc.seq
        return result


def verify_release(
    web_url: str,
    repo: str,
    trust: Trust,
    *,
    tag: str | None = None,
    channel: str = "stable",
    installed_seq: int = -1,
    now: int | None = None,
    ca_file: str | None = None,
    board: str | None = None,
) -> VerifyResult:
    """Verify a release; over HTTPS the TLS anchors are `ca_file`, else the CAs of the
    trusted sector (as on a device), else the system's. With `board`, also what a
    device of that board checks. Unlike a mirror's verification (which reads whole
    assets), it also checks that the host serves the pack by byte ranges, as devices
    read it."""
    if channel not in ("stable", "beta"):
        raise VerifyError("--channel", f"must be stable or beta, not {channel!r}")
    if not web_url.startswith(("http://", "https://")):
        raise VerifyError("--web-url", f"must be an http(s) URL, got {web_url!r}")
    verifier = Verifier(web_url, repo, trust, now, ca_file, board, ranges=True, stale_pointers=True)
    return verifier.run(tag, channel, installed_seq)
