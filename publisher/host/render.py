"""The JSON GitHub answers with, every URL pointing at this host and port.

PyGithub follows the URLs it is given (`url`, `upload_url`, `Link`) and refuses
any on another host, so they are built per request from the address the
client used (its `Host` header), never stored.
"""

from __future__ import annotations

import base64
import time
import zlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from publisher.host.store import Asset, Release, Repo, Store
from publisher.host.urlsign import OBJECTS_PREFIX

HOST_USER = "lcm-host"
HOST_USER_ID = 1


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def node_id(kind: str, ident: int) -> str:
    return base64.b64encode(f"{kind}{ident}".encode()).decode().rstrip("=")


@dataclass(frozen=True)
class Urls:
    """Base URLs as the client sees this host: `web` is e.g. `http://127.0.0.1:8000`."""

    web: str
    # Where signed asset URLs point: this host unless `asset_host` names another
    # name for it, so a client must follow a redirect to another host as on GitHub.
    assets: str = ""

    @property
    def api(self) -> str:
        return self.web + "/api/v3"

    @property
    def uploads(self) -> str:
        return self.web + "/api/uploads"

    def repo_api(self, repo: Repo | str) -> str:
        name = repo if isinstance(repo, str) else repo.full_name
        return f"{self.api}/repos/{name}"

    def signed_asset(self, asset: Asset, query: str) -> str:
        base = self.assets or self.web
        return f"{base}{OBJECTS_PREFIX}{asset.id}/{quote(asset.name)}?{query}"

    def release_tag(self, rel: Release) -> str:
        """The tag as it appears in browser URLs: drafts only have `untagged-…`."""
        return "untagged-" + rel.untagged if rel.draft else rel.tag_name

    def browser_download(self, rel: Release, asset_name: str) -> str:
        return (
            f"{self.web}/{rel.repo}/releases/download/"
            f"{quote(self.release_tag(rel), safe='/')}/{quote(asset_name)}"
        )


def user_id(login: str) -> int:
    """A stable id per login: the host's own user is 1, an owner a CRC of its name."""
    if login == HOST_USER:
        return HOST_USER_ID
    return 2 + zlib.crc32(login.lower().encode())


def user(urls: Urls, login: str = HOST_USER, kind: str = "User") -> dict[str, Any]:
    """A user (or organization) object with the fields GitHub's simple-user carries."""
    ident = user_id(login)
    api = f"{urls.api}/users/{login}"
    return {
        "login": login,
        "id": ident,
        "node_id": node_id("U" if kind == "User" else "O", ident),
        "avatar_url": f"{urls.web}/avatars/u/{ident}",
        "gravatar_id": "",
        "url": api,
        "html_url": f"{urls.web}/{login}",
        "followers_url": api + "/followers",
        "following_url": api + "/following{/other_user}",
        "gists_url": api + "/gists{/gist_id}",
        "starred_url": api + "/starred{/owner}{/repo}",
        "subscriptions_url": api + "/subscriptions",
        "organizations_url": api + "/orgs",
        "repos_url": api + "/repos",
        "events_url": api + "/events{/privacy}",
        "received_events_url": api + "/received_events",
        "type": kind,
        "site_admin": False,
    }


def full_user(urls: Urls, login: str, kind: str, created_at: float | None) -> dict[str, Any]:
    """`GET /users/NAME` (and `/user`): the simple-user fields plus the profile ones."""
    return user(urls, login, kind) | {
        "name": login,
        "company": None,
        "blog": "",
        "location": None,
        "email": None,
        "hireable": None,
        "bio": None,
        "twitter_username": None,
        "public_repos": 0,
        "public_gists": 0,
        "followers": 0,
        "following": 0,
        "created_at": iso(created_at),
        "updated_at": iso(created_at),
    }


def api_root(urls: Urls) -> dict[str, str]:
    """`GET /api/v3/`: GitHub's map of URL templates (the ones this host serves)."""
    return {
        "current_user_url": f"{urls.api}/user",
        "user_url": f"{urls.api}/users/{{user}}",
        "repository_url": f"{urls.api}/repos/{{owner}}/{{repo}}",
        "rate_limit_url": f"{urls.api}/rate_limit",
    }


def repo_json(urls: Urls, repo: Repo) -> dict[str, Any]:
    owner, name = repo.full_name.split("/", 1)
    api = urls.repo_api(repo)
    return {
        "id": repo.id,
        "node_id": node_id("R", repo.id),
        "name": name,
        "full_name": repo.full_name,
        "owner": user(urls, owner, "Organization"),
        "private": False,
        "visibility": "public",
        "fork": False,
        "archived": False,
        "disabled": False,
        "default_branch": "main",
        "description": None,
        "html_url": f"{urls.web}/{repo.full_name}",
        "url": api,
        "releases_url": api + "/releases{/id}",
        "tags_url": api + "/tags",
        "created_at": iso(repo.created_at),
        "updated_at": iso(repo.created_at),
        "pushed_at": iso(repo.created_at),
        "permissions": {
            "admin": True,
            "maintain": True,
            "push": True,
            "triage": True,
            "pull": True,
        },
    }


def asset_json(urls: Urls, rel: Release, asset: Asset) -> dict[str, Any]:
    return {
        "url": f"{urls.repo_api(rel.repo)}/releases/assets/{asset.id}",
        "id": asset.id,
        "node_id": node_id("RA", asset.id),
        "name": asset.name,
        "label": asset.label,
        "uploader": user(urls, asset.uploader),
        "content_type": asset.content_type,
        "state": asset.state,
        "size": asset.size,
        "digest": "sha256:" + asset.sha256 if asset.sha256 else None,
        "download_count": asset.download_count,
        "created_at": iso(asset.created_at),
        "updated_at": iso(asset.updated_at),
        "browser_download_url": urls.browser_download(rel, asset.name),
    }


def release_json(urls: Urls, store: Store, rel: Release) -> dict[str, Any]:
    api = f"{urls.repo_api(rel.repo)}/releases/{rel.id}"
    tag_for_urls = quote(urls.release_tag(rel), safe="/")
    return {
        "url": api,
        "assets_url": api + "/assets",
        "upload_url": f"{urls.uploads}/repos/{rel.repo}/releases/{rel.id}/assets{{?name,label}}",
        "html_url": f"{urls.web}/{rel.repo}/releases/tag/{tag_for_urls}",
        "id": rel.id,
        "author": user(urls, rel.author),
        "node_id": node_id("RE", rel.id),
        "tag_name": rel.tag_name,
        "target_commitish": rel.target_commitish,
        "name": rel.name,
        "draft": rel.draft,
        "prerelease": rel.prerelease,
        "immutable": False,
        "created_at": iso(rel.created_at),
        "updated_at": iso(rel.updated_at or rel.created_at),
        "published_at": iso(rel.published_at),
        "assets": [asset_json(urls, rel, a) for a in store.assets_of(rel)],
        "tarball_url": None if rel.draft else f"{urls.repo_api(rel.repo)}/tarball/{tag_for_urls}",
        "zipball_url": None if rel.draft else f"{urls.repo_api(rel.repo)}/zipball/{tag_for_urls}",
        "body": rel.body,
    }
