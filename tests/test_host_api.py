"""`lcm host` through PyGithub, unchanged: releases, assets, drafts, latest, errors."""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import json
import socket
import threading
from pathlib import Path

import pytest
from github import BadCredentialsException, GithubException, UnknownObjectException
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.hostserver import TEST_REPO, TEST_TOKEN, github_client, running_host


@pytest.fixture
def host(tmp_path: Path):
    with running_host(tmp_path) as running:
        yield running


@pytest.fixture
def repo(host):
    return github_client(host).get_repo(TEST_REPO)


def upload(rel, name: str, data: bytes, **kw):
    return rel.upload_asset_from_memory(io.BytesIO(data), len(data), name, **kw)


def test_draft_upload_publish_and_download(tmp_path, host, repo):
    rel = repo.create_git_release("v1.0.0", "one", "notes", draft=True)
    assert rel.draft and rel.published_at is None
    assert (
        rel.upload_url
        == f"{host.url}/api/uploads/repos/{TEST_REPO}/releases/{rel.id}/assets{{?name,label}}"
    )
    data = b"pack bytes " * 1000
    path = tmp_path / "pack.lcm"
    path.write_bytes(data)
    asset = rel.upload_asset(str(path), label="the pack")
    assert (asset.name, asset.label, asset.size, asset.state) == (
        "pack.lcm",
        "the pack",
        len(data),
        "uploaded",
    )
    assert asset.digest == "sha256:" + hashlib.sha256(data).hexdigest()
    assert "/releases/download/untagged-" in asset.browser_download_url

    published = rel.update_release(name="one", message="notes", draft=False)
    assert not published.draft and published.published_at is not None
    assert published.html_url == f"{host.url}/{TEST_REPO}/releases/tag/v1.0.0"
    listed = published.get_assets()[0]
    assert (
        listed.browser_download_url == f"{host.url}/{TEST_REPO}/releases/download/v1.0.0/pack.lcm"
    )
    assert repo.get_latest_release().tag_name == "v1.0.0"
    assert repo.get_release("v1.0.0").id == rel.id
    _status, _headers, chunks = listed.download_asset()
    assert b"".join(chunks) == data


def test_every_url_points_at_the_host(host, repo):
    rel = repo.create_git_release("v1.0.0", "one", "", draft=False)
    upload(rel, "a.bin", b"a")
    raw = repo.get_release(rel.id).raw_data
    urls = [raw["url"], raw["assets_url"], raw["upload_url"], raw["html_url"]]
    urls += [raw["assets"][0]["url"], raw["assets"][0]["browser_download_url"]]
    assert all(u.startswith(host.url + "/") for u in urls)


def test_duplicate_asset_name_is_422_already_exists(repo):
    rel = repo.create_git_release("v1.0.0", "one", "", draft=True)
    upload(rel, "manifest.lcm", b"first")
    with pytest.raises(GithubException) as caught:
        upload(rel, "manifest.lcm", b"second")
    assert caught.value.status == 422
    assert caught.value.data["errors"] == [
        {"resource": "ReleaseAsset", "code": "already_exists", "field": "name"}
    ]
    # The first upload is intact.
    assert [(a.name, a.size) for a in rel.get_assets()] == [("manifest.lcm", 5)]


def test_asset_names_are_rewritten_as_github_does(repo):
    rel = repo.create_git_release("v1.0.0", "one", "", draft=True)
    assert upload(rel, "my file (1).zip", b"x").name == "my.file.1.zip"
    assert upload(rel, "a~b:c.bin", b"x").name == "a.b.c.bin"
    assert upload(rel, "SHA256SUMS", b"x").name == "SHA256SUMS"
    with pytest.raises(GithubException) as caught:
        upload(rel, "(~)", b"x")
    assert caught.value.status == 422
    assert caught.value.data["errors"][0]["field"] == "name"


def test_rename_and_delete_asset(repo):
    rel = repo.create_git_release("v1.0.0", "one", "", draft=True)
    first = upload(rel, "a.bin", b"a")
    upload(rel, "b.bin", b"b")
    assert first.update_asset("c (copy).bin", label="L").name == "c.copy.bin"
    with pytest.raises(GithubException) as caught:
        first.update_asset("b.bin")
    assert caught.value.data["errors"][0]["code"] == "already_exists"
    assert first.delete_asset()
    assert [a.name for a in rel.get_assets()] == ["b.bin"]
    with pytest.raises(UnknownObjectException):
        repo.get_release_asset(first.id).name  # noqa: B018


def test_list_releases_paginates_with_link(host, repo):
    for n in range(7):
        repo.create_git_release(f"v1.0.{n}", f"r{n}", "", draft=False)
    client = github_client(host, per_page=3)
    paged = client.get_repo(TEST_REPO).get_releases()
    assert [r.tag_name for r in paged] == [f"v1.0.{n}" for n in reversed(range(7))]
    assert paged.totalCount == 7
    api_pages = [r for r in host.requests if r.path.endswith("/releases") and r.method == "GET"]
    assert len(api_pages) >= 3


def test_drafts_are_listed_only_with_the_token(host, repo):
    repo.create_git_release("v1.0.0", "one", "", draft=False)
    draft = repo.create_git_release("v1.1.0", "two", "", draft=True)
    assert [r.tag_name for r in repo.get_releases()] == ["v1.1.0", "v1.0.0"]
    anonymous = github_client(host, token=None).get_repo(TEST_REPO)
    assert [r.tag_name for r in anonymous.get_releases()] == ["v1.0.0"]
    with pytest.raises(UnknownObjectException):
        anonymous.get_release(draft.id).tag_name  # noqa: B018 (lazy object: fetch)
    # A draft is never found by tag, not even with the token.
    with pytest.raises(UnknownObjectException):
        repo.get_release("v1.1.0")


def test_tag_of_a_published_release_cannot_be_reused(repo):
    repo.create_git_release("v1.0.0", "one", "", draft=False)
    with pytest.raises(GithubException) as caught:
        repo.create_git_release("v1.0.0", "again", "", draft=False)
    assert caught.value.status == 422
    assert caught.value.data["errors"][0] == {
        "resource": "Release",
        "code": "already_exists",
        "field": "tag_name",
    }
    # A draft with the tag may exist (as on GitHub) but cannot be published over it.
    draft = repo.create_git_release("v1.0.0", "draft", "", draft=True)
    with pytest.raises(GithubException) as caught:
        draft.update_release("draft", "", draft=False)
    assert caught.value.status == 422


def test_invalid_release_fields_are_422(host, repo):
    for bad_tag in ["", "has space", "../x", "untagged-abc", "x" * 300]:
        with pytest.raises(GithubException) as caught:
            repo.create_git_release(bad_tag, "n", "", draft=True)
        assert caught.value.status == 422, bad_tag
    # PyGithub checks these itself; the host refuses them too, for other clients.
    for field, value in [("make_latest", "maybe"), ("draft", "yes"), ("name", 5)]:
        with pytest.raises(GithubException) as caught:
            repo._requester.requestJsonAndCheck(
                "POST", repo.url + "/releases", input={"tag_name": "v1.0.0", field: value}
            )
        assert caught.value.status == 422
        assert caught.value.data["errors"][0]["field"] == field


def latest_tag(repo) -> str:
    return repo.get_latest_release().tag_name


def test_prereleases_and_drafts_are_never_latest(repo):
    with pytest.raises(UnknownObjectException):
        latest_tag(repo)
    repo.create_git_release("v1.0.0-beta.1", "b", "", prerelease=True)
    repo.create_git_release("v1.0.0", "d", "", draft=True)
    with pytest.raises(UnknownObjectException):
        latest_tag(repo)
    repo.create_git_release("v0.9.0", "full", "")
    repo.create_git_release("v1.1.0-beta.1", "b2", "", prerelease=True)
    assert latest_tag(repo) == "v0.9.0"


def test_make_latest_true_false_and_legacy(repo):
    v1 = repo.create_git_release("v1.0.0", "one", "")
    repo.create_git_release("v2.0.0", "two", "", make_latest="false")
    assert latest_tag(repo) == "v1.0.0"
    repo.create_git_release("v3.0.0", "three", "")  # default "true" for a new release
    assert latest_tag(repo) == "v3.0.0"
    v1.update_release("one", "", make_latest="true")
    assert latest_tag(repo) == "v1.0.0"
    v1.update_release("one", "", make_latest="legacy")
    assert latest_tag(repo) == "v3.0.0"  # legacy: the newest full release


def test_publishing_a_draft_makes_it_latest_and_deleting_falls_back(repo):
    v1 = repo.create_git_release("v1.0.0", "one", "")
    draft = repo.create_git_release("v1.1.0", "two", "", draft=True)
    assert latest_tag(repo) == "v1.0.0"
    draft.update_release("two", "", draft=False)
    assert latest_tag(repo) == "v1.1.0"
    draft.delete_release()
    assert latest_tag(repo) == "v1.0.0"
    v1.delete_release()
    with pytest.raises(UnknownObjectException):
        latest_tag(repo)


def test_delete_release_removes_its_assets(host, repo):
    rel = repo.create_git_release("v1.0.0", "one", "")
    asset = upload(rel, "pack.lcm", b"bytes")
    rel.delete_release()
    with pytest.raises(UnknownObjectException):
        repo.get_release(rel.id).tag_name  # noqa: B018
    with pytest.raises(UnknownObjectException):
        repo.get_release_asset(asset.id).name  # noqa: B018
    assert not list(host.store.assets_dir.iterdir())  # its file is gone too


def test_wrong_token_is_401_bad_credentials(host):
    with pytest.raises(BadCredentialsException) as caught:
        github_client(host, token="wrong").get_repo(TEST_REPO)
    assert caught.value.status == 401
    assert caught.value.data["message"] == "Bad credentials"


def test_writes_without_a_token_are_401(host, repo):
    rel = repo.create_git_release("v1.0.0", "one", "", draft=False)
    anonymous = github_client(host, token=None).get_repo(TEST_REPO)
    with pytest.raises(GithubException) as caught:
        anonymous.create_git_release("v2.0.0", "two", "")
    assert caught.value.status == 401
    assert caught.value.data["message"] == "Requires authentication"
    public = anonymous.get_release(rel.id)
    with pytest.raises(GithubException) as caught:
        upload(public, "x.bin", b"x")
    assert caught.value.status == 401
    assert [r.tag_name for r in anonymous.get_releases()] == ["v1.0.0"]


def test_unknown_things_are_404(host, repo):
    client = github_client(host)
    with pytest.raises(UnknownObjectException):
        client.get_repo("acme/missing")
    with pytest.raises(UnknownObjectException):
        repo.get_release(999_999).tag_name  # noqa: B018
    with pytest.raises(UnknownObjectException):
        repo.get_release("v9.9.9")
    with pytest.raises(UnknownObjectException):
        repo.get_release_asset(999_999).name  # noqa: B018


def test_502_is_retried_by_pygithub_or_reported(host):
    host.inject_fault("status502", 2)
    assert github_client(host).get_repo(TEST_REPO).full_name == TEST_REPO
    host.inject_fault("status502", 1)
    with pytest.raises(GithubException) as caught:
        github_client(host, retry=None).get_repo(TEST_REPO)
    assert caught.value.status == 502
    assert [r.status for r in host.requests].count(502) == 3


def test_dropped_upload_leaves_a_starter_asset_until_deleted(host, repo):
    rel = repo.create_git_release("v1.0.0", "one", "", draft=True)
    host.inject_fault("drop_upload")
    no_retry = github_client(host, retry=None).get_repo(TEST_REPO).get_release(rel.id)
    with pytest.raises(Exception):  # noqa: B017 (the connection breaks: requests' error)
        upload(no_retry, "pack.lcm", b"p" * 200_000)
    [starter] = rel.get_assets()
    assert (starter.name, starter.state, starter.digest) == ("pack.lcm", "starter", None)
    with pytest.raises(GithubException) as caught:
        upload(rel, "pack.lcm", b"p" * 200_000)
    assert caught.value.status == 422
    starter.delete_asset()
    assert upload(rel, "pack.lcm", b"p" * 200_000).state == "uploaded"
    assert not list(host.store.tmp_dir.iterdir())


def test_concurrent_uploads_are_safe(host, repo):
    rel = repo.create_git_release("v1.0.0", "one", "", draft=True)
    payloads = {f"file{n}.bin": bytes([n]) * (50_000 + n) for n in range(8)}
    results: dict[str, object] = {}

    def send(name: str, data: bytes) -> None:
        client_rel = github_client(host).get_repo(TEST_REPO).get_release(rel.id)
        try:
            results[name] = upload(client_rel, name, data).digest
        except GithubException as exc:
            results[name] = exc.status

    # Eight different names at once, plus four racing for one name.
    jobs = [threading.Thread(target=send, args=item) for item in payloads.items()]
    racers = [
        threading.Thread(target=lambda n=n: results.__setitem__(f"race{n}", race(n)))
        for n in range(4)
    ]

    def race(n: int) -> object:
        client_rel = github_client(host).get_repo(TEST_REPO).get_release(rel.id)
        try:
            return upload(client_rel, "same.bin", bytes([n]) * 30_000).state
        except GithubException as exc:
            return exc.status

    for job in jobs + racers:
        job.start()
    for job in jobs + racers:
        job.join()
    for name, data in payloads.items():
        assert results[name] == "sha256:" + hashlib.sha256(data).hexdigest()
    assert sorted(str(results[f"race{n}"]) for n in range(4)) == ["422", "422", "422", "uploaded"]
    assert len(list(rel.get_assets())) == 9


def test_token_can_be_sent_as_bearer(host):
    conn = http.client.HTTPConnection("127.0.0.1", host.port, timeout=30)
    conn.request("GET", "/api/v3/user", headers={"Authorization": "Bearer " + TEST_TOKEN})
    response = conn.getresponse()
    assert response.status == 200
    assert b'"login"' in response.read()


def test_secondary_rate_limit_answers_403_with_retry_after(host):
    host.inject_fault("secondary_rate_limit")
    with pytest.raises(GithubException) as caught:
        github_client(host, retry=None).get_repo(TEST_REPO)
    assert caught.value.status == 403
    assert "secondary rate limit" in caught.value.data["message"]
    # PyGithub's default retry waits Retry-After and goes on.
    host.inject_fault("secondary_rate_limit")
    assert github_client(host).get_repo(TEST_REPO).full_name == TEST_REPO
    assert [r.status for r in host.requests].count(403) == 2


def test_tags_with_a_slash(repo):
    rel = repo.create_git_release("app/v1.0.0", "one", "")
    assert repo.get_release("app/v1.0.0").id == rel.id
    assert repo.get_latest_release().tag_name == "app/v1.0.0"


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=6,
)
RELEASE_KEYS = ["tag_name", "name", "body", "draft", "prerelease", "make_latest", "x"]


def test_fuzzed_release_bodies_get_201_200_or_a_clear_error(host, repo):
    rel = repo.create_git_release("v0.0.1", "seed", "", draft=True)
    requester = repo._requester
    statuses = set()

    @settings(max_examples=80, deadline=None, derandomize=True, database=None)
    @given(
        method=st.sampled_from(["POST", "PATCH"]),
        body=st.dictionaries(st.sampled_from(RELEASE_KEYS), JSON_VALUES | st.sampled_from(
            ["v1.0.0", "true", "false", "legacy", "a b", "../x"]
        )),
    )  # fmt: skip
    def check(method: str, body: dict) -> None:
        url = repo.url + "/releases" if method == "POST" else rel.url
        try:
            requester.requestJsonAndCheck(method, url, input=body)
            statuses.add(200)
        except GithubException as exc:
            assert exc.status in (400, 422), (body, exc.status, exc.data)
            assert exc.data["message"]
            statuses.add(exc.status)

    check()
    assert 422 in statuses
    deep = b"[" * 200_000
    conn = http.client.HTTPConnection("127.0.0.1", host.port, timeout=30)
    headers = {"Authorization": "token " + TEST_TOKEN}
    conn.request("POST", f"/api/v3/repos/{TEST_REPO}/releases", body=deep, headers=headers)
    response = conn.getresponse()
    assert response.status == 400 and b"Problems parsing JSON" in response.read()


def test_a_storage_failure_is_a_500_naming_it(host, repo, monkeypatch, tmp_path):
    rel = repo.create_git_release("v1.0.0", "one", "", draft=True)
    monkeypatch.setattr(host.store, "new_upload_file", lambda: tmp_path / "gone" / "upload")
    no_retry = github_client(host, retry=None).get_repo(TEST_REPO).get_release(rel.id)
    with pytest.raises(GithubException) as caught:
        upload(no_retry, "pack.lcm", b"p" * 1000)
    assert caught.value.status == 500
    assert caught.value.data["message"].startswith("cannot store the asset: ")
    [asset] = rel.get_assets()
    assert asset.state == "starter"  # as a failed upload on GitHub: delete, then retry


def test_a_failed_metadata_write_changes_nothing(host, repo, monkeypatch):
    repo.create_git_release("v1.0.0", "one", "")

    def disk_full(path, data, mode=0o644):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("publisher.host.store.write_atomic", disk_full)
    no_retry = github_client(host, retry=None).get_repo(TEST_REPO)
    with pytest.raises(GithubException) as caught:
        no_retry.create_git_release("v2.0.0", "two", "")
    assert caught.value.status == 500
    assert caught.value.data["message"] == "cannot save host metadata: No space left on device"
    monkeypatch.undo()
    assert [r.tag_name for r in repo.get_releases()] == ["v1.0.0"]
    assert repo.get_latest_release().tag_name == "v1.0.0"


def ask(host, method: str, path: str, body: bytes = b"", **headers: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", host.port, timeout=30)
    try:
        conn.request(method, path, body=body or None, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.mark.parametrize(
    "path",
    [
        f"/api/v3/repos/{TEST_REPO}/releases/%C2%B2",  # '²': isdigit(), but int() refuses it
        f"/api/v3/repos/{TEST_REPO}/releases/%C2%B2/assets",
        f"/api/v3/repos/{TEST_REPO}/releases/assets/%C2%B9",
        f"/api/v3/repos/{TEST_REPO}/releases/%D9%A1%D9%A0%D9%A0%D9%A0",  # '١٠٠٠': int() reads it
        "/api/objects/%C2%B2/x?expires=1&sig=" + "0" * 64,
    ],
)
def test_ids_in_digits_that_are_not_ascii_are_not_found_not_a_server_error(host, repo, path):
    repo.create_git_release("v1.0.0", "one", "")  # release 1000 exists
    status, body = ask(host, "GET", path, Authorization="token " + TEST_TOKEN)
    assert status == 404, body


def test_odd_numbers_and_strings_are_refused_by_name_not_a_server_error(host, repo):
    auth = {"Authorization": "token " + TEST_TOKEN}
    status, _ = ask(host, "GET", f"/api/v3/repos/{TEST_REPO}/releases?per_page=%C2%B2", **auth)
    assert status == 200  # an odd page size is ignored, as GitHub does
    raw = b"GET /api/v3/ HTTP/1.1\r\nHost: x\r\nContent-Length: \xc2\xb2\r\n\r\n"
    with socket.create_connection(("127.0.0.1", host.port), timeout=30) as s:
        s.sendall(raw)
        assert s.recv(100).startswith(b"HTTP/1.1 400 ")
    digits = "1" * 5000
    query = f'{{repository(owner:"acme",name:"widget"){{releases(first:{digits}){{totalCount}}}}}}'
    status, body = ask(host, "POST", "/api/graphql", json.dumps({"query": query}).encode(), **auth)
    assert status == 400 and b"is too long" in body, body
    # A lone surrogate in a release's text: refused, so no page fails on it later.
    lone = b'{"tag_name": "v2.0.0", "name": "\\ud800", "body": "x\\udc00y"}'
    status, body = ask(host, "POST", f"/api/v3/repos/{TEST_REPO}/releases", lone, **auth)
    assert status == 400 and b"lone surrogate" in body, body
    assert [r.tag_name for r in repo.get_releases()] == []
    gql = json.dumps({"query": '{repository(owner:"acme",name:"\\ud800"){id}}'}).encode()
    status, body = ask(host, "POST", "/api/graphql", gql, **auth)
    assert status == 400 and b"lone surrogate" in body, body


@pytest.mark.parametrize(
    "tag", ["a/.b", "a.lock/b", "v1.lock", ".v1", "v1.", "v1..2", "-v1", "untagged-x", "v 1"]
)
def test_tags_git_refuses_are_refused(repo, tag):
    with pytest.raises(GithubException) as caught:
        repo.create_git_release(tag, "x", "")
    assert caught.value.status == 422


def test_tags_git_takes_are_taken(repo):
    for tag in ("v1.0.0", "release/v1.0.0", "v1.0.0-beta.1+build.7", "a.b/c_d"):
        assert repo.create_git_release(tag, "x", "").tag_name == tag


def test_a_json_body_nested_near_the_parsers_limit_is_refused_not_a_server_error(host):
    auth = {"Authorization": "token " + TEST_TOKEN}
    for depth in (990, 992, 994, 1200):
        body = b"{" + b'"a":[' * depth + b"]" * depth + b"}"
        status, answer = ask(host, "POST", f"/api/v3/repos/{TEST_REPO}/releases", body, **auth)
        assert status in (400, 422), (depth, status, answer[:200])


def test_the_token_as_a_basic_password_is_accepted_as_on_github(host):
    """`curl -u USER:TOKEN` and git's credential helpers send Basic; GitHub takes the token
    as the password whatever the user name."""

    def basic(user_and_password: bytes) -> str:
        return "Basic " + base64.b64encode(user_and_password).decode()

    for authorization, status in [
        (basic(b"anyone:" + TEST_TOKEN.encode()), 200),
        (basic(b":" + TEST_TOKEN.encode()), 200),
        (basic(b"anyone:wrong"), 401),
        (basic(TEST_TOKEN.encode()), 401),  # no colon: no password
        ("Basic !!!not-base64", 401),
        (basic(b"anyone:\xff\xfe"), 401),
    ]:
        assert ask(host, "GET", "/api/v3/user", Authorization=authorization)[0] == status


def test_a_repo_named_again_in_another_case_is_the_same_repo(tmp_path):
    """`--repo acme/Widget` after `--repo acme/widget` made a second repo: releases were
    split between the spellings, and devices using one never saw the other's."""
    data = tmp_path / "data"
    with running_host(tmp_path, repos=("acme/widget",), data_dir=data) as host:
        github_client(host).get_repo("acme/widget").create_git_release("v1.0.0", "v1", "")
    with running_host(tmp_path, repos=("acme/Widget",), data_dir=data) as host:
        assert [r.full_name for r in host.state.store.repos.values()] == ["acme/widget"]
        latest = github_client(host).get_repo("acme/Widget").get_latest_release()
        assert latest.tag_name == "v1.0.0"


def test_a_tag_is_deleted_only_once_no_release_carries_it(host, repo):
    """`gh release delete --cleanup-tag` deletes the tag's ref after the release: tags are
    names only here, so a tag a published release still carries is refused, by name."""
    rel = repo.create_git_release("v1.0.0", "v1", "")

    def delete_tag() -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", host.port, timeout=30)
        path = f"/api/v3/repos/{TEST_REPO}/git/refs/tags/v1.0.0"
        conn.request("DELETE", path, headers={"Authorization": f"token {TEST_TOKEN}"})
        response = conn.getresponse()
        body = response.read()
        conn.close()
        return response.status, body

    status, body = delete_tag()
    assert status == 422 and b"tag v1.0.0 is the tag of release" in body
    rel.delete_release()
    assert delete_tag() == (204, b"")


def test_the_rate_limiters_table_forgets_ended_windows(monkeypatch):
    """One entry per client address ever seen, kept for ever. Past PRUNE_AT, addresses
    whose hour has ended are forgotten; an IPv6 client is counted by its /64 (it has
    addresses to spare: a fresh window each)."""
    from publisher.host import ratelimit

    monkeypatch.setattr(ratelimit, "PRUNE_AT", 10)
    limiter = ratelimit.RateLimiter(60)
    clock = [1_000_000.0]
    monkeypatch.setattr(ratelimit.time, "time", lambda: clock[0])
    for n in range(10):
        limiter.anonymous(f"2001:db8:{n:x}::1")
    clock[0] += ratelimit.WINDOW + 1
    for n in range(10, 30):
        limiter.anonymous(f"2001:db8:{n:x}::1")
    assert len(limiter._used) <= 20
    # A window still running is kept: the count goes on, for the whole /64.
    assert limiter.anonymous("2001:db8:1d::1")["X-RateLimit-Used"] == "2"
    assert limiter.anonymous("2001:db8:1d::abcd")["X-RateLimit-Used"] == "3"
    assert limiter.anonymous("192.0.2.1")["X-RateLimit-Used"] == "1"
    assert limiter.anonymous("192.0.2.2")["X-RateLimit-Used"] == "1"
