"""The REST subset under /api/v3 that PyGithub uses, and uploads under /api/uploads.

Routes (OWNER/REPO are case-insensitive, as on GitHub):

  OPTIONS  any path                            CORS preflight: 204
  GET    /                                      the API root (gh auth checks the token here)
  GET    /rate_limit
  GET    /user, /users/NAME                     the host's user; repo owners as organizations
  GET    /repos/O/R
  GET    /repos/O/R/releases                    paginated, drafts only with the token
  POST   /repos/O/R/releases
  POST   /repos/O/R/releases/generate-notes    notes from the previous release
  GET    /repos/O/R/releases/latest
  GET    /repos/O/R/releases/tags/TAG
  GET    /repos/O/R/releases/ID        PATCH, DELETE
  GET    /repos/O/R/releases/ID/assets          paginated
  GET    /repos/O/R/releases/assets/ID PATCH, DELETE
         (GET with `Accept: application/octet-stream`: 302 to a signed asset URL)
  POST   /api/uploads/repos/O/R/releases/ID/assets?name=&label=   raw body

Every answer carries GitHub's CORS headers; a GET answered 200 carries an
ETag (a hash of the body) and `If-None-Match` with it answers 304, which
does not count against the rate limit (as on GitHub).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from publisher.host import names, render
from publisher.host.errors import ApiError, not_found, validation_failed
from publisher.host.exchange import (
    Request,
    Response,
    ascii_int,
    etag_matches,
    json_response,
    redirect,
)
from publisher.host.ratelimit import client_key
from publisher.host.state import HostState
from publisher.host.store import MAKE_LATEST_VALUES, Release, Repo

API_PREFIX = "/api/v3"
UPLOADS_PREFIX = "/api/uploads"
MAX_ASSET_BYTES = 2 * 1024**3  # GitHub refuses release assets of 2 GiB and more
UPLOAD_CHUNK = 64 * 1024
DEFAULT_PER_PAGE = 30
MAX_PER_PAGE = 100
_CONTENT_TYPE = re.compile(r"^[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+$")

SECONDARY_DOCS = (
    "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"
)

RELEASE_STRINGS = ("tag_name", "target_commitish", "name", "body")
RELEASE_BOOLS = ("draft", "prerelease")

TOKEN_SCOPES = "gist, read:org, repo, workflow"

# What github.com's API answers carry for browsers (CORS), and its preflight answer.
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "ETag, Link, Location, Retry-After, X-GitHub-OTP, "
    "X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Used, X-RateLimit-Resource, "
    "X-RateLimit-Reset, X-OAuth-Scopes, X-Accepted-OAuth-Scopes, X-Poll-Interval, "
    "X-GitHub-Media-Type, X-GitHub-SSO, X-GitHub-Request-Id, Deprecation, Sunset",
}
PREFLIGHT_HEADERS = {
    "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match, If-Modified-Since, "
    "If-None-Match, If-Unmodified-Since, Accept-Encoding, X-GitHub-OTP, X-Requested-With, "
    "User-Agent, GraphQL-Features",
    "Access-Control-Allow-Methods": "GET, POST, PATCH, PUT, DELETE",
    "Access-Control-Max-Age": "86400",
}


def with_cors(
    answer: Callable[[HostState, Request], Response], state: HostState, req: Request
) -> Response:
    """An API answer (REST, uploads, GraphQL) with GitHub's CORS headers, errors included;
    a browser's preflight (OPTIONS, no credentials, not counted) answered 204."""
    if req.method == "OPTIONS":
        return Response(204, {**CORS_HEADERS, **PREFLIGHT_HEADERS})
    try:
        response = answer(state, req)
    except ApiError as exc:
        exc.headers = {**CORS_HEADERS, **exc.headers}
        raise
    response.headers = {**CORS_HEADERS, **response.headers}
    return response


def handle_api(state: HostState, req: Request) -> Response:
    """A request under /api/v3: faults, auth, rate limit, the route, then the ETag."""
    injected = injected_failure(state)
    if injected is not None:
        return injected
    if req.auth == "invalid":
        raise ApiError(401, "Bad credentials")
    parts = req.segments(API_PREFIX)
    if parts == ["rate_limit"] and req.route_method == "GET":
        return rate_limit(state, req)
    rate_key = "token" if req.authenticated else "ip:" + client_key(req.client_ip)
    if req.authenticated:
        # The one token may do everything; gh checks a token's scopes in this header.
        rate_headers = state.limiter.authenticated() | {"X-OAuth-Scopes": TOKEN_SCOPES}
    else:
        rate_headers = state.limiter.anonymous(req.client_ip)
    try:
        response = route_api(state, req, parts)
    except ApiError as exc:
        exc.headers = {**rate_headers, **exc.headers}
        raise
    response.headers = {**rate_headers, **response.headers}
    if req.route_method == "GET" and response.status == 200:
        response = conditional(state, req, response, rate_key)
    return response


def conditional(state: HostState, req: Request, response: Response, rate_key: str) -> Response:
    """An ETag on a GET's answer; 304 (not counted, as on GitHub) when the client has it.

    The tag hashes the body, which already differs by the URLs' base and by what
    the token may see, so one tag never stands for two different answers.
    """
    assert isinstance(response.body, bytes)
    etag = 'W/"' + hashlib.sha256(response.body).hexdigest()[:40] + '"'
    response.headers["ETag"] = etag
    response.headers["Vary"] = "Accept, Authorization"
    if not etag_matches(req.headers.get("If-None-Match"), etag):
        return response
    headers = state.limiter.refund(rate_key)
    keep = ("ETag", "Vary", "Link", "Cache-Control")
    kept = {k: v for k, v in response.headers.items() if k in keep}
    return Response(304, {**headers, **kept})


def injected_failure(state: HostState) -> Response | None:
    """A 502 or a secondary rate limit injected by a test, as GitHub sends them."""
    if state.faults.take("status502"):
        return json_response(502, {"message": "Server Error"})
    if state.faults.take("secondary_rate_limit"):
        body = {
            "message": "You have exceeded a secondary rate limit. Please wait a few minutes "
            "before you try again.",
            "documentation_url": SECONDARY_DOCS,
            "status": "403",
        }
        return json_response(403, body, {"Retry-After": "1"})
    return None


def route_api(state: HostState, req: Request, parts: list[str]) -> Response:
    method = req.route_method
    if method in ("POST", "PATCH", "DELETE", "PUT") and not req.authenticated:
        raise ApiError(401, "Requires authentication")
    store = state.store
    if not parts and method == "GET":
        return json_response(200, render.api_root(req.urls))
    if parts == ["user"] and method == "GET":
        if not req.authenticated:
            raise ApiError(401, "Requires authentication")
        return json_response(200, user_profile(state, req, render.HOST_USER))
    if len(parts) == 2 and parts[0] == "users" and method == "GET":
        return json_response(200, user_profile(state, req, parts[1]))
    if len(parts) < 3 or parts[0] != "repos":
        raise not_found()
    repo = store.read(lambda: store.repo(parts[1] + "/" + parts[2]))
    rest = parts[3:]
    if not rest and method == "GET":
        return json_response(200, render.repo_json(req.urls, repo))
    if len(rest) >= 4 and rest[:3] == ["git", "refs", "tags"] and method == "DELETE":
        return delete_tag(state, repo, "/".join(rest[3:]))
    if not rest or rest[0] != "releases":
        raise not_found()
    rest = rest[1:]
    if not rest:
        if method == "GET":
            return list_releases(state, req, repo)
        if method == "POST":
            return create_release(state, req, repo)
    elif rest == ["generate-notes"] and method == "POST":
        return generate_notes(state, req, repo)
    elif rest == ["latest"] and method == "GET":
        rel = store.read(lambda: store.latest(repo))
        if rel is None:
            raise not_found()
        return release_response(state, req, rel)
    elif len(rest) >= 2 and rest[0] == "tags" and method == "GET":
        tag = "/".join(rest[1:])  # PyGithub sends a tag's "/" as %2F; both work
        rel = store.read(lambda: store.release_by_tag(repo, tag))
        return release_response(state, req, rel)
    elif len(rest) == 2 and rest[0] == "assets":
        return asset_route(state, req, repo, parse_id(rest[1]))
    elif len(rest) == 1:
        return release_route(state, req, repo, parse_id(rest[0]))
    elif len(rest) == 2 and rest[1] == "assets" and method == "GET":
        rel_id = parse_id(rest[0])
        rel = store.read(lambda: store.release(repo, rel_id, drafts=req.authenticated))
        assets = store.read(lambda: store.assets_of(rel))
        page, link = paginate(req, assets)
        body = [render.asset_json(req.urls, rel, a) for a in page]
        return json_response(200, body, link)
    raise not_found()


def delete_tag(state: HostState, repo: Repo, tag: str) -> Response:
    """`gh release delete --cleanup-tag`: tags are names only here, so a tag no published
    release carries is gone already (204); one that a release carries stays (422)."""
    store = state.store
    try:
        rel = store.read(lambda: store.release_by_tag(repo, tag))
    except ApiError:
        return Response(204)
    raise validation_failed(
        "Reference", "custom", "ref", f"tag {tag} is the tag of release {rel.id}: delete it first"
    )


def user_profile(state: HostState, req: Request, login: str) -> dict[str, Any]:
    """The host's own user, or the owner of a served repo (as an organization); else 404."""
    store = state.store
    repos = store.read(lambda: list(store.repos.values()))
    since = min((r.created_at for r in repos), default=None)
    if login.lower() == render.HOST_USER:
        return render.full_user(req.urls, render.HOST_USER, "User", since)
    owned = [r for r in repos if r.full_name.split("/")[0].lower() == login.lower()]
    if not owned:
        raise not_found()
    owner = owned[0].full_name.split("/")[0]
    created = min(r.created_at for r in owned)
    return render.full_user(req.urls, owner, "Organization", created) | {"public_repos": len(owned)}


def parse_id(text: str) -> int:
    number = ascii_int(text, 18)
    if number is None:
        raise not_found()
    return number


def rate_limit(state: HostState, req: Request) -> Response:
    """GET /rate_limit: does not count against the limit, as on GitHub."""
    if req.authenticated:
        headers = state.limiter.authenticated(count=False)
    else:
        headers = state.limiter.anonymous(req.client_ip, count=False)
    core = {
        "limit": int(headers["X-RateLimit-Limit"]),
        "remaining": int(headers["X-RateLimit-Remaining"]),
        "reset": int(headers["X-RateLimit-Reset"]),
        "used": int(headers["X-RateLimit-Used"]),
        "resource": "core",
    }
    return json_response(200, {"resources": {"core": core}, "rate": core}, headers)


def paginate(req: Request, items: list[Any]) -> tuple[list[Any], dict[str, str]]:
    """GitHub's `page`/`per_page` with a `Link` header (absolute URLs on this host)."""
    per_page = _int_param(req, "per_page", DEFAULT_PER_PAGE)
    per_page = min(max(per_page, 1), MAX_PER_PAGE)
    page = max(_int_param(req, "page", 1), 1)
    last = max(1, -(-len(items) // per_page))
    chunk = items[(page - 1) * per_page : page * per_page]

    def url(n: int) -> str:
        query = {**req.query, "per_page": str(per_page), "page": str(n)}
        return f"{req.urls.web}{req.path}?{urlencode(query)}"

    links = []
    if page < last:
        links += [f'<{url(page + 1)}>; rel="next"', f'<{url(last)}>; rel="last"']
    if page > 1:
        links += [f'<{url(1)}>; rel="first"', f'<{url(min(page - 1, last))}>; rel="prev"']
    return chunk, ({"Link": ", ".join(links)} if links else {})


def _int_param(req: Request, name: str, default: int) -> int:
    number = ascii_int(req.query.get(name, ""), 9)
    return default if number is None else number


def release_response(state: HostState, req: Request, rel: Release, status: int = 200) -> Response:
    store = state.store
    return json_response(status, store.read(lambda: render.release_json(req.urls, store, rel)))


def list_releases(state: HostState, req: Request, repo: Repo) -> Response:
    store = state.store
    rels = store.read(lambda: store.releases_of(repo, drafts=req.authenticated))
    page, link = paginate(req, rels)
    body = store.read(lambda: [render.release_json(req.urls, store, r) for r in page])
    return json_response(200, body, link)


def release_fields(body: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The release fields of a create/update body, type-checked as GitHub does (422)."""
    fields: dict[str, Any] = {}
    for key in RELEASE_STRINGS:
        if key in body and body[key] is not None:
            if not isinstance(body[key], str):
                raise validation_failed("Release", "invalid", key, f"{key} must be a string")
            fields[key] = body[key]
    for key in RELEASE_BOOLS:
        if key in body and body[key] is not None:
            if not isinstance(body[key], bool):
                raise validation_failed("Release", "invalid", key, f"{key} must be a boolean")
            fields[key] = body[key]
    if "tag_name" in fields:
        names.check_tag_name(fields["tag_name"])
    make_latest = body.get("make_latest")
    if make_latest is not None and make_latest not in MAKE_LATEST_VALUES:
        raise validation_failed(
            "Release", "invalid", "make_latest", "make_latest must be true, false or legacy"
        )
    return fields, make_latest


def create_release(state: HostState, req: Request, repo: Repo) -> Response:
    body = req.json_body()
    fields, make_latest = release_fields(body)
    tag = names.check_tag_name(fields.get("tag_name"))
    generate = body.get("generate_release_notes")
    if generate is not None and not isinstance(generate, bool):
        raise validation_failed("Release", "invalid", "generate_release_notes", "must be a boolean")
    if generate:
        # As GitHub: the notes follow the body given, if any.
        notes = release_notes(state, req, repo, tag, None)
        fields["body"] = (fields["body"] + "\n\n" + notes) if fields.get("body") else notes
    rel = state.store.create_release(repo, fields, render.HOST_USER, make_latest)
    response = release_response(state, req, rel, 201)
    response.headers["Location"] = f"{req.urls.repo_api(rel.repo)}/releases/{rel.id}"
    return response


def release_notes(
    state: HostState, req: Request, repo: Repo, tag: str, previous: str | None
) -> str:
    """What GitHub generates for a repo without pull requests: the changelog link from the
    previous release (the latest full one, else the newest other published one)."""
    store = state.store

    def previous_tag() -> str | None:
        others = [r for r in store.releases_of(repo, drafts=False) if r.tag_name != tag]
        latest = store.latest(repo)
        if latest is not None and latest.tag_name != tag:
            return latest.tag_name
        return others[0].tag_name if others else None

    if previous is None:
        previous = store.read(previous_tag)
    base = f"{req.urls.web}/{repo.full_name}"
    if previous is None:
        return f"**Full Changelog**: {base}/commits/{tag}"
    return f"**Full Changelog**: {base}/compare/{previous}...{tag}"


def generate_notes(state: HostState, req: Request, repo: Repo) -> Response:
    """POST /repos/O/R/releases/generate-notes: `{name, body}` for a release of `tag_name`."""
    body = req.json_body()
    tag = names.check_tag_name(body.get("tag_name"))
    previous = body.get("previous_tag_name")
    if previous is not None:
        if not isinstance(previous, str):
            raise validation_failed("Release", "invalid", "previous_tag_name")
        previous = names.check_tag_name(previous)
    return json_response(200, {"name": tag, "body": release_notes(state, req, repo, tag, previous)})


def release_route(state: HostState, req: Request, repo: Repo, rel_id: int) -> Response:
    store = state.store
    if req.route_method == "GET":
        rel = store.read(lambda: store.release(repo, rel_id, drafts=req.authenticated))
        return release_response(state, req, rel)
    if req.route_method == "PATCH":
        fields, make_latest = release_fields(req.json_body())
        if fields.get("draft") is True:
            fields["published_at"] = None
        rel = store.update_release(repo, rel_id, fields, make_latest)
        return release_response(state, req, rel)
    if req.route_method == "DELETE":
        store.delete_release(repo, rel_id)
        return Response(204)
    raise not_found()


def asset_route(state: HostState, req: Request, repo: Repo, asset_id: int) -> Response:
    store = state.store
    if req.route_method == "GET":
        rel, asset = store.read(lambda: store.asset(repo, asset_id, drafts=req.authenticated))
        if "application/octet-stream" in (req.headers.get("Accept") or ""):
            if asset.state != "uploaded":
                raise not_found()
            query = state.signer.query(asset.id)
            return redirect(req.urls.signed_asset(asset, query))
        return json_response(200, render.asset_json(req.urls, rel, asset))
    if req.route_method == "PATCH":
        body = req.json_body()
        name = body.get("name")
        label = body.get("label")
        if name is not None and not isinstance(name, str):
            raise validation_failed("ReleaseAsset", "invalid", "name")
        if label is not None and not isinstance(label, str):
            raise validation_failed("ReleaseAsset", "invalid", "label")
        new_name = names.rewrite_asset_name(name) if name is not None else None
        asset = store.update_asset(repo, asset_id, new_name, label)
        rel, asset = store.read(lambda: store.asset(repo, asset_id, drafts=True))
        return json_response(200, render.asset_json(req.urls, rel, asset))
    if req.route_method == "DELETE":
        store.delete_asset(repo, asset_id)
        return Response(204)
    raise not_found()


def handle_upload(state: HostState, req: Request) -> Response:
    """POST /api/uploads/repos/O/R/releases/ID/assets?name=&label=: the raw body is the asset."""
    injected = injected_failure(state)
    if injected is not None:
        return injected
    if req.auth == "invalid":
        raise ApiError(401, "Bad credentials")
    parts = req.segments(UPLOADS_PREFIX)
    shape_ok = len(parts) == 6 and parts[0] == "repos" and parts[3] == "releases"
    if not shape_ok or parts[5] != "assets":
        raise not_found()
    if req.method != "POST":
        raise not_found()
    if not req.authenticated:
        raise ApiError(401, "Requires authentication")
    store = state.store
    repo = store.read(lambda: store.repo(parts[1] + "/" + parts[2]))
    rel_id = parse_id(parts[4])
    if req.body_length is None:
        raise ApiError(411, "Content-Length required: asset uploads are not chunked")
    if req.body_length >= MAX_ASSET_BYTES:
        raise validation_failed(
            "ReleaseAsset", "invalid", "size", f"assets must be smaller than {MAX_ASSET_BYTES}"
        )
    raw_name = req.query.get("name")
    if not raw_name:
        raise validation_failed("ReleaseAsset", "missing_field", "name")
    name = names.rewrite_asset_name(raw_name)
    label = req.query.get("label", "")
    if len(label) > names.MAX_LABEL:
        raise validation_failed("ReleaseAsset", "invalid", "label")
    content_type = (req.headers.get("Content-Type") or "").split(";")[0].strip()
    if not _CONTENT_TYPE.match(content_type):
        content_type = "application/octet-stream"
    asset = store.begin_upload(repo, rel_id, name, label, content_type, render.HOST_USER)
    tmp = store.new_upload_file()
    complete = receive_body(state, req, tmp)
    if complete is None:
        # The client went away (or a fault cut it): the asset stays "starter".
        return Response(0, drop=True)
    size, digest = complete
    asset = store.finish_upload(asset.id, tmp, size, digest)
    rel, asset = store.read(lambda: store.asset(repo, asset.id, drafts=True))
    location = f"{req.urls.repo_api(rel.repo)}/releases/assets/{asset.id}"
    return json_response(201, render.asset_json(req.urls, rel, asset), {"Location": location})


class ClientGone(Exception):
    """The uploading client stopped sending (or a drop_upload fault cut it)."""


def receive_body(state: HostState, req: Request, tmp: Path) -> tuple[int, str] | None:
    """Stream the body to `tmp`, hashing it; None (file removed) if the client went away.

    A failure to store the bytes (disk full) is the host's: a 500 naming it.
    """
    drop_after = req.body_left // 2 if state.faults.take("drop_upload") else None
    digest = hashlib.sha256()
    size = 0
    try:
        with open(tmp, "wb") as f:
            while req.body_left > 0:
                want = UPLOAD_CHUNK if drop_after is None else min(UPLOAD_CHUNK, drop_after - size)
                chunk = read_upload(req, want)
                digest.update(chunk)
                f.write(chunk)
                size += len(chunk)
            if drop_after is not None:
                raise ClientGone("injected drop_upload fault")
            f.flush()
            os.fsync(f.fileno())
    except ClientGone:
        tmp.unlink(missing_ok=True)
        return None
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ApiError(500, f"cannot store the asset: {exc.strerror or exc}") from None
    return size, digest.hexdigest()


def read_upload(req: Request, want: int) -> bytes:
    if want <= 0:
        raise ClientGone("injected drop_upload fault")
    try:
        chunk = req.read(want)
    except OSError:  # reset, timeout
        raise ClientGone("the upload connection broke") from None
    if not chunk:
        raise ClientGone("client closed the upload early")
    return chunk
