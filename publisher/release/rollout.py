"""Staged roll-outs, publisher side: sign `rollout.lcm`, and widen or halt a published one.

A release published with `--rollout N` carries a roll-out document
(cert_sector.rollout) with sequence 1 and share N, uploaded to the draft
before it is published. `widen` replaces it with the next sequence:

 1. read the release, its manifest (the sequence the document must name) and
    its current document, checked against the release's own cert sector;
 2. refuse what is not a widening: a smaller share, anything after a halt
    (a halt is final: publish a fixed release), a release without a document
    (it already went to the whole fleet);
 3. upload the new document as `rollout.lcm.next`, delete `rollout.lcm`,
    rename the new one into place. A device that asks in between gets a 404:
    one that has seen the document of this tag waits (fail-closed, see
    lcm_device/rollout.py); one that never saw it takes the release, so the
    window is one API request long (docs/fleet.md says so). A run killed
    in between is finished by running it again: a `.next` asset without
    `rollout.lcm` is renamed into place first (left as it was, it let every
    new device take the release, and the halt it carried refused the re-run);
    one beside `rollout.lcm` (killed before the delete) is dropped and made
    again. Asking again for what is already in place (the same halt) is done.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from github.GitRelease import GitRelease
from github.GitReleaseAsset import GitReleaseAsset

from cert_sector import rollout as ro
from cert_sector.assets import MANIFEST_ASSET, ROLLOUT_ASSET, SECTOR_ASSET
from cert_sector.errors import TrustError
from publisher import manifest_format as mf
from publisher import sector_format as sf
from publisher.release.errors import ReleaseConflictError, VerifyError
from publisher.release.github import Session
from publisher.signing import Signer

NEXT_ASSET = ROLLOUT_ASSET + ".next"


def sign_rollout(signer: Signer, doc: ro.Rollout) -> bytes:
    body = ro.pack_body(doc)
    return body + signer.key_id + signer.sign(body)


def check_share(share: int) -> int:
    if not 0 <= share <= 100:
        raise ReleaseConflictError(f"a roll-out share is 0 to 100 percent, not {share}")
    return share


@dataclass
class RolloutResult:
    tag: str
    sequence: int  # the roll-out document's own sequence
    share: int
    halted: bool
    previous: str

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def hint(self) -> str:
        return f"{self.tag} rollout " + ("halted" if self.halted else str(self.share))


def _renamer(asset: GitReleaseAsset) -> Callable[[], GitReleaseAsset]:
    return lambda: asset.update_asset(ROLLOUT_ASSET)


def _asset_bytes(session: Session, release: GitRelease, name: str, limit: int) -> bytes | None:
    for asset in session.assets(release):
        if asset.name == name and asset.state == "uploaded":
            return session.download(asset, limit)
    return None


def widen(
    session: Session, repo_name: str, tag: str, signer: Signer, share: int | None, halt: bool
) -> RolloutResult:
    """Publish the next roll-out document of `tag`: a larger share, or the halt."""
    repo = session.repo(repo_name)
    release = next((r for r in session.releases(repo) if r.tag_name == tag and not r.draft), None)
    if release is None:
        raise ReleaseConflictError(f"{repo_name} has no published release {tag}")
    manifest = _asset_bytes(session, release, MANIFEST_ASSET, mf.MAX_MANIFEST_SIZE)
    sector_bytes = _asset_bytes(session, release, SECTOR_ASSET, sf.MAX_SECTOR_SIZE)
    current = _asset_bytes(session, release, ROLLOUT_ASSET, ro.MAX_ROLLOUT_SIZE)
    pending: GitReleaseAsset | None = None  # a `.next` to rename into place
    for asset in session.assets(release):
        if asset.name != NEXT_ASSET:
            continue
        if current is None:
            # A run killed between the delete and the rename: finished once the
            # checks below pass its document, which is the current one.
            current = _asset_bytes(session, release, NEXT_ASSET, ro.MAX_ROLLOUT_SIZE)
            pending = asset
        else:
            # Killed before the delete: the old document is still in place; made again.
            session.call(f"removing an unfinished {NEXT_ASSET}", asset.delete_asset)
    if manifest is None or sector_bytes is None:
        raise VerifyError(MANIFEST_ASSET, f"{tag} lacks its manifest or cert sector")
    if current is None:
        raise ReleaseConflictError(
            f"{tag} was not published with --rollout: it is already out to the whole fleet"
        )
    try:
        sector = sf.parse_sector(sector_bytes)
        m = mf.parse_manifest(manifest)
        old = ro.verify_rollout(current, sector, repo_name, tag)
    except TrustError as exc:
        raise VerifyError(ROLLOUT_ASSET, str(exc)) from None
    if pending is not None:  # verified: into place, whoever runs this and with what key
        session.call(f"renaming {NEXT_ASSET} to {ROLLOUT_ASSET}", _renamer(pending))
    if sector.release_key(signer.key_id) is None:
        raise ReleaseConflictError(
            f"the key {signer.key_id.hex()} is not a release key of {tag}'s cert sector"
        )
    previous = "halted" if old.halted else f"{old.share} %"
    if old.halted and halt:  # asked again (a re-run): it is in place
        return RolloutResult(tag, old.seq, old.share, True, previous)
    if old.halted:
        raise ReleaseConflictError(f"the roll-out of {tag} is halted: publish a fixed release")
    if not halt:
        assert share is not None
        if check_share(share) < old.share:
            raise ReleaseConflictError(
                f"a roll-out only widens: {tag} is at {old.share} %, not going back to {share} %"
            )
    doc = ro.Rollout(repo_name, tag, m.seq, old.seq + 1, old.share if halt else share, halt)
    data = sign_rollout(signer, doc)
    session.upload(release, NEXT_ASSET, data)
    for asset in session.assets(release):
        if asset.name == ROLLOUT_ASSET:
            session.call(f"removing the old {ROLLOUT_ASSET}", asset.delete_asset)
    for asset in session.assets(release):
        if asset.name == NEXT_ASSET:
            session.call(f"renaming {NEXT_ASSET} to {ROLLOUT_ASSET}", _renamer(asset))
    return RolloutResult(tag, doc.seq, doc.share, doc.halted, previous)
