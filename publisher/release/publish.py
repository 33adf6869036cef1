"""`lcm release publish`: build, sign, upload to a draft, publish, move the beta pointer.

The procedure is a sequence of idempotent steps, so a run killed at any
point and started again ends with exactly one complete published release:

 1. Build the pack from SOURCE (nothing touches the network before it is valid).
 2. Read every release of the repo, drafts too, and each one's manifest, and
    refuse what devices would refuse (publisher/release/preflight.py). The new
    sequence comes from the host's clock and is above all of them
    (publisher/release/sequence.py: deleting a release never lets its sequence
    be used again). `--dry-run` stops here, after signing in memory.
 3. Refuse a tag that is already published with different content, unless
    `--force` (which takes a new sequence number and replaces it in place,
    as a draft again while its assets change). Published with this content
    but missing assets this run can prove (the pack the signed manifest
    describes, the sums, the chain, the requested roll-out): they are uploaded.
 4. Reuse the draft with this tag (deleting duplicate drafts), or create it.
    A signed manifest already in that draft is kept when it describes the same
    content, so a re-run uploads nothing that is already there.
 5. Upload every asset (identical ones are kept, partial or different ones
    replaced, strays removed), wait for the host's clock to pass the sequence
    (rule Q2), list the releases again (another publish may have raced this
    one to the same or a higher sequence: refused), then publish the draft.
 6. Point `beta.tag` on the latest full release at the newest release, from
    the releases listed again (a publish that ended meanwhile counts).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from github import GithubException
from github.GitRelease import GitRelease
from github.GitReleaseAsset import GitReleaseAsset
from github.Repository import Repository

from cert_sector.assets import (
    BETA_POINTER_ASSET,
    CHAIN_ASSET,
    MANIFEST_ASSET,
    ROLLOUT_ASSET,
    SECTOR_ASSET,
    SUMS_ASSET,
)
from cert_sector.errors import TrustError
from cert_sector.keys import key_id_hex
from cert_sector.rollout import Rollout
from cert_sector.semver import parse_version
from publisher import manifest_format as mf
from publisher import sector_format as sf
from publisher.release import firmware, mpy, preflight
from publisher.release.build import ReleaseSpec, release_assets, version_from_tag
from publisher.release.chain import build_chain, published_sectors
from publisher.release.errors import HostError, ReleaseConflictError, SourceError
from publisher.release.github import (
    AssetTakenError,
    ProgressCallback,
    Session,
    asset_matches,
    fetcher,
)
from publisher.release.sequence import HostClock, Ticker, next_sequence, parse_http_date
from publisher.release.source import MAX_PACK_SIZE, collect
from publisher.signing import Signer

# While a draft's manifest.lcm is being replaced, the old one is kept under this
# name, so its sequence number stays on record (see set_aside_old_manifest).
REPLACED_MANIFEST = "manifest.lcm.replaced"
# Publisher.reached: how far a run got on the host.
DRAFT = "draft"
PUBLISHING = "publishing"
PUBLISHED = "published"

# `lcm release yank` turns a release back into a draft named with this prefix;
# publish refuses to resume such a draft unless --force (it would un-yank it).
YANKED_PREFIX = "yanked: "

# Rounds of "list the releases, point beta.tag at the newest, list again" before
# giving up on a repo where publishes keep landing (see Publisher.finish).
POINTER_ROUNDS = 3
# Times a run signs again above another tag's publish that took its sequence.
RACE_ROUNDS = 3


@dataclass
class PublishRequest:
    source: Path
    repo: str
    tag: str
    signer: Signer
    sector: bytes | None = None
    sector_file: Path | None = None  # where `sector` was read from (--certs): errors name it
    kind: str = "files"
    prerelease: bool = False
    boards: list[str] = field(default_factory=list)
    min_manager: str = ""
    compile_mpy: bool = False
    notes: str = ""
    seq: int | None = None
    force: bool = False
    max_size: int = MAX_PACK_SIZE
    dry_run: bool = False
    new_board: bool = False
    downgrade: bool = False
    rollout: int | None = None  # percent of the fleet (staged roll-out; release/rollout.py)
    app: bool = True  # an app folder (rule P6); False: the manager's own modules (--manager)


@dataclass
class PublishResult:
    tag: str
    sequence: int
    channel: str
    kind: str
    state: str  # "published", "already published" or "dry run"
    url: str
    assets: dict[str, str] = field(default_factory=dict)
    beta_pointer: str | None = None
    warnings: list[str] = field(default_factory=list)
    retries: int = 0

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class KnownRelease:
    """A release of the repo and what its manifest says (None: no readable manifest).

    `max_seq` also counts a manifest set aside while being replaced (REPLACED_MANIFEST),
    so a run killed between replacing and uploading never forgets a used sequence.
    """

    release: GitRelease
    manifest: mf.Manifest | None
    manifest_bytes: bytes | None
    max_seq: int | None = None


def build_spec(req: PublishRequest) -> ReleaseSpec:
    version = version_from_tag(req.tag)
    if req.kind == "firmware":
        if req.compile_mpy:
            raise SourceError("--compile-mpy is for app folders, not firmware")
        files = firmware.load_firmware(req.source, list(req.boards))
    elif req.kind == "files":
        files = collect(req.source, req.max_size)
        if req.compile_mpy:
            files = mpy.compile_files(files)
        if req.app:
            preflight.check_app_entry([f.path for f in files])
    else:
        raise SourceError(f"--kind must be files or firmware, not {req.kind!r}")
    channel = "beta" if req.prerelease else "stable"
    return ReleaseSpec(
        req.repo, version, req.kind, channel, list(req.boards), req.min_manager, files
    )


def read_known(session: Session, release: GitRelease, warnings: list[str]) -> KnownRelease:
    known = KnownRelease(release, None, None)
    # The release list already embeds each release's assets: no request per release.
    for asset in release.assets:
        if asset.name not in (MANIFEST_ASSET, REPLACED_MANIFEST) or asset.state != "uploaded":
            continue
        data = session.download(asset, mf.MAX_MANIFEST_SIZE)
        try:
            m = mf.parse_manifest(data)
        except TrustError as exc:
            warnings.append(f"release {release.tag_name}: unreadable {asset.name} ignored ({exc})")
            continue
        known.max_seq = max(m.seq, known.max_seq or 0)
        if asset.name == MANIFEST_ASSET:
            known.manifest, known.manifest_bytes = m, data
    return known


def check_sector(data: bytes, repo: str, signer: Signer, where: str) -> sf.Sector:
    """The repo's cert sector must be self-consistent and list the signing key."""
    try:
        parsed = sf.parse_sector(data)
        sector = sf.verify_sector(data, sf.PinnedRoots(repo, parsed.roots, parsed.threshold))
    except TrustError as exc:
        raise SourceError(f"cert sector {where} is not valid for {repo}: {exc}") from None
    if signer.public_key not in sector.release_keys:
        listed = ", ".join(key_id_hex(k) for k in sector.release_keys)
        raise SourceError(
            f"--key {signer.key_id.hex()} is not a release key of the cert sector {where} "
            f"(sequence {sector.seq}; release keys: {listed}); "
            "add it with `lcm certs build` and pass the new sector with --certs"
        )
    return sector


def check_key_scope(sector: sf.Sector, signer: Signer, spec: ReleaseSpec) -> None:
    """Refuse to sign outside the key's scope in the sector (rule M7; devices refuse it too)."""
    try:
        mf.check_scope(signer.key_id, sector.scope(signer.key_id), spec.channel, spec.boards)
    except TrustError as exc:
        raise SourceError(f"refusing to sign: {exc}") from None


# How far past the host's clock a sequence may be before its signature decides whether
# it counts (Publisher.ignore_foreign_sequences): a day of clock skew.
MAX_AHEAD_S = 86400


def is_yanked(release: GitRelease) -> bool:
    """A draft that `lcm release yank` made of a published release (its name says so)."""
    return release.draft and (release.name or "").startswith(YANKED_PREFIX)


def was_published(release: GitRelease) -> bool:
    """Published, or yanked (a draft again, but devices may have installed it)."""
    return not release.draft or is_yanked(release)


def newest_sector(session: Session, known: list[KnownRelease]) -> tuple[bytes, str] | None:
    """The highest-sequence certs.sector of the repo's published releases, and its tag.

    Devices may hold any sector the repo ever published, so every published
    release's sector counts, a yanked one's too (a device that installed it holds
    its sector, and refuses an older one); each distinct one is downloaded once
    (releases list their assets with the host's digest).
    """
    best: tuple[int, bytes, str] | None = None
    seen: dict[str, bytes] = {}
    for k in known:
        if not was_published(k.release):
            continue
        for asset in k.release.assets:
            if asset.name != SECTOR_ASSET or asset.state != "uploaded":
                continue
            key = asset.digest or f"id:{asset.id}"
            if key not in seen:
                seen[key] = session.download(asset, sf.MAX_SECTOR_SIZE)
            try:
                seq = sf.parse_sector(seen[key]).seq
            except TrustError:
                continue
            if best is None or seq > best[0]:
                best = (seq, seen[key], k.release.tag_name)
    return None if best is None else (best[1], best[2])


def newest_version(known: list[KnownRelease], channel: str, tag: str) -> tuple[str, str] | None:
    """(version, tag) of the highest version published on `channel`, other than `tag`."""
    versions = [
        (parse_version(k.manifest.version), k.manifest.version, k.release.tag_name)
        for k in known
        if k.manifest is not None
        and not k.release.draft
        and k.manifest.channel == channel
        and k.release.tag_name != tag
    ]
    if not versions:
        return None
    _, version, newest_tag = max(versions)
    return version, newest_tag


def host_clock(repo: Repository, ticker: Ticker) -> HostClock:
    """The host's clock from the `Date` of its last answer (ours when it sent none)."""
    headers = {str(k).lower(): str(v) for k, v in (repo.raw_headers or {}).items()}
    date = parse_http_date(headers.get("date"))
    return HostClock(int(time.time()) if date is None else date, ticker)


def _highest(known: list[KnownRelease]) -> KnownRelease | None:
    with_seq = [k for k in known if k.max_seq is not None]
    return max(with_seq, key=lambda k: k.max_seq or 0, default=None)


def _assets_hold(session: Session, assets: list[GitReleaseAsset], wanted: dict[str, bytes]) -> bool:
    """Whether `assets` are exactly `wanted`: those names (no other), those bytes."""
    present = {a.name: a for a in assets}
    if present.keys() != wanted.keys():
        return False
    for name, data in wanted.items():
        asset = present.get(name)
        if asset is None or not asset_matches(asset, data, fetcher(session, asset, len(data))):
            return False
    return True


def _manifest_ids(release: GitRelease) -> list[tuple[int, str, str]]:
    """The release's manifest assets as listed (a replaced one gets a new id)."""
    return sorted(
        (a.id, a.name, a.state)
        for a in release.assets
        if a.name in (MANIFEST_ASSET, REPLACED_MANIFEST)
    )


def _difference(spec: ReleaseSpec, m: mf.Manifest) -> str:
    """What differs between the content being published and a published manifest."""
    for field_name in ("kind", "channel", "min_manager"):
        if getattr(m, field_name) != getattr(spec, field_name):
            return f"its {field_name} is {getattr(m, field_name)!r}"
    if list(m.boards) != list(spec.boards):
        return f"its boards are {','.join(m.boards) or 'any'}"
    published = {f.path: f.sha256 for f in m.files}
    mine = {f.path: f.sha256 for f in spec.entries}
    changed = sorted(p for p in published.keys() | mine.keys() if published.get(p) != mine.get(p))
    if changed:
        if len(changed) == 1:
            return f"file {changed[0]} differs"
        return f"files {changed[0]} and {len(changed) - 1} more differ"
    return "its manifest differs"


class Publisher:
    def __init__(
        self,
        session: Session,
        req: PublishRequest,
        progress: ProgressCallback | None = None,
        ticker: Ticker | None = None,
    ) -> None:
        self.session = session
        self.req = req
        self.progress = progress
        self.ticker = ticker or Ticker()
        self.warnings: list[str] = []
        # How far this run got on the host, for a user who stops it (Ctrl-C): None (nothing
        # written), DRAFT, PUBLISHING (the call that makes it live was sent) or PUBLISHED.
        self.reached: str | None = None

    def run(self) -> PublishResult:
        req, session = self.req, self.session
        preflight.check_boards(req.boards, req.kind, req.new_board)
        spec = build_spec(req)
        repo = session.repo(req.repo)
        clock = host_clock(repo, self.ticker)
        known = [read_known(session, r, self.warnings) for r in session.releases(repo)]
        sector_bytes = self.choose_sector(known, int(clock.now()), spec)
        self.ignore_foreign_sequences(known, sf.parse_sector(sector_bytes), int(clock.now()))

        same_tag = [k for k in known if k.release.tag_name == req.tag]
        published = next((k for k in same_tag if not k.release.draft), None)
        drafts = sorted((k for k in same_tag if k.release.draft), key=lambda k: k.release.id)
        if published is not None:
            self.reached = PUBLISHED
            done = self.already_published(spec, published, sector_bytes, known)
            if isinstance(done, PublishResult) and req.dry_run:
                done.warnings = self.warnings  # a dry run leaves even the beta pointer alone
                return done
            if isinstance(done, PublishResult):
                return self.finish(repo, known, done)
            if not req.force:
                raise ReleaseConflictError(
                    f"{req.tag} is already published {done}; publish a new tag, "
                    "or pass --force to replace it under a new sequence number"
                )
            drafts = [published, *drafts]
        yanked = next((k for k in drafts if is_yanked(k.release)), None)
        if yanked is not None and not req.force:
            raise ReleaseConflictError(
                f"{req.tag} was yanked ({yanked.release.name}); publish a new tag, or pass "
                "--force to publish it again under a new sequence number"
            )
        preflight.check_version_order(
            spec.version, spec.channel, newest_version(known, spec.channel, req.tag), req.downgrade
        )

        # The draft being resumed (for --force: the replaced release) may keep its own
        # manifest only when it describes this very content; otherwise its sequence
        # counts as used too (see choose_manifest), so --force never reuses one.
        # Everything is decided before the first write to the host.
        resume = drafts[0] if drafts else None
        highest = _highest(
            [k for k in known if resume is None or k.release.id != resume.release.id]
        )
        keep_yanked = yanked is None
        manifest_bytes, seq = self.choose_manifest(spec, resume, highest, clock, keep_yanked)
        chain = build_chain(published_sectors(session, known), sector_bytes)
        assets = self.release_assets(spec, manifest_bytes, seq, sector_bytes, chain)
        if req.dry_run:
            return self.dry_run(repo, spec, seq, assets)
        self.reached = DRAFT
        if published is not None:
            # --force: back to a draft while its assets change, so no device sees a mix.
            session.call(
                f"turning {req.tag} back into a draft",
                lambda: published.release.update_release(
                    req.tag, req.notes, draft=True, prerelease=req.prerelease
                ),
            )
        draft = self.find_or_create_draft(repo, drafts)

        outcomes: dict[str, str] = {}
        for _ in range(RACE_ROUNDS):
            outcomes.update(self.upload_assets(draft, assets, manifest_bytes, seq, clock))
            known, rival = self.check_not_overtaken(repo, known, spec, seq)
            if rival is None:
                break
            # Another run took this sequence (or a higher one) for an older version: this
            # one is signed again above it, so the newer version stays the newest.
            manifest_bytes, seq = self.choose_manifest(spec, None, rival, clock)
            assets = self.release_assets(spec, manifest_bytes, seq, sector_bytes, chain)
        else:
            raise ReleaseConflictError(
                f"other publishes kept taking the sequence of {req.tag} ({seq} last); "
                "nothing was published: re-run once they have ended"
            )
        self.reached = PUBLISHING
        released = session.call(
            f"publishing {req.tag}",
            lambda: draft.update_release(
                req.tag,
                req.notes,
                draft=False,
                prerelease=req.prerelease,
                make_latest="false" if req.prerelease else "true",
            ),
            fresh=True,
        )
        self.reached = PUBLISHED
        result = PublishResult(
            req.tag, seq, spec.channel, spec.kind, "published", released.html_url, outcomes
        )
        return self.finish(repo, known, result)

    def release_assets(
        self, spec: ReleaseSpec, manifest: bytes, seq: int, sector: bytes, chain: bytes
    ) -> dict[str, bytes]:
        """Every asset of the release signed under `seq`, in upload order."""
        req = self.req
        assets = release_assets(
            manifest, spec.pack, sector, None if req.prerelease else req.tag, chain
        )
        if req.rollout is not None:
            # A staged roll-out: the signed share, in place before the release is live.
            from publisher.release.rollout import check_share, sign_rollout

            doc = Rollout(req.repo, req.tag, seq, 1, check_share(req.rollout))
            assets[ROLLOUT_ASSET] = sign_rollout(req.signer, doc)
        return assets

    def upload_assets(
        self,
        draft: GitRelease,
        assets: dict[str, bytes],
        manifest_bytes: bytes,
        seq: int,
        clock: HostClock,
    ) -> dict[str, str]:
        """Make the draft hold exactly `assets`, then wait for rule Q2; the outcomes."""
        req, session = self.req, self.session
        # The draft was created or listed a moment ago: a 404 about it is the host
        # lagging (GitHub is eventually consistent), retried a few times (fresh=True).
        outcomes: dict[str, str] = {}
        present = session.assets(draft, fresh=True)
        if self.set_aside_old_manifest(draft, present, manifest_bytes):
            present = session.assets(draft, fresh=True)
        for name, data in assets.items():
            outcomes[name] = session.upload(
                draft, name, data, self.progress, known=present, fresh=True
            )
        present = session.assets(draft, fresh=True)
        for asset in present:
            if asset.name not in assets:
                # A stray (e.g. beta.tag of a run that was not --prerelease) is removed.
                session.call(f"removing {asset.name} from {req.tag}", asset.delete_asset)
                outcomes[asset.name] = "removed"
        if not clock.wait_past(seq):  # Rule Q2
            self.warnings.append(
                f"sequence {seq} is ahead of the host's clock (an earlier --seq?): if this "
                "release is deleted, a later one could get a sequence devices already installed"
            )
        # Listed again and checked last, just before publishing: another run for this tag
        # (a CI job started twice) may have replaced assets of the draft meanwhile.
        if not _assets_hold(session, session.assets(draft, fresh=True), assets):
            raise HostError(
                f"{req.tag}: the draft's assets are not the ones this run uploaded (another "
                f"publish of {req.tag} running at the same time?); nothing was published: re-run"
            )
        return outcomes

    def choose_sector(self, known: list[KnownRelease], now: int, spec: ReleaseSpec) -> bytes:
        """The sector to publish (--certs, else the newest published), checked as devices do."""
        req = self.req
        newest = newest_sector(self.session, known)
        if req.sector is not None:
            data = req.sector
            where = "(--certs)" if req.sector_file is None else f"(--certs {req.sector_file})"
        elif newest is not None:
            data, where = newest[0], f"(from {newest[1]})"
        else:
            raise SourceError(
                f"{req.repo} has no published cert sector yet: pass --certs certs.sector"
            )
        sector = check_sector(data, req.repo, req.signer, where)
        check_key_scope(sector, req.signer, spec)
        preflight.check_sector_is_newest(data, sector, newest, where)
        self.warnings += preflight.expiry_warnings(sector, now, where)
        return data

    def dry_run(
        self, repo: Repository, spec: ReleaseSpec, seq: int, assets: dict[str, bytes]
    ) -> PublishResult:
        """What a real run would upload, after every check; nothing is written to the host."""
        req = self.req
        outcomes = {name: f"would upload {len(data)} bytes" for name, data in assets.items()}
        result = PublishResult(
            req.tag, seq, spec.channel, spec.kind, "dry run", repo.html_url, outcomes
        )
        result.warnings = self.warnings
        result.retries = self.session.retries
        return result

    def relist(self, repo: Repository, known: list[KnownRelease]) -> list[KnownRelease]:
        """The repo's releases listed again; only manifests new since `known` are read."""
        before = {k.release.id: k for k in known}
        fresh = []
        for release in self.session.releases(repo):
            old = before.get(release.id)
            if old is not None and _manifest_ids(old.release) == _manifest_ids(release):
                fresh.append(KnownRelease(release, old.manifest, old.manifest_bytes, old.max_seq))
            else:
                fresh.append(read_known(self.session, release, self.warnings))
        return fresh

    def check_not_overtaken(
        self, repo: Repository, known: list[KnownRelease], spec: ReleaseSpec, seq: int
    ) -> tuple[list[KnownRelease], KnownRelease | None]:
        """The releases listed again just before publishing, and the other tag whose
        manifest (draft or published) has a sequence at or above `seq`, if any.

        Two publishes at once each chose their sequence from the releases listed at their
        start. Each uploads its manifest before this check, so of two runs with one
        sequence the later check sees the other's: at most one publishes with it. The run
        of the newer version signs again above the other (the caller); the run of the
        older one refuses, as it does when a newer version was published meanwhile.
        """
        req = self.req
        fresh = self.relist(repo, known)
        newest = newest_version(fresh, spec.channel, req.tag)
        try:
            preflight.check_version_order(spec.version, spec.channel, newest, req.downgrade)
        except ReleaseConflictError as exc:
            raise ReleaseConflictError(
                f"another publish raced this one, nothing was published: {exc}"
            ) from None
        others = [k for k in fresh if k.release.tag_name != req.tag]
        rival = max(others, key=lambda k: k.max_seq or 0, default=None)
        if rival is None or (rival.max_seq or 0) < seq:
            return fresh, None
        mine = (parse_version(spec.version), req.tag)
        if rival.manifest is not None and (
            (parse_version(rival.manifest.version), rival.release.tag_name) < mine
        ):
            return fresh, rival
        what = "a draft" if rival.release.draft else "published"
        raise ReleaseConflictError(
            f"{rival.release.tag_name} ({what}) got sequence {rival.max_seq} while this run "
            f"prepared {req.tag} under {seq}: another publish raced this one, nothing was "
            "published: re-run once it has ended"
        )

    def already_published(
        self,
        spec: ReleaseSpec,
        published: KnownRelease,
        sector_bytes: bytes,
        known: list[KnownRelease],
    ) -> PublishResult | str:
        """A result when the tag is published with this content, else why not ("with
        different content (...)" or "incomplete (...)").

        A missing asset whose bytes are certain is uploaded (a re-run finishes the job):
        the pack the signed manifest describes, SHA256SUMS (made from the others), the
        sector when the published SHA256SUMS names it, certs.chain, and the roll-out
        document when --rollout asks for one. A present chain or roll-out document is
        kept as it is (`lcm release rollout` moves the latter).
        """
        m, data = published.manifest, published.manifest_bytes
        seq = m.seq if m is not None else "?"
        if m is None or data is None:
            return f"with different content (sequence {seq}: it has no readable manifest.lcm)"
        if not spec.same_content(m):
            return f"with different content (sequence {seq}: {_difference(spec, m)})"
        present = {a.name: a for a in published.release.assets if a.state == "uploaded"}
        wanted = release_assets(data, spec.pack, sector_bytes, None)
        outcomes: dict[str, str] = {}
        missing: list[str] = []
        for name, blob in wanted.items():
            asset = present.get(name)
            if asset is None:
                missing.append(name)
            elif asset_matches(asset, blob, fetcher(self.session, asset, len(blob))):
                outcomes[name] = "kept"
            else:
                return f"with different content (sequence {seq}: its {name} differs)"
        if SECTOR_ASSET in missing and outcomes.get(SUMS_ASSET) != "kept":
            # The manifest does not name its sector: only the published sums say which.
            return (
                f"incomplete (sequence {seq}: its {SECTOR_ASSET} is missing and no "
                f"{SUMS_ASSET} of it names the sector's bytes)"
            )
        extra: dict[str, bytes] = {}
        if ROLLOUT_ASSET not in present and ROLLOUT_ASSET + ".next" in present:
            # A roll-out change (a widening, a halt) killed before its rename: a document
            # of sequence 1 here would undo it; `lcm release rollout` finishes it.
            return (
                f"in the middle of a roll-out change (its {ROLLOUT_ASSET}.next is not in "
                f"place yet): finish it with `lcm release rollout {self.req.tag} ...`"
            )
        if self.req.rollout is not None and ROLLOUT_ASSET not in present:
            # First: the release is live, and without it every device takes it.
            from publisher.release.rollout import check_share, sign_rollout

            doc = Rollout(self.req.repo, self.req.tag, m.seq, 1, check_share(self.req.rollout))
            extra[ROLLOUT_ASSET] = sign_rollout(self.req.signer, doc)
        if CHAIN_ASSET not in present:
            extra[CHAIN_ASSET] = build_chain(published_sectors(self.session, known), sector_bytes)
        restore = {**extra, **{name: wanted[name] for name in missing}}
        for name in restore:
            outcomes[name] = f"would upload {len(restore[name])} bytes"
        state = "already published"
        if restore and not self.req.dry_run:
            state = "published"  # this run finished it
            for name, blob in restore.items():
                outcomes[name] = self.session.upload(
                    published.release, name, blob, self.progress, known=list(present.values())
                )
        return PublishResult(
            self.req.tag,
            m.seq,
            m.channel,
            m.kind,
            state,
            published.release.html_url,
            outcomes,
        )

    def find_or_create_draft(self, repo: Repository, drafts: list[KnownRelease]) -> GitRelease:
        req, session = self.req, self.session
        if drafts:
            for extra in drafts[1:]:
                # A crash between creating a draft and hearing back can leave two.
                session.call(
                    f"deleting a duplicate draft of {req.tag}", extra.release.delete_release
                )
            return drafts[0].release

        def step() -> GitRelease:
            for release in repo.get_releases():
                if release.tag_name == req.tag and release.draft:
                    return release  # the previous attempt did create it
            return repo.create_git_release(
                req.tag,
                name=req.tag,
                message=req.notes,
                draft=True,
                prerelease=req.prerelease,
                make_latest="false",
            )

        return session.call(f"creating the draft {req.tag}", step)

    def ignore_foreign_sequences(
        self, known: list[KnownRelease], sector: sf.Sector, now: int
    ) -> None:
        """Rule Q1 counts the sequences the repo shows; one far past the host's clock is
        counted only when a release key of `sector` signed it. No sequence lcm gives is
        there (`--seq` must be below the clock): it is a manifest signed elsewhere, which
        anyone with the repo's token can plant in a draft, and counted it would have
        this key sign a fast-forwarded sequence (or exhaust the 32 bits)."""
        for k in known:
            if (k.max_seq or 0) <= now + MAX_AHEAD_S:
                continue
            try:
                if k.manifest_bytes is None:
                    raise TrustError("no manifest.lcm")
                body, kid, signature = mf.split_signature(k.manifest_bytes)
                key = sector.release_key(kid)
                if key is None:
                    raise TrustError(f"signed by {kid.hex()}, not a release key of the sector")
                mf.check_signature(hashlib.sha256(body).digest(), key, signature)
                if k.manifest is None or k.manifest.seq != k.max_seq:
                    raise TrustError("its highest sequence is a set-aside manifest's")
            except TrustError as exc:
                self.warnings.append(
                    f"release {k.release.tag_name}: sequence {k.max_seq}, far past the host's "
                    f"clock, ignored ({exc}): check it with `lcm release verify --tag "
                    f"{k.release.tag_name}` and delete it if it is not yours"
                )
                k.max_seq = None

    def choose_manifest(
        self,
        spec: ReleaseSpec,
        draft: KnownRelease | None,
        highest: KnownRelease | None,
        clock: HostClock,
        reuse: bool = True,
    ) -> tuple[bytes, int]:
        """The manifest to upload and its sequence: the draft's own when it still fits."""
        req = self.req
        max_other = (highest.max_seq or 0) if highest else 0
        if draft is not None and draft.manifest is not None and draft.manifest_bytes is not None:
            m = draft.manifest
            reusable = (
                reuse
                and spec.same_content(m)
                and m.key_id == req.signer.key_id
                and m.seq > max_other
                and (req.seq is None or req.seq == m.seq)
            )
            if reusable:
                return draft.manifest_bytes, m.seq
        # Every sequence seen so far counts as used, the resumed draft's too.
        used, where = max_other, highest
        if draft is not None and (draft.max_seq or 0) > used:
            used, where = draft.max_seq or 0, draft
        seq = next_sequence(used, clock, req.seq, where.release.tag_name if where else "-")
        return spec.sign(seq, int(clock.now()), req.signer), seq

    def set_aside_old_manifest(
        self, draft: GitRelease, present: list[GitReleaseAsset], manifest: bytes
    ) -> bool:
        """Rename a different manifest.lcm to REPLACED_MANIFEST rather than deleting it.

        Its sequence stays visible to a re-run until the new manifest is up (the
        set-aside copy is removed with the other strays just before publishing).
        """
        old = next((a for a in present if a.name == MANIFEST_ASSET), None)
        if old is None or old.state != "uploaded":
            return False
        if asset_matches(old, manifest, fetcher(self.session, old, len(manifest))):
            return False
        session = self.session
        for asset in present:
            if asset.name == REPLACED_MANIFEST:
                # An older set-aside copy: the current manifest's sequence is above it.
                session.call(f"removing {REPLACED_MANIFEST}", asset.delete_asset)
        session.call(
            f"setting aside the replaced {MANIFEST_ASSET}",
            lambda: old.update_asset(REPLACED_MANIFEST),
        )
        return True

    def finish(
        self, repo: Repository, known: list[KnownRelease], result: PublishResult
    ) -> PublishResult:
        """Point beta.tag at the newest published release, from the releases listed again
        (not `known`, read at the start: a publish that ended meanwhile may be newer), and
        listed once more after the write: of two runs writing the pointer at once, the
        one whose write lands last sees the other's release and writes again if need be."""
        newest = self.newest_published(repo, known, result)
        for _ in range(POINTER_ROUNDS):
            try:
                result.beta_pointer = self.update_beta_pointer(repo, newest)
            except AssetTakenError:
                pass  # another run wrote the pointer at the same moment: look again
            else:
                if result.beta_pointer is None:
                    break
            latest = self.newest_published(repo, known, result)
            if latest == newest and result.beta_pointer is not None:
                break
            newest = latest
        else:
            self.warnings.append(
                "other releases kept being published while beta.tag was moved: check it "
                "with `lcm release verify --channel beta`"
            )
        result.warnings = self.warnings
        result.retries = self.session.retries
        return result

    def newest_published(
        self, repo: Repository, known: list[KnownRelease], result: PublishResult
    ) -> str:
        """The tag of the highest-sequence published release (this run's counts even when
        the host's listing does not show it published yet)."""
        newest = (result.sequence, result.tag)
        for k in self.relist(repo, known):
            if k.manifest is not None and not k.release.draft and k.release.tag_name != result.tag:
                newest = max(newest, (k.manifest.seq, k.release.tag_name))
        return newest[1]

    def update_beta_pointer(self, repo: Repository, tag: str) -> str | None:
        pointer = move_beta_pointer(self.session, repo, tag)
        if pointer is None:
            self.warnings.append(
                "no full release yet: beta devices find prereleases through beta.tag on the "
                "latest full release, so they cannot see this one until a full release exists"
            )
        return pointer


def latest_full_release(session: Session, repo: Repository) -> GitRelease | None:
    """The release devices reach through /releases/latest (None: no full release)."""

    def latest() -> GitRelease | None:
        try:
            return repo.get_latest_release()
        except GithubException as exc:
            if exc.status == 404:
                return None
            raise

    return session.call("finding the latest full release", latest)


def move_beta_pointer(session: Session, repo: Repository, tag: str) -> str | None:
    """Point beta.tag on the latest full release at `tag`, the newest published release."""
    full = latest_full_release(session, repo)
    if full is None:
        return None
    # The release list embeds the assets: a pointer that is already right costs nothing.
    # fresh: another run moving the pointer at the same moment may have deleted the one
    # listed (a 404), and the retry looks again.
    data = (tag + "\n").encode()
    session.upload(full, BETA_POINTER_ASSET, data, None, "text/plain", full.assets, fresh=True)
    return f"{full.tag_name}/{BETA_POINTER_ASSET} -> {tag}"


def publish(
    session: Session,
    req: PublishRequest,
    progress: ProgressCallback | None = None,
    ticker: Ticker | None = None,
) -> PublishResult:
    """Publish `req`; `ticker` is the local clock rule Q2 waits with (tests pass a fast one)."""
    return Publisher(session, req, progress, ticker).run()
