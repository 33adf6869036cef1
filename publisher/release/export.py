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
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from github import UnknownObjectException

from cert_sector.assets import MAX_TAG
from cert_sector.errors import TrustError
from cert_sector.release import check_tag
from publisher.fsutil import write_atomic
from publisher.release.errors import HostError
from publisher.release.github import Session
from publisher.release.web import Browser

POINTER = "latest"


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


def export_releases(
    session: Session,
    repo_name: str,
    to: Path,
    *,
    ca_file: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> ExportResult:
    """Write `repo_name`'s published releases under `to` (see the module doc)."""
    base = Path(to) / repo_name / "releases"
    repo = session.call(f"read {repo_name}", lambda: session.gh.get_repo(repo_name))
    releases = session.call(
        f"list the releases of {repo_name}",
        lambda: [r for r in repo.get_releases() if not r.draft],
    )
    latest = session.call(f"find the latest release of {repo_name}", lambda: _latest(repo))
    result = ExportResult(repo_name, str(to), latest.tag_name if latest else None)
    browser = Browser(ca_file=ca_file)
    try:
        for rel in releases:
            tag = _tag(rel.tag_name)
            result.releases.append(tag)
            assets = session.call(f"list the assets of {tag}", partial(_assets, rel))
            for asset in assets:
                if asset.state != "uploaded":
                    continue
                name = asset.name
                if "/" in name or name in (".", ".."):
                    raise HostError(f"{tag}: asset name {name!r} cannot be a file name")
                dest = base / "download" / tag / name
                if up_to_date(dest, asset.size, asset.digest):
                    result.kept += 1
                    continue
                if progress is not None:
                    progress(f"{tag}/{name}")
                url = asset.browser_download_url
                download(browser, url, asset.size, dest, f"{tag}/{name}")
                result.downloaded.append(f"{tag}/{name}")
    finally:
        browser.close()
    if latest is not None:
        # Last: the pointer names a release whose assets are all in place.
        write_atomic(base / POINTER, (_tag(latest.tag_name) + "\n").encode())
    return result


def _assets(rel: Any) -> list[Any]:
    return list(rel.get_assets())


def _latest(repo: Any) -> Any:
    """The host's latest release (GitHub's choice, `make_latest`), or None."""
    try:
        return repo.get_latest_release()
    except UnknownObjectException:
        return None


def _tag(tag: str) -> str:
    """A tag as lcm publishes it (also a safe folder name); anything else is refused."""
    try:
        return check_tag(tag)
    except TrustError as exc:
        raise HostError(f"release tag {tag[:MAX_TAG]!r} cannot be exported: {exc}") from None
