"""`lcm release export`: a repo's published releases as a static tree any web server,
object store or CDN serves unchanged, with the URL layout devices use.

  DIR/OWNER/REPO/releases/download/TAG/NAME   every asset of every published release
  DIR/OWNER/REPO/releases/latest              pointer file: the latest full release's
                                              tag and a newline (docs/formats.md)

A static host cannot answer `/releases/latest` with GitHub's 302, so the device
reads the tag from the pointer file instead: still one small request for an idle
check. Order makes the tree safe to serve while it is written: each asset is
written to a temp file and renamed into place, and the pointer moves last, so a
device never sees a latest release whose assets are not all there. Re-runs
download only what changed (an asset whose file already has its size and SHA-256
is kept). Drafts are never exported; releases deleted upstream are left in place.

The host is not trusted (devices verify what they fetch), but it does not steer the
export either: each asset is fetched from its browser URL built as a device builds
it (`--web-url`, whose redirects are followed as a device follows them), never from
a URL the API names; an asset may be at most its format's maximum (`MAX_SIZES`,
else `MAX_OTHER_ASSET`) and fit the disk; listings stop at `MAX_RELEASES` releases
and `MAX_ASSETS` assets a release (a host that pages for ever is refused).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

from github import UnknownObjectException
from github.GithubException import BadAttributeException

from cert_sector import rollout as ro
from cert_sector.assets import (
    BETA_POINTER_ASSET,
    CHAIN_ASSET,
    MANIFEST_ASSET,
    MAX_CHAIN_SIZE,
    MAX_MANIFEST_SIZE,
    MAX_TAG,
    PACK_ASSET,
    ROLLOUT_ASSET,
    SECTOR_ASSET,
    SUMS_ASSET,
)
from cert_sector.errors import TrustError
from cert_sector.release import check_tag, download_url
from publisher import sector_format as sf
from publisher.fsutil import write_atomic
from publisher.release.errors import HostError
from publisher.release.github import Session
from publisher.release.source import MAX_PACK_SIZE
from publisher.release.verify import MAX_POINTER_SIZE, MAX_SUMS_SIZE
from publisher.release.web import Browser

POINTER = "latest"
MAX_SIZES = {
    SECTOR_ASSET: sf.MAX_SECTOR_SIZE,
    CHAIN_ASSET: MAX_CHAIN_SIZE,
    MANIFEST_ASSET: MAX_MANIFEST_SIZE,
    PACK_ASSET: MAX_PACK_SIZE,
    SUMS_ASSET: MAX_SUMS_SIZE,
    BETA_POINTER_ASSET: MAX_POINTER_SIZE,
    ROLLOUT_ASSET: ro.MAX_ROLLOUT_SIZE,
}
MAX_OTHER_ASSET = MAX_PACK_SIZE  # an asset lcm does not publish (notes, a zip)
MAX_RELEASES = 5000
MAX_ASSETS = 1000  # GitHub's own limit per release


@dataclass
class ExportResult:
    repo: str
    folder: str
    latest: str | None
    releases: list[str] = field(default_factory=list)
    downloaded: list[str] = field(default_factory=list)  # TAG/NAME written this run
    kept: int = 0  # assets already in place

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(65536):
            digest.update(chunk)
    return digest.hexdigest()


def up_to_date(path: Path, size: int, digest: str | None) -> bool:
    """The file already holds the asset: same size and, when the host says it, SHA-256."""
    if not path.is_file() or path.stat().st_size != size:
        return False
    return digest is None or digest == "sha256:" + file_sha256(path)


def download(browser: Browser, url: str, size: int, dest: Path, what: str) -> None:
    """Stream `url` (at most `size` bytes, exactly `size` expected) into `dest` atomically."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + dest.name + ".", dir=dest.parent)
    try:
        got = 0
        with os.fdopen(fd, "wb") as f:
            for chunk in browser.stream(url, size, what):
                f.write(chunk)
                got += len(chunk)
            if got != size:
                raise HostError(f"{what}: got {got} bytes, the host lists {size}")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class ListedAsset:
    """What the host says of an asset, type-checked (a host's JSON may hold anything)."""

    name: str
    size: int
    digest: str | None
    uploaded: bool


def export_releases(
    session: Session,
    repo_name: str,
    to: Path,
    web_url: str,
    *,
    ca_file: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> ExportResult:
    """Write `repo_name`'s published releases under `to` (see the module doc), fetching
    their assets from `web_url` as devices do."""
    base = Path(to) / repo_name / "releases"
    repo = session.call(f"read {repo_name}", lambda: session.gh.get_repo(repo_name))
    releases = session.call(f"list the releases of {repo_name}", partial(_releases, repo))
    latest = session.call(f"find the latest release of {repo_name}", partial(_latest, repo))
    result = ExportResult(repo_name, str(to), latest)
    browser = Browser(ca_file=ca_file)
    try:
        for tag, rel in releases:
            result.releases.append(tag)
            assets = session.call(f"list the assets of {tag}", partial(_assets, rel, tag))
            for asset in assets:
                if not asset.uploaded:
                    continue
                name = asset.name
                dest = base / "download" / tag / name
                if up_to_date(dest, asset.size, asset.digest):
                    result.kept += 1
                    continue
                _check_room(dest, asset, f"{tag}/{name}")
                if progress is not None:
                    progress(f"{tag}/{name}")
                url = download_url(web_url, repo_name, tag, quote(name, safe=""))
                download(browser, url, asset.size, dest, f"{tag}/{name}")
                result.downloaded.append(f"{tag}/{name}")
    finally:
        browser.close()
    if latest is not None:
        # Last: the pointer names a release whose assets are all in place.
        write_atomic(base / POINTER, (latest + "\n").encode())
    return result


def _check_room(dest: Path, asset: ListedAsset, what: str) -> None:
    """The listed size is within the asset's maximum and fits the disk."""
    limit = MAX_SIZES.get(asset.name, MAX_OTHER_ASSET)
    if asset.size > limit:
        raise HostError(f"{what}: the host lists {asset.size} bytes, more than {limit} allowed")
    folder = next(p for p in (dest.parent, *dest.parents) if p.exists())
    free = shutil.disk_usage(folder).free
    if asset.size > free:
        raise HostError(f"{what}: {asset.size} bytes do not fit the {free} free in {folder}")


def _releases(repo: Any) -> list[tuple[str, Any]]:
    """(tag, release) of the published releases, at most MAX_RELEASES of them."""
    found = []
    for count, rel in enumerate(repo.get_releases()):
        if count >= MAX_RELEASES:
            raise HostError(f"more than {MAX_RELEASES} releases listed: refused")
        if _field(rel, "draft") is not True:
            found.append((_tag(_field(rel, "tag_name")), rel))
    return found


def _assets(rel: Any, tag: str) -> list[ListedAsset]:
    listed = []
    for count, asset in enumerate(rel.get_assets()):
        if count >= MAX_ASSETS:
            raise HostError(f"{tag}: more than {MAX_ASSETS} assets listed: refused")
        name, size, digest = _field(asset, "name"), _field(asset, "size"), _field(asset, "digest")
        state = _field(asset, "state")
        if not isinstance(name, str) or not _is_file_name(name):
            raise HostError(f"{tag}: asset name {name!r} cannot be a file name")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise HostError(f"{tag}/{name}: the host lists a size of {size!r}")
        if digest is not None and not isinstance(digest, str):
            raise HostError(f"{tag}/{name}: the host lists a digest of {digest!r}")
        listed.append(ListedAsset(name, size, digest, state == "uploaded"))
    return listed


def _field(obj: Any, name: str) -> Any:
    """A field of a host's JSON as sent: PyGithub refuses one of the wrong type with an
    exception that does not name it; the callers check the type and name the field."""
    try:
        return getattr(obj, name)
    except BadAttributeException as exc:
        return exc.actual_value


def _is_file_name(name: str) -> bool:
    return (
        0 < len(name) <= 255
        and name not in (".", "..")
        and not any(c in "/\\" or not c.isprintable() for c in name)
    )


def _latest(repo: Any) -> str | None:
    """The tag of the host's latest release (GitHub's choice, `make_latest`), or None."""
    try:
        return _tag(_field(repo.get_latest_release(), "tag_name"))
    except UnknownObjectException:
        return None


def _tag(tag: object) -> str:
    """A tag as lcm publishes it (also a safe folder name); anything else is refused."""
    if not isinstance(tag, str):
        raise HostError(f"the host lists a release tag of {tag!r}")
    try:
        return check_tag(tag)
    except TrustError as exc:
        raise HostError(f"release tag {tag[:MAX_TAG]!r} cannot be exported: {exc}") from None
