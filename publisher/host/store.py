"""Repos, releases and assets of the host, kept on disk under the data folder.

Layout of the data folder:

  lock              held (flock) by the one host serving the folder
  meta.json         every repo, release and asset record; rewritten atomically
                    (temp file + fsync + rename) after each change
  assets/ID.bin     the bytes of asset ID, moved into place once complete
                    (ID.N.bin: its bytes replaced for the N-th time)
  tmp/              uploads in progress (emptied at start-up)

Files and records change in an order that a crash (a kill, a power cut) at any
point leaves consistent: new bytes go to a file no record names yet, the
records are saved, and only then is a file no record names any more removed. So
`meta.json` never names a file that is gone or bytes it does not describe; a
file a crash left unnamed is removed at start-up, and an uploaded asset whose
file is missing all the same (the folder damaged from outside) is logged there
and answered 404, never a 200 without its bytes.

One lock guards the records; uploads stream to `tmp/` outside it, so many
uploads can run at once. A name is reserved when an upload starts (the asset
is recorded in state "starter", as on GitHub), so two uploads of one name
cannot both succeed, and an upload cut short leaves a "starter" asset that
has to be deleted before the name can be used again, exactly like GitHub.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from publisher.fsutil import write_atomic
from publisher.host.errors import ApiError, HostError, not_found, validation_failed

log = logging.getLogger("lcm.host")

META_FILE = "meta.json"
LOCK_FILE = "lock"  # held (flock) by the host serving the folder
META_FORMAT = 1
FIRST_ID = 1000

MAKE_LATEST_VALUES = ("true", "false", "legacy")


@dataclass
class Repo:
    id: int
    full_name: str
    created_at: float
    # The release explicitly marked latest (make_latest "true"); None means
    # GitHub's "legacy" rule: the newest full release by creation.
    latest_id: int | None = None


@dataclass
class Release:
    id: int
    repo: str
    tag_name: str
    target_commitish: str
    name: str
    body: str
    draft: bool
    prerelease: bool
    created_at: float
    published_at: float | None
    author: str
    # Drafts are reachable only as `untagged-<this>` (and only with the token).
    untagged: str
    # Last change to the release record (0: a record saved before this field existed).
    updated_at: float = 0.0


@dataclass
class Asset:
    id: int
    release_id: int
    name: str
    label: str
    content_type: str
    state: str  # "starter" while (or after a failed) upload, then "uploaded"
    size: int
    sha256: str | None
    created_at: float
    updated_at: float
    uploader: str
    download_count: int = 0
    # How often its bytes were replaced (replace_asset_bytes): which file holds them.
    generation: int = 0


T = TypeVar("T")


class Store:
    """Thread-safe records plus asset files; every change is on disk before it is answered."""

    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir)
        self.assets_dir = self.root / "assets"
        self.tmp_dir = self.root / "tmp"
        self._lock = threading.RLock()
        self._unlink_after_save: list[Path] = []
        try:
            self.assets_dir.mkdir(parents=True, exist_ok=True)
            self.tmp_dir.mkdir(parents=True, exist_ok=True)
            self._lock_file = open(self.root / LOCK_FILE, "a+")  # noqa: SIM115 (close())
        except OSError as exc:
            raise HostError(f"cannot use data folder {self.root}: {exc.strerror}") from None
        try:
            # One host per folder: a second one would overwrite the first's records and
            # sweep away the files it is placing.
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock_file.close()
            raise HostError(
                f"another lcm host is serving {self.root} (one host per data folder)"
            ) from None
        for leftover in self.tmp_dir.iterdir():
            # Uploads cut by a restart: their assets stay "starter", as on GitHub.
            leftover.unlink(missing_ok=True)
        for torn in self.root.glob("." + META_FILE + ".*"):
            # A metadata write cut before its rename: meta.json itself is whole.
            torn.unlink(missing_ok=True)
        self._load()
        self._sweep_assets()

    def _sweep_assets(self) -> None:
        """Remove the files no record names (a crash between a save and its unlinks, or
        between new bytes and their save), and log uploaded assets without their file."""
        named = {self.asset_path(a) for a in self.assets.values() if a.state == "uploaded"}
        for path in self.assets_dir.iterdir():
            if path not in named and path.is_file():  # a folder put there is not ours
                path.unlink(missing_ok=True)
        for asset in self.assets.values():
            if asset.state == "uploaded" and not self.asset_path(asset).exists():
                rel = self.releases.get(asset.release_id)
                log.error(
                    "asset %s (%s of %s %s) has no file in %s: it answers 404; delete the "
                    "asset and upload it again",
                    asset.id,
                    asset.name,
                    rel.repo if rel else "?",
                    rel.tag_name if rel else "?",
                    self.assets_dir,
                )

    def close(self) -> None:
        """Let another host serve the folder (the lock goes with the process anyway)."""
        self._lock_file.close()

    # -- persistence ---------------------------------------------------------

    def _load(self) -> None:
        self.next_id = FIRST_ID
        self.repos: dict[str, Repo] = {}
        self.releases: dict[int, Release] = {}
        self.assets: dict[int, Asset] = {}
        self._by_release: dict[int, list[Asset]] | None = None
        path = self.root / META_FILE
        if not path.exists():
            return
        try:
            meta = json.loads(path.read_bytes())
            if not isinstance(meta, dict):
                raise ValueError("not a JSON object")
            if meta.get("format") != META_FORMAT:
                raise ValueError("unknown format " + repr(meta.get("format")))
            self.next_id = int(meta["next_id"])
            self.repos = {r["full_name"]: Repo(**r) for r in meta["repos"]}
            self.releases = {r["id"]: Release(**r) for r in meta["releases"]}
            self.assets = {a["id"]: Asset(**a) for a in meta["assets"]}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise HostError(f"{path} is not a valid host metadata file: {exc}") from None

    def _save(self) -> None:
        meta = {
            "format": META_FORMAT,
            "next_id": self.next_id,
            "repos": [dataclasses.asdict(r) for r in self.repos.values()],
            "releases": [dataclasses.asdict(r) for r in self.releases.values()],
            "assets": [_asset_record(a) for a in self.assets.values()],
        }
        write_atomic(self.root / META_FILE, json.dumps(meta, indent=1).encode())

    def _new_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def change(self, func: Callable[[], T]) -> T:
        """Run `func` under the lock and persist; on an error nothing is saved. Files
        `func` dropped are removed only once the records that named them are saved."""
        with self._lock:
            try:
                result = func()  # refuses (ApiError) before it changes anything
            except BaseException:
                self._unlink_after_save.clear()
                raise
            try:
                self._save()
            except OSError as exc:
                # Back to what is on disk, so memory never claims an unsaved change (the
                # files it names are all still there).
                self._unlink_after_save.clear()
                self._load()
                raise ApiError(500, f"cannot save host metadata: {exc.strerror or exc}") from None
            dropped, self._unlink_after_save = self._unlink_after_save, []
            for path in dropped:
                # An open download keeps reading the unlinked file; new ones get 404. The
                # change is saved: a file that cannot go now goes at the next start-up.
                try:
                    path.unlink(missing_ok=True)
                except OSError as exc:
                    log.warning("cannot remove %s now (%s): at the next start", path, exc)
            return result

    def read(self, func: Callable[[], T]) -> T:
        with self._lock:
            return func()

    # -- repos ---------------------------------------------------------------

    def ensure_repo(self, full_name: str) -> Repo:
        def create() -> Repo:
            repo = self._find(full_name)  # `--repo acme/Widget` is the existing acme/widget
            if repo is None:
                repo = Repo(self._new_id(), full_name, time.time())
                self.repos[full_name] = repo
            return repo

        return self.change(create)

    def create_repo(self, full_name: str) -> Repo:
        def create() -> Repo:
            if self._find(full_name) is not None:
                raise validation_failed("Repository", "custom", "name", "name already exists")
            repo = Repo(self._new_id(), full_name, time.time())
            self.repos[full_name] = repo
            return repo

        return self.change(create)

    def _current(self, repo: Repo) -> Repo:
        """The live record of `repo` (a request may hold one from before a reload)."""
        current = self.repos.get(repo.full_name)
        if current is None:
            raise not_found()
        return current

    def repo(self, full_name: str) -> Repo:
        """The repo, case-insensitively as GitHub matches owner/name; 404 when unknown."""
        repo = self._find(full_name)
        if repo is None:
            raise not_found()
        return repo

    def _find(self, full_name: str) -> Repo | None:
        repo = self.repos.get(full_name)
        if repo is None:
            lowered = full_name.lower()
            repo = next((r for r in self.repos.values() if r.full_name.lower() == lowered), None)
        return repo

    # -- releases ------------------------------------------------------------

    def releases_of(self, repo: Repo, *, drafts: bool) -> list[Release]:
        """Newest first, as GitHub lists them; drafts only for authenticated clients."""
        found = [
            r
            for r in self.releases.values()
            if r.repo == repo.full_name and (drafts or not r.draft)
        ]
        return sorted(found, key=lambda r: (r.created_at, r.id), reverse=True)

    def release(self, repo: Repo, release_id: int, *, drafts: bool) -> Release:
        rel = self.releases.get(release_id)
        if rel is None or rel.repo != repo.full_name or (rel.draft and not drafts):
            raise not_found()
        return rel

    def release_by_tag(self, repo: Repo, tag: str) -> Release:
        """The published release of `tag` (GitHub never finds a draft by tag)."""
        for rel in self.releases.values():
            if rel.repo == repo.full_name and not rel.draft and rel.tag_name == tag:
                return rel
        raise not_found()

    def draft_by_untagged(self, repo: Repo, untagged: str) -> Release:
        for rel in self.releases.values():
            if rel.repo == repo.full_name and rel.draft and rel.untagged == untagged:
                return rel
        raise not_found()

    def latest(self, repo: Repo) -> Release | None:
        """The latest release: the one marked latest, else the newest full release."""
        pinned = self.releases.get(repo.latest_id) if repo.latest_id is not None else None
        if pinned is not None and not pinned.draft and not pinned.prerelease:
            return pinned
        full = [r for r in self.releases_of(repo, drafts=False) if not r.prerelease]
        return full[0] if full else None

    def _check_tag_free(self, rel: Release) -> None:
        if rel.draft:
            return
        for other in self.releases.values():
            if (
                other.id != rel.id
                and other.repo == rel.repo
                and not other.draft
                and other.tag_name == rel.tag_name
            ):
                raise validation_failed("Release", "already_exists", "tag_name")

    def _apply_make_latest(self, repo: Repo, rel: Release, value: str | None, newly: bool) -> None:
        if rel.draft or rel.prerelease:
            if repo.latest_id == rel.id:
                repo.latest_id = None
            return
        if value is None:
            value = "true" if newly else "false"
        if value == "true":
            repo.latest_id = rel.id
        elif value == "legacy":
            repo.latest_id = None
        elif repo.latest_id is None:
            # "false" under the legacy rule: freeze the current latest so that
            # this release does not become latest by being the newest.
            others = [
                r
                for r in self.releases_of(repo, drafts=False)
                if not r.prerelease and r.id != rel.id
            ]
            if others:
                repo.latest_id = others[0].id

    def create_release(
        self, repo: Repo, fields: dict[str, Any], author: str, make_latest: str | None
    ) -> Release:
        def create() -> Release:
            current = self._current(repo)
            now = time.time()
            rel = Release(
                id=self._new_id(),
                repo=repo.full_name,
                tag_name=fields["tag_name"],
                target_commitish=fields.get("target_commitish") or "main",
                name=fields.get("name") or "",
                body=fields.get("body") or "",
                draft=bool(fields.get("draft", False)),
                prerelease=bool(fields.get("prerelease", False)),
                created_at=now,
                published_at=None if fields.get("draft") else now,
                author=author,
                untagged=secrets.token_hex(10),
                updated_at=now,
            )
            self._check_tag_free(rel)
            self.releases[rel.id] = rel
            self._apply_make_latest(current, rel, make_latest, newly=not rel.draft)
            return rel

        return self.change(create)

    def update_release(
        self, repo: Repo, release_id: int, fields: dict[str, Any], make_latest: str | None
    ) -> Release:
        def update() -> Release:
            current = self._current(repo)
            rel = self.release(repo, release_id, drafts=True)
            candidate = dataclasses.replace(rel, **fields, updated_at=time.time())
            newly = rel.draft and not candidate.draft
            if newly:
                candidate.published_at = time.time()
            self._check_tag_free(candidate)
            self.releases[rel.id] = candidate
            self._apply_make_latest(current, candidate, make_latest, newly)
            return candidate

        return self.change(update)

    def delete_release(self, repo: Repo, release_id: int) -> None:
        def delete() -> None:
            current = self._current(repo)
            rel = self.release(repo, release_id, drafts=True)
            for asset in self.assets_of(rel):
                self._drop_asset(asset)
            del self.releases[rel.id]
            if current.latest_id == rel.id:
                current.latest_id = None

        self.change(delete)

    # -- assets --------------------------------------------------------------

    def assets_of(self, rel: Release) -> list[Asset]:
        # Indexed by release, made again after an asset is added or dropped: a list of
        # releases scanned every asset for each (300 releases of 30 assets: 0.5 s under
        # the lock, for an anonymous client's free 304s too).
        if self._by_release is None:
            index: dict[int, list[Asset]] = {}
            for a in sorted(self.assets.values(), key=lambda a: a.id):
                index.setdefault(a.release_id, []).append(a)
            self._by_release = index
        return list(self._by_release.get(rel.id, ()))

    def asset(self, repo: Repo, asset_id: int, *, drafts: bool) -> tuple[Release, Asset]:
        asset = self.assets.get(asset_id)
        if asset is None:
            raise not_found()
        rel = self.release(repo, asset.release_id, drafts=drafts)
        return rel, asset

    def asset_named(self, rel: Release, name: str) -> Asset:
        for asset in self.assets.values():
            if asset.release_id == rel.id and asset.name == name:
                return asset
        raise not_found()

    def asset_path(self, asset: Asset) -> Path:
        if asset.generation:
            return self.assets_dir / f"{asset.id}.{asset.generation}.bin"
        return self.assets_dir / f"{asset.id}.bin"

    def _check_name_free(self, rel: Release, name: str, asset_id: int | None) -> None:
        for other in self.assets.values():
            if other.release_id == rel.id and other.name == name and other.id != asset_id:
                raise validation_failed("ReleaseAsset", "already_exists", "name")

    def begin_upload(
        self, repo: Repo, release_id: int, name: str, label: str, content_type: str, uploader: str
    ) -> Asset:
        """Reserve `name` on the release: the asset exists in state "starter"."""

        def begin() -> Asset:
            rel = self.release(repo, release_id, drafts=True)
            self._check_name_free(rel, name, None)
            now = time.time()
            asset = Asset(
                id=self._new_id(),
                release_id=rel.id,
                name=name,
                label=label,
                content_type=content_type,
                state="starter",
                size=0,
                sha256=None,
                created_at=now,
                updated_at=now,
                uploader=uploader,
            )
            self.assets[asset.id] = asset
            self._by_release = None
            return asset

        return self.change(begin)

    def finish_upload(self, asset_id: int, tmp_file: Path, size: int, sha256: str) -> Asset:
        """Move the complete upload into place and mark the asset "uploaded"."""

        def finish() -> Asset:
            asset = self.assets.get(asset_id)
            if asset is None:
                # Deleted (or its release was) while the bytes were arriving.
                tmp_file.unlink(missing_ok=True)
                raise not_found()
            _place(tmp_file, self.asset_path(asset))
            asset.state = "uploaded"
            asset.size = size
            asset.sha256 = sha256
            asset.updated_at = time.time()
            return asset

        return self.change(finish)

    def replace_asset_bytes(self, asset_id: int, tmp_file: Path, size: int, sha256: str) -> Asset:
        """New bytes for an uploaded asset in one rename: a download already running keeps
        reading the old file, the next one gets the new bytes (a mirror's moved beta.tag)."""

        def replace() -> Asset:
            asset = self.assets.get(asset_id)
            if asset is None or asset.state != "uploaded":
                tmp_file.unlink(missing_ok=True)
                raise not_found()
            # The new bytes in a file of their own; the old one goes once this is saved.
            old = self.asset_path(asset)
            _place(
                tmp_file,
                self.asset_path(dataclasses.replace(asset, generation=asset.generation + 1)),
            )
            asset.generation += 1
            self._unlink_after_save.append(old)
            asset.size = size
            asset.sha256 = sha256
            asset.updated_at = time.time()
            return asset

        return self.change(replace)

    def update_asset(self, repo: Repo, asset_id: int, name: str | None, label: str | None) -> Asset:
        def update() -> Asset:
            rel, asset = self.asset(repo, asset_id, drafts=True)
            if name is not None:
                self._check_name_free(rel, name, asset.id)
                asset.name = name
            if label is not None:
                asset.label = label
            asset.updated_at = time.time()
            return asset

        return self.change(update)

    def delete_asset(self, repo: Repo, asset_id: int) -> None:
        def delete() -> None:
            _rel, asset = self.asset(repo, asset_id, drafts=True)
            self._drop_asset(asset)

        self.change(delete)

    def _drop_asset(self, asset: Asset) -> None:
        del self.assets[asset.id]
        self._by_release = None
        self._unlink_after_save.append(self.asset_path(asset))  # once the records are saved

    def count_download(self, asset_id: int) -> None:
        # Kept in memory and saved with the next change: a device's Range
        # reads must not each rewrite the metadata file.
        with self._lock:
            asset = self.assets.get(asset_id)
            if asset is not None:
                asset.download_count += 1

    def new_upload_file(self) -> Path:
        return self.tmp_dir / f"upload-{secrets.token_hex(8)}"


def _asset_record(asset: Asset) -> dict[str, Any]:
    record = dataclasses.asdict(asset)
    if not record["generation"]:
        del record["generation"]  # what an earlier lcm host reads too
    return record


def _place(tmp_file: Path, path: Path) -> None:
    """Move a complete file into place durably: its bytes on disk before the rename,
    the rename on disk before the records that name it are saved (a power cut between
    would otherwise leave a record naming an empty or missing file)."""
    with open(tmp_file, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp_file, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
