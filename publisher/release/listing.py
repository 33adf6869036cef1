"""`lcm release list`: every release of a repo with what its manifest says."""

from __future__ import annotations

import datetime as dt
from typing import Any

from cert_sector.assets import MANIFEST_ASSET, ROLLOUT_ASSET
from cert_sector.errors import TrustError
from cert_sector.rollout import MAX_ROLLOUT_SIZE, parse_rollout
from publisher import manifest_format as mf
from publisher.release.github import Session
from publisher.release.publish import YANKED_PREFIX
from publisher.timefmt import format_date


def _state(draft: bool, name: str) -> str:
    """published, draft, or `yanked: REASON` (a draft `lcm release yank` made: its name)."""
    if not draft:
        return "published"
    return name if name.startswith(YANKED_PREFIX) else "draft"


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
            "state": _state(release.draft, release.name or ""),
            "date": (release.published_at or release.created_at).isoformat()
            if (release.published_at or release.created_at)
            else None,
            "assets": {a.name: a.size for a in assets},
            "notes": release.body or "",
            # A staged release's share (its signed rollout.lcm, not checked here: verify
            # does), or None for a release out to the whole fleet.
            "rollout": None,
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
        staged = next((a for a in assets if a.name == ROLLOUT_ASSET), None)
        if staged is not None:
            try:
                r = parse_rollout(session.download(staged, MAX_ROLLOUT_SIZE))
                row["rollout"] = {"share": r.share, "halted": r.halted, "sequence": r.seq}
            except TrustError as exc:
                row["problem"] = f"unreadable {ROLLOUT_ASSET}: {exc}"
        rows.append(row)
    rows.sort(key=lambda r: -1 if r["sequence"] is None else r["sequence"], reverse=True)
    return rows


COLUMNS = ("TAG", "SEQUENCE", "CHANNEL", "KIND", "BOARDS", "STATE", "PUBLISHED (UTC)")


def _staged(rollout: dict[str, Any] | None) -> str:
    if rollout is None:
        return ""
    share = f"{rollout['share']} %"
    return f", halted at {share}" if rollout["halted"] else f", roll-out {share}"


def _aligned(table: list[list[str]], indent: str = "") -> list[str]:
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return [
        indent + "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
        for row in table
    ]


def text_rows(rows: list[dict[str, Any]], width: int = 80) -> list[str]:
    """`lcm release list` as plain lines: nothing is ever cut (a pipe gets every tag whole).

    One aligned table when it fits `width`; otherwise (long tags) each tag on a line
    of its own with the other columns aligned below it. Notes and problems are
    indented under their release.
    """
    cells = [
        [
            "?" if r["sequence"] is None else str(r["sequence"]),
            r["channel"],
            r["kind"] or "?",
            ",".join(r["boards"]) or "any",
            r["state"] + _staged(r["rollout"]),
            format_date(dt.datetime.fromisoformat(r["date"]).timestamp()).removesuffix(" UTC")
            if r["date"]
            else "",
        ]
        for r in rows
    ]
    header = list(COLUMNS)
    table = _aligned([header, *[[r["tag"], *c] for r, c in zip(rows, cells, strict=True)]])
    stacked = max(len(line) for line in table) > width
    details = _aligned([header[1:], *cells], "  ") if stacked else []
    lines = [header[0], details[0]] if stacked else [table[0]]
    for n, r in enumerate(rows):
        lines += [r["tag"], details[n + 1]] if stacked else [table[n + 1]]
        lines += [f"    {line}" for line in r["notes"].strip().splitlines()]
        if r["problem"]:
            lines.append(f"    problem: {r['problem']}")
    return lines
