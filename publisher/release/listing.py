"""`lcm release list`: every release of a repo with what its manifest says."""

from __future__ import annotations

from typing import Any

from cert_sector import manifest as mf
from cert_sector.assets import MANIFEST_ASSET
from cert_sector.errors import TrustError
from publisher.release.github import Session


def list_releases(session: Session, repo_name: str) -> list[dict[str, Any]]:
    """Newest first (by sequence; releases without a readable manifest last)."""
    repo = session.repo(repo_name)
    rows: list[dict[str, Any]] = []
    for release in session.releases(repo):
        assets = session.assets(release)
        row: dict[str, Any] = {
            "tag": release.tag_name,
            "sequence": None,
            "channel": "beta" if release.prerelease else "stable",
            "kind": None,
            "boards": [],
            "state": "draft" if release.draft else "published",
            "date": (release.published_at or release.created_at).isoformat()
            if (release.published_at or release.created_at)
            else None,
            "assets": {a.name: a.size for a in assets},
            "problem": None,
        }
        manifest = next((a for a in assets if a.name == MANIFEST_ASSET), None)
        if manifest is None:
            row["problem"] = "no manifest.lcm"
        else:
            try:
                m = mf.parse_manifest(session.download(manifest, mf.MAX_MANIFEST_SIZE))
                row.update(sequence=m.seq, channel=m.channel, kind=m.kind, boards=list(m.boards))
            except TrustError as exc:
                row["problem"] = f"unreadable manifest: {exc}"
        rows.append(row)
    rows.sort(key=lambda r: -1 if r["sequence"] is None else r["sequence"], reverse=True)
    return rows
