"""`lcm release yank` and `lcm release delete`: withdraw a bad release without stranding devices.

What each guarantees (docs/maintainer.md, "Withdrawing a release"):

  W1  Devices that have not installed it never will: a yanked release goes back
      to being a draft (invisible to devices and to anonymous API readers); a
      deleted one is gone. Neither is ever /releases/latest again: the remaining
      full release with the highest sequence is marked latest.
  W2  The beta pointer (beta.tag on the latest full release) names the newest
      remaining published release, never the withdrawn one.
  W3  Devices that installed it are not stranded: it keeps running (it was
      verified and confirmed), they do not go back to an older sequence, and
      they install the next release published, whose sequence is above the
      withdrawn one's whatever is deleted (rules Q1/Q2, publisher/release/sequence.py).
A yanked draft keeps its assets and is named `yanked: ...`; `publish` refuses to
resume it without --force, so a re-run CI job cannot un-yank it by accident.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from github.GitRelease import GitRelease
from github.Repository import Repository

from publisher import sector_format as sf
from publisher.errors import PublisherError
from publisher.release.errors import ReleaseConflictError
from publisher.release.github import Session
from publisher.release.publish import (
    YANKED_PREFIX,
    KnownRelease,
    is_yanked,
    latest_full_release,
    move_beta_pointer,
    newest_sector,
    read_known,
    was_published,
)

MAX_REASON = 100


@dataclass
class WithdrawResult:
    tag: str
    action: str  # "yanked", "deleted" or "already yanked"
    sequence: int | None
    latest: str | None  # the tag /releases/latest now answers, None if no full release is left
    beta_pointer: str | None
    warnings: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _find(
    session: Session, repo: Repository, tag: str
) -> tuple[KnownRelease | None, list[KnownRelease]]:
    """The release of `tag` (a published one first; None when there is none), and the
    others."""
    warnings: list[str] = []
    known = [read_known(session, r, warnings) for r in session.releases(repo)]
    matches = [k for k in known if k.release.tag_name == tag]
    published = [k for k in matches if not k.release.draft]
    target = published[0] if published else matches[0] if matches else None
    if target is None:
        return None, known
    return target, [k for k in known if k.release.id != target.release.id]


def _repair(
    session: Session, repo: Repository, others: list[KnownRelease]
) -> tuple[str | None, str | None]:
    """Rules W1, W2: the highest-sequence full release is latest; beta.tag names the newest."""
    live = [k for k in others if not k.release.draft and k.manifest is not None]
    full = [k for k in live if not k.release.prerelease]
    if not full:
        return None, None
    best = max(full, key=lambda k: k.manifest.seq if k.manifest else -1)
    current = latest_full_release(session, repo)
    if current is None or current.id != best.release.id:
        release: GitRelease = best.release
        session.call(
            f"marking {release.tag_name} as the latest release",
            lambda: release.update_release(
                release.name or release.tag_name,
                release.body or "",
                draft=False,
                make_latest="true",
            ),
        )
    newest = max(live, key=lambda k: k.manifest.seq if k.manifest else -1)
    return best.release.tag_name, move_beta_pointer(session, repo, newest.release.tag_name)


def yank(session: Session, repo_name: str, tag: str, reason: str = "") -> WithdrawResult:
    """Turn a published release back into a draft named `yanked: ...` (rules W1-W3)."""
    # The reason becomes the release's name: one line, short enough for a listing's column.
    if len(reason) > MAX_REASON or not reason.isprintable():
        raise PublisherError(
            f"--reason must be one line of at most {MAX_REASON} printable characters "
            "(it becomes the release's name)"
        )
    repo = session.repo(repo_name)
    target, others = _find(session, repo, tag)
    if target is None:
        raise ReleaseConflictError(f"{repo.full_name} has no release {tag}")
    seq = target.max_seq
    release = target.release
    if release.draft:
        if is_yanked(release):
            latest, pointer = _repair(session, repo, others)
            return WithdrawResult(tag, "already yanked", seq, latest, pointer)
        raise ReleaseConflictError(f"{tag} is a draft, not a published release: nothing to yank")
    title = f"{YANKED_PREFIX}{reason or tag}"
    session.call(
        f"turning {tag} back into a draft",
        lambda: release.update_release(
            title, release.body or "", draft=True, prerelease=release.prerelease
        ),
    )
    latest, pointer = _repair(session, repo, others)
    return WithdrawResult(tag, "yanked", seq, latest, pointer)


def delete(session: Session, repo_name: str, tag: str) -> WithdrawResult:
    """Delete a release (published, yanked or draft) and its assets (rules W1-W3).

    The git tag, if the host keeps one, is left alone: it is the source history.
    """
    repo = session.repo(repo_name)
    target, others = _find(session, repo, tag)
    if target is None:
        # Gone already (a run killed after the delete, or the web page): what it leaves
        # to repair (latest, the beta pointer naming it) is repaired; still an error.
        _repair(session, repo, others)
        raise ReleaseConflictError(
            f"{repo.full_name} has no release {tag} (deleted already? the latest release and "
            "the beta pointer were checked)"
        ) from None
    release = target.release
    if was_published(release):
        # Rule W3: its cert sector is on the devices that installed it; gone with it,
        # the next publish takes an older one, which they refuse (S6).
        mine, rest = newest_sector(session, [target]), newest_sector(session, others)
        seq = sf.parse_sector(mine[0]).seq if mine is not None else -1
        if seq > (sf.parse_sector(rest[0]).seq if rest is not None else -1):
            raise ReleaseConflictError(
                f"{tag} carries the repo's newest cert sector (sequence {seq}), which no "
                "other release has: devices that "
                "installed it would refuse every later release. Yank it instead (its "
                "sector stays for the next publish), or publish a release with that sector "
                "(--certs) first"
            )
    session.call(f"deleting {tag}", release.delete_release)
    latest, pointer = _repair(session, repo, others)
    return WithdrawResult(tag, "deleted", target.max_seq, latest, pointer)
