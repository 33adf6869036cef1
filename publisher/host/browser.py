"""The browser URLs devices use, with GitHub's redirect chain, and the signed asset URLs.

  /O/R/releases                          200, a small HTML list
  /O/R/releases/latest                   302 /O/R/releases/tag/TAG (or /O/R/releases if none)
  /O/R/releases/tag/TAG                  200, a small HTML page (drafts: 404)
  /O/R/releases/latest/download/NAME     302 /O/R/releases/download/TAG/NAME
  /O/R/releases/download/TAG/NAME        302 /api/objects/ID/NAME?expires=..&sig=..
  /api/objects/ID/NAME?expires=&sig=     the bytes: Content-Length, Range/206/416, ETag

None of these count against the API rate limit. A draft is only reachable as
`untagged-…` and only with the token, as a signed-in maintainer on GitHub.
"""

from __future__ import annotations

import dataclasses
import email.utils
import html
import logging
import re
from typing import BinaryIO
from urllib.parse import quote

from publisher.host.errors import ApiError, not_found
from publisher.host.exchange import (
    FileBody,
    Request,
    Response,
    ascii_int,
    error_response,
    etag_matches,
    html_response,
    redirect,
)
from publisher.host.state import HostState
from publisher.host.store import Asset, Release, Repo, Store
from publisher.host.urlsign import OBJECTS_PREFIX

log = logging.getLogger("lcm.host")

_RANGE = re.compile(r"^bytes=([0-9]{0,18})-([0-9]{0,18})$")


def handle_browser(state: HostState, req: Request) -> Response:
    if req.method not in ("GET", "HEAD"):
        raise not_found()
    parts = req.segments("")
    if len(parts) < 3 or parts[2] != "releases":
        raise not_found()
    store = state.store
    repo = store.read(lambda: store.repo(parts[0] + "/" + parts[1]))
    rest = parts[3:]
    base = f"{req.urls.web}/{repo.full_name}/releases"
    response: Response
    if not rest:
        response = releases_page(state, repo)
    elif rest == ["latest"]:
        latest = store.read(lambda: store.latest(repo))
        if latest is None:
            response = redirect(base)
        else:
            response = redirect(f"{base}/tag/{quote(latest.tag_name, safe='/')}")
    elif rest[0] == "tag" and len(rest) >= 2:
        rel = find_release(state, req, repo, "/".join(rest[1:]))
        response = tag_page(state, rel)
    elif len(rest) == 3 and rest[:2] == ["latest", "download"]:
        latest = store.read(lambda: store.latest(repo))
        if latest is None:
            raise not_found()
        store.read(lambda: downloadable(state, latest, rest[2]))
        tag = quote(latest.tag_name, safe="/")
        response = redirect(f"{base}/download/{tag}/{quote(rest[2])}")
    elif rest[0] == "download" and len(rest) >= 3:
        rel = find_release(state, req, repo, "/".join(rest[1:-1]))
        asset = store.read(lambda: downloadable(state, rel, rest[-1]))
        query = state.signer.query(asset.id)
        response = redirect(req.urls.signed_asset(asset, query))
    else:
        raise not_found()
    response.head_only = req.method == "HEAD"
    return response


def find_release(state: HostState, req: Request, repo: Repo, tag: str) -> Release:
    """A published release by tag, or a draft by `untagged-…` for the token holder only."""
    store = state.store
    if tag.startswith("untagged-"):
        if not req.authenticated:
            raise not_found()
        untagged = tag.removeprefix("untagged-")
        return store.read(lambda: store.draft_by_untagged(repo, untagged))
    return store.read(lambda: store.release_by_tag(repo, tag))


def downloadable(state: HostState, rel: Release, name: str) -> Asset:
    asset = state.store.asset_named(rel, name)
    if asset.state != "uploaded":
        raise not_found()
    return asset


def releases_page(state: HostState, repo: Repo) -> Response:
    store = state.store
    rels = store.read(lambda: store.releases_of(repo, drafts=False))
    items = "".join(
        f'<li><a href="releases/tag/{html.escape(quote(r.tag_name, safe="/"))}">'
        f"{html.escape(r.tag_name)}</a>{' (pre-release)' if r.prerelease else ''}</li>"
        for r in rels
    )
    title = html.escape(repo.full_name)
    return html_response(200, f"<!doctype html><title>{title} releases</title><ul>{items}</ul>\n")


def tag_page(state: HostState, rel: Release) -> Response:
    store = state.store
    assets = store.read(lambda: [a for a in store.assets_of(rel) if a.state == "uploaded"])
    tag = html.escape(rel.tag_name)
    items = "".join(
        f'<li><a href="../download/{html.escape(quote(rel.tag_name, safe="/"))}/'
        f'{html.escape(quote(a.name))}">{html.escape(a.name)}</a> {a.size} bytes</li>'
        for a in assets
    )
    # The release notes (the body `lcm release publish --notes` sets), escaped: any text.
    notes = f"<pre>{html.escape(rel.body)}</pre>" if rel.body else ""
    heading = f"<h1>{html.escape(rel.name or rel.tag_name)}</h1>"
    page = f"<!doctype html><title>{tag}</title>{heading}{notes}<ul>{items}</ul>\n"
    return html_response(200, page)


def handle_object(state: HostState, req: Request) -> Response:
    """A signed asset URL: the bytes, honouring Range, If-Range and If-None-Match."""
    if req.method not in ("GET", "HEAD"):
        raise ApiError(405, "Method Not Allowed", headers={"Allow": "GET, HEAD"})
    parts = req.segments(OBJECTS_PREFIX)
    asset_id = ascii_int(parts[0], 18) if len(parts) == 2 else None
    if asset_id is None:
        raise not_found()
    state.signer.check(asset_id, req.query.get("expires"), req.query.get("sig"))
    store = state.store
    asset, opened = store.read(lambda: _open_asset(store, asset_id))
    try:
        response = _object_response(store, req, asset, opened)
    except BaseException:
        opened.close()
        raise
    if not isinstance(response.body, FileBody):
        opened.close()  # else the handler closes it with the answer
    return response


def _open_asset(store: Store, asset_id: int) -> tuple[Asset, BinaryIO]:
    """A copy of the asset's record and its file opened, under the store's lock: a replace
    or delete that comes next unlinks the file, which an open file keeps readable."""
    asset = store.assets.get(asset_id)
    if asset is None or asset.state != "uploaded" or asset.sha256 is None:
        raise not_found()
    path = store.asset_path(asset)
    try:
        return dataclasses.replace(asset), open(path, "rb")  # closed by the caller
    except OSError:
        # The data folder damaged from outside (the store never leaves a record without
        # its file): a 404, never a 200 whose bytes do not come.
        log.error("asset %s (%s) has no file %s: answered 404", asset.id, asset.name, path)
        raise not_found() from None


def _object_response(store: Store, req: Request, asset: Asset, opened: BinaryIO) -> Response:
    etag = f'"{asset.sha256}"'
    headers = {
        "Content-Type": "application/octet-stream",
        "Content-Disposition": f"attachment; filename={asset.name}",
        "Accept-Ranges": "bytes",
        "ETag": etag,
        "Last-Modified": email.utils.formatdate(asset.updated_at, usegmt=True),
    }
    head_only = req.method == "HEAD"
    if etag_matches(req.headers.get("If-None-Match"), etag):
        return Response(304, headers, head_only=True)
    size = asset.size
    wanted = req.headers.get("Range")
    if_range = req.headers.get("If-Range")
    if wanted is not None and (if_range is None or if_range.strip() == etag):
        try:
            span = parse_range(wanted, size)
        except RangeNotSatisfiable:
            error = ApiError(416, f"Range Not Satisfiable: the asset has {size} bytes")
            answer = error_response(error)
            answer.headers["Content-Range"] = f"bytes */{size}"
            answer.head_only = head_only
            return answer
        if span is not None:
            start, end = span
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            body = FileBody(opened, start, end - start + 1)
            return Response(206, headers, body, head_only=head_only)
    if not head_only:
        store.count_download(asset.id)
    return Response(200, headers, FileBody(opened, 0, size), head_only=head_only)


class RangeNotSatisfiable(Exception):
    """The range starts at or after the end of the asset: 416."""


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """(first, last) of one byte range, or None to ignore the header (serve it all).

    Several ranges, or syntax that is not a byte range, are ignored as RFC 9110
    allows: the client gets the whole asset with 200.
    """
    m = _RANGE.match(header.strip())
    if m is None:
        return None
    first, last = m.group(1), m.group(2)
    if not first and not last:
        return None
    if not first:  # suffix: the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            raise RangeNotSatisfiable
        return max(0, size - n), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None
    if start >= size:
        raise RangeNotSatisfiable
    return start, min(end, size - 1)
