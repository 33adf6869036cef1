"""A pull-through mirror: `lcm host --mirror OWNER/REPO=PINS` keeps a verified copy of a
repo's releases from an upstream host (github.com, GitHub Enterprise or another lcm host).

Each refresh, per mirrored repo (on a schedule, and on demand: `refresh_now()`, SIGHUP):

  1. the latest full release's tag, through browser URLs as a device finds it;
  2. if it is not mirrored yet, the release is verified exactly as `lcm release verify`
     does (`publisher.release.verify.Verifier`), while its bytes are kept: the cert
     sector against the trusted sector (the newest one this mirror verified, else the
     pinned roots), the manifest's signature, repo and a sequence above the mirrored
     latest's (a roll-back is refused), the pack file by file, SHA256SUMS, and beta.tag;
  3. the release its beta.tag names, if another, is verified the same way;
  4. only then are the verified bytes stored, as a draft first and published after its
     last asset, so no client ever sees half a mirrored release.

A mirrored release changes in two assets only, each verified before it is served: its
beta.tag (a new prerelease moved it) and its roll-out document `rollout.lcm` (a staged
roll-out widened or halted: `lcm release rollout`). The roll-out document is checked
as a device checks it (rules R1-R4 of cert_sector/rollout.py, by the verifier) and
may not go back (R5: a roll-out sequence below the mirrored one is refused, so a lying
upstream cannot narrow or un-halt what the mirror serves). One that disappears
upstream stays served (the publisher replaces it by a delete and a rename: fail-closed,
as a device that saw it waits).

A mirror never serves what a device would refuse: only assets that took part in the
verification are stored (extra upstream assets are left out), and a release that fails
is not stored at all (the failure is logged and kept in `status`). What was mirrored
before stays served. Mirrored releases stay after the upstream deletes them.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cert_sector import rollout as ro
from cert_sector.assets import (
    BETA_POINTER_ASSET,
    CHAIN_ASSET,
    MANIFEST_ASSET,
    MAX_CHAIN_SIZE,
    PACK_ASSET,
    ROLLOUT_ASSET,
    SECTOR_ASSET,
    SUMS_ASSET,
)
from cert_sector.errors import TrustError
from cert_sector.release import tag_from_pointer
from publisher import manifest_format as mf
from publisher import sector_format as sf
from publisher.errors import PublisherError
from publisher.fsutil import write_atomic
from publisher.host import render
from publisher.host.errors import ApiError, HostError
from publisher.host.names import is_repo_name
from publisher.host.store import Asset, Repo, Store
from publisher.release.chain import split_chain
from publisher.release.errors import MissingAssetError, VerifyError
from publisher.release.export import file_sha256
from publisher.release.verify import MAX_POINTER_SIZE, Trust, Verifier, VerifyResult
from publisher.release.web import Browser

log = logging.getLogger("lcm.host.mirror")

DEFAULT_INTERVAL = 300  # seconds between scheduled refreshes
MAX_INTERVAL = 7 * 24 * 3600
MIRROR_ASSETS = (
    SECTOR_ASSET,
    CHAIN_ASSET,
    MANIFEST_ASSET,
    PACK_ASSET,
    SUMS_ASSET,
    BETA_POINTER_ASSET,
    ROLLOUT_ASSET,
)
# What may change in a mirrored release: replaced once verified (the rest never changes).
MUTABLE_ASSETS = (BETA_POINTER_ASSET, ROLLOUT_ASSET)
TRUSTED_SECTOR = "trusted.sector"
SERVED_CHAIN = "served.chain"  # the last verified certs.chain stored: its history (rule C5)
MIRROR_USER = render.HOST_USER  # mirrored releases are the host's, like the token holder's
# Unverified downloads wait in the data folder (not an owner's name: owners start with
# a letter or digit), emptied at start-up of what a stopped refresh left.
STAGING = ".staging"
STOP_WAIT_S = 10.0  # how long stop() waits for a refresh it cut to wind up


@dataclass
class MirrorSpec:
    """One mirrored repo and the trust it starts from (pinned roots or a trusted sector)."""

    repo: str
    trust: Trust


@dataclass
class MirrorConfig:
    """`--mirror` and its options: the upstream's browser base URL, the repos, the schedule."""

    upstream: str
    specs: list[MirrorSpec]
    interval: float = DEFAULT_INTERVAL
    ca_file: str | None = None  # PEM anchors for an HTTPS upstream (else the sector's CAs)


@dataclass
class MirrorStatus:
    """What the last refresh of a repo did (for logs, the CLI and tests)."""

    mirrored: list[str] = field(default_factory=list)  # tags stored, oldest first
    error: str | None = None  # why the last refresh stored nothing new, if it failed


class RecordingBrowser(Browser):
    """A Browser that also keeps every body it streams to the end, by URL, in `folder`."""

    def __init__(self, folder: Path, ca_certs: list[bytes], ca_file: str | None) -> None:
        super().__init__(ca_certs, ca_file)
        self.folder = folder
        self.kept: dict[str, Path] = {}

    def stream(self, url: str, max_size: int, what: str) -> Iterator[bytes]:
        path = self.folder / f"{len(self.kept)}-{hashlib.sha256(url.encode()).hexdigest()[:16]}"
        with open(path, "wb") as f:
            for chunk in super().stream(url, max_size, what):
                f.write(chunk)
                yield chunk
        self.kept[url] = path


class Mirror:
    def __init__(self, store: Store, config: MirrorConfig) -> None:
        if not config.upstream.startswith(("http://", "https://")):
            raise HostError(
                f"--upstream must be an http:// or https:// URL, not {config.upstream!r}"
            )
        if not 0 < config.interval <= MAX_INTERVAL:  # NaN fails too
            raise HostError(
                f"--mirror-interval must be above 0 and at most {MAX_INTERVAL} seconds (a week)"
            )
        for spec in config.specs:
            if not is_repo_name(spec.repo):
                raise HostError(f"not a repository name: {spec.repo!r} (expected OWNER/NAME)")
        self.store = store
        self.upstream = config.upstream.rstrip("/")
        self.specs = config.specs
        self.folder = store.root / "mirror"
        self.interval = config.interval
        self.ca_file = config.ca_file
        self.status = {spec.repo: MirrorStatus() for spec in self.specs}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._refreshing = threading.Lock()
        self._thread: threading.Thread | None = None
        self._browser: Browser | None = None  # the refresh's current one, cut by stop()
        for spec in self.specs:
            store.ensure_repo(spec.repo)
        shutil.rmtree(self.folder / STAGING, ignore_errors=True)

    # -- schedule -------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="lcm-mirror", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the schedule; a refresh in progress is cut (it stores nothing)."""
        self._stop.set()
        self._wake.set()
        browser = self._browser
        if browser is not None:
            browser.abort()
        if self._thread is not None:
            self._thread.join(STOP_WAIT_S)
            self._thread = None

    def refresh_now(self) -> None:
        """Ask the schedule for a refresh at once (SIGHUP does this)."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._wake.wait(self.interval)
            self._wake.clear()

    # -- one refresh ----------------------------------------------------------

    def refresh(self) -> None:
        """Refresh every mirrored repo once; failures are logged, never raised."""
        with self._refreshing:
            for spec in self.specs:
                if self._stop.is_set():
                    return
                status = self.status[spec.repo]
                try:
                    status.mirrored += self.refresh_repo(spec)
                    status.error = None
                except PublisherError as exc:
                    status.error = str(exc)
                    log.warning("mirror %s: %s", spec.repo, exc)
                except Exception as exc:  # a bug must not stop the schedule
                    status.error = f"internal error: {exc!r}"
                    log.exception("mirror %s: internal error", spec.repo)

    def trust_of(self, spec: MirrorSpec) -> Trust:
        """The newest sector this mirror verified for the repo, else the pinned trust."""
        saved = self.folder / spec.repo / TRUSTED_SECTOR
        if saved.exists():
            return Trust(sector=saved.read_bytes()[: sf.MAX_SECTOR_SIZE + 1])
        return spec.trust

    def refresh_repo(self, spec: MirrorSpec) -> list[str]:
        """Mirror the repo's latest full release and its beta target; the tags stored."""
        repo = self.store.repo(spec.repo)
        (self.folder / STAGING).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="refresh-", dir=self.folder / STAGING) as folder:
            tmp = Path(folder)
            trust = self.trust_of(spec)
            ask = self.verifier(spec.repo, trust, tmp)
            try:
                latest = ask.resolve(None, "stable")
                if self.mirrored(repo, latest) and not self.moved(ask, repo, latest):
                    return []
            finally:
                ask.browser.close()
            installed = self.latest_seq(repo)
            if self.mirrored(repo, latest):
                installed = -1  # the same release again, for what moved
            stable, stable_files = self.verify(spec.repo, trust, latest, installed, tmp)
            # Each verified release with what changed of it, found (and rule R5 checked)
            # for every one before anything is stored.
            found = [(stable, stable_files, self.changes(repo, stable, stable_files))]
            pointer = stable.beta_pointer
            if pointer is not None and pointer != latest:
                beta, beta_files = self.verify(spec.repo, trust, pointer, -1, tmp)
                if beta.sequence < stable.sequence:
                    # Checked when beta.tag was, but fetched again to be stored: the
                    # bytes stored must meet the rule too (a beta device would refuse).
                    raise VerifyError(
                        BETA_POINTER_ASSET,
                        f"of {latest} points at {pointer}, whose sequence is {beta.sequence} "
                        f"when fetched again to be stored, older than {latest} "
                        f"({stable.sequence})",
                    )
                changed = self.changes(repo, beta, beta_files)
                if changed or not self.mirrored(repo, pointer):
                    found.insert(0, (beta, beta_files, changed))
            stored = []
            for result, files, changed in found:  # the beta target first: the pointer names it
                if self.mirrored(repo, result.tag):
                    for name in changed:
                        self.replace_asset(repo, result.tag, name, files[name])
                else:
                    self.store_release(repo, result, files)
                stored.append(result.tag)
                log.info("mirror %s: %s verified and stored", spec.repo, result.tag)
            self.keep_sector(spec.repo, trust, stable_files[SECTOR_ASSET])
            if CHAIN_ASSET in stable_files:
                self.keep_chain(spec.repo, stable_files[CHAIN_ASSET])
            return stored

    def moved(self, ask: Verifier, repo: Repo, tag: str) -> bool:
        """Whether what may change in the mirrored release `tag` changed upstream: its
        beta.tag, or a roll-out document (its own, or its beta target's)."""
        pointer = ask.browser.fetch(
            ask.url(tag, BETA_POINTER_ASSET), MAX_POINTER_SIZE, BETA_POINTER_ASSET
        )
        if pointer != self.asset_bytes(repo, tag, BETA_POINTER_ASSET, MAX_POINTER_SIZE):
            return True
        try:
            target = tag_from_pointer(pointer)  # verified when it was mirrored
        except TrustError:
            target = tag
        for name in dict.fromkeys([tag, target]):
            try:
                doc = ask.browser.fetch(
                    ask.url(name, ROLLOUT_ASSET), ro.MAX_ROLLOUT_SIZE, ROLLOUT_ASSET
                )
            except MissingAssetError:
                continue  # none upstream (or one being replaced): the mirrored one stays
            if doc != self.asset_bytes(repo, name, ROLLOUT_ASSET, ro.MAX_ROLLOUT_SIZE):
                return True
        return False

    def changes(self, repo: Repo, result: VerifyResult, files: dict[str, Path]) -> list[str]:
        """The verified assets of `result` that differ from the mirrored release's (none
        when it is not mirrored). A roll-out document below the mirrored one's roll-out
        sequence is refused (rule R5): VerifyError."""
        if not self.mirrored(repo, result.tag):
            return []
        changed = []
        for name in MUTABLE_ASSETS:
            if name not in files:
                continue  # gone upstream: the mirrored one stays (fail-closed)
            new = files[name].read_bytes()
            old = self.asset_bytes(repo, result.tag, name, len(new) + 256)
            if new == old:
                continue
            if name == ROLLOUT_ASSET and old is not None:
                # Both were verified (R1-R4); only the order is left to check.
                seen = ro.parse_rollout(old).seq
                if result.rollout_seq is not None and result.rollout_seq < seen:
                    raise VerifyError(
                        ROLLOUT_ASSET,
                        f"of {result.tag} has roll-out sequence {result.rollout_seq}, below "
                        f"the {seen} mirrored: an older document is not served again (R5)",
                    )
            changed.append(name)
        return changed

    def asset_bytes(self, repo: Repo, tag: str, name: str, limit: int) -> bytes | None:
        """The mirrored asset `name` of release `tag` (at most `limit` bytes), or None."""
        store = self.store

        def path() -> Path | None:
            try:
                asset = store.asset_named(store.release_by_tag(repo, tag), name)
            except ApiError:
                return None
            return store.asset_path(asset)

        found = store.read(path)
        return found.read_bytes()[: limit + 1] if found is not None else None

    def replace_asset(self, repo: Repo, tag: str, name: str, verified: Path) -> None:
        """Serve the newly verified `name` of the mirrored release `tag`: the old bytes are
        swapped in one rename; an asset it did not have is uploaded to it."""
        store = self.store
        rel = store.read(lambda: store.release_by_tag(repo, tag))

        def existing() -> Asset | None:
            try:
                return store.asset_named(rel, name)
            except ApiError:
                return None

        asset = store.read(existing)
        tmp = store.new_upload_file()
        shutil.copyfile(verified, tmp)
        if asset is None:
            asset = store.begin_upload(
                repo, rel.id, name, "", "application/octet-stream", MIRROR_USER
            )
            store.finish_upload(asset.id, tmp, tmp.stat().st_size, file_sha256(tmp))
        else:
            store.replace_asset_bytes(asset.id, tmp, tmp.stat().st_size, file_sha256(tmp))

    def verifier(self, repo: str, trust: Trust, folder: Path) -> Verifier:
        served = self.folder / repo / SERVED_CHAIN
        known = split_chain(served.read_bytes()[:MAX_CHAIN_SIZE]) if served.exists() else None
        verifier = Verifier(
            self.upstream, repo, trust, int(time.time()), self.ca_file, chain=True, known=known
        )
        verifier.browser.close()
        ca_certs = sf.parse_sector(trust.sector).cas if trust.sector is not None else []
        verifier.browser = self._browser = RecordingBrowser(folder, ca_certs, self.ca_file)
        # After it is current: a stop() from now on aborts this one.
        if self._stop.is_set():
            raise HostError("the mirror is stopping")
        return verifier

    def verify(
        self, repo: str, trust: Trust, tag: str, installed_seq: int, tmp: Path
    ) -> tuple[VerifyResult, dict[str, Path]]:
        """Verify `tag` upstream as a device would; its verified assets' files."""
        folder = Path(tempfile.mkdtemp(dir=tmp))  # not named after the upstream's tag
        verifier = self.verifier(repo, trust, folder)
        assert isinstance(verifier.browser, RecordingBrowser)
        kept = verifier.browser.kept
        result = verifier.run(tag, "stable", installed_seq)
        files = {}
        for name in MIRROR_ASSETS:
            path = kept.get(verifier.url(tag, name))
            if path is not None:
                files[name] = path
        return result, files

    def mirrored(self, repo: Repo, tag: str) -> bool:
        def published() -> bool:
            try:
                self.store.release_by_tag(repo, tag)
            except ApiError:
                return False
            return True

        return self.store.read(published)

    def latest_seq(self, repo: Repo) -> int:
        """The sequence of the mirrored latest release: a new latest must be above it."""
        store = self.store
        latest = store.read(lambda: store.latest(repo))
        if latest is None:
            return -1
        manifest = store.read(lambda: store.asset_named(latest, MANIFEST_ASSET))
        try:
            data = store.asset_path(manifest).read_bytes()[: mf.MAX_MANIFEST_SIZE]
            # Stored only after its signature verified: the parse is for the number.
            return int(mf.parse_manifest(data).seq)
        except (OSError, TrustError):
            return -1

    def store_release(self, repo: Repo, result: VerifyResult, files: dict[str, Path]) -> None:
        """Draft, assets, then published: as `lcm release publish` does on GitHub."""
        store = self.store
        for stale in store.read(lambda: store.releases_of(repo, drafts=True)):
            if stale.draft and stale.tag_name == result.tag and stale.author == MIRROR_USER:
                store.delete_release(repo, stale.id)  # a store cut short by a stop
        fields = {"tag_name": result.tag, "name": result.tag, "draft": True, "body": ""}
        fields["prerelease"] = result.channel != "stable"
        rel = store.create_release(repo, fields, MIRROR_USER, None)
        for name, path in files.items():
            asset = store.begin_upload(
                repo, rel.id, name, "", "application/octet-stream", MIRROR_USER
            )
            tmp = store.new_upload_file()
            shutil.copyfile(path, tmp)
            store.finish_upload(asset.id, tmp, tmp.stat().st_size, file_sha256(tmp))
        make_latest = "true" if result.channel == "stable" else None
        store.update_release(repo, rel.id, {"draft": False}, make_latest)

    def keep_sector(self, repo: str, trust: Trust, sector_file: Path) -> None:
        """Remember the verified sector when it is newer: rotations then chain from it."""
        data = sector_file.read_bytes()
        new = sf.parse_sector(data)
        if trust.sector is not None and sf.parse_sector(trust.sector).seq >= new.seq:
            return
        (self.folder / repo).mkdir(parents=True, exist_ok=True)
        write_atomic(self.folder / repo / TRUSTED_SECTOR, data)

    def keep_chain(self, repo: str, chain_file: Path) -> None:
        """Remember the chain just verified and served: later ones must keep its history."""
        (self.folder / repo).mkdir(parents=True, exist_ok=True)
        write_atomic(self.folder / repo / SERVED_CHAIN, chain_file.read_bytes())
