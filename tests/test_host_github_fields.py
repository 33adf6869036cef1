"""What GitHub's API answers carry beyond the release calls: ETag/304, `updated_at`, full
user objects and `/users/NAME`, CORS, `Location` on 201, `Allow` on 405, release notes."""

from __future__ import annotations

import http.client
import io
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.hostserver import TEST_REPO, TEST_TOKEN, github_client, running_host

AUTH = {"Authorization": "token " + TEST_TOKEN}


@pytest.fixture
def host(tmp_path: Path):
    with running_host(tmp_path) as running:
        yield running


def call(host, method: str, path: str, body: bytes | None = None, **headers: str):
    conn = http.client.HTTPConnection("127.0.0.1", host.port, timeout=30)
    conn.request(
        method, path, body=body, headers={k.replace("_", "-"): v for k, v in headers.items()}
    )
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response, data


def test_etag_and_304_which_does_not_count_against_the_rate_limit(host):
    github_client(host).get_repo(TEST_REPO).create_git_release("v1.0.0", "v1", "")
    path = f"/api/v3/repos/{TEST_REPO}/releases"
    first, body = call(host, "GET", path)
    etag = first.getheader("ETag")
    assert first.status == 200 and etag and json.loads(body)[0]["tag_name"] == "v1.0.0"
    again, body = call(host, "GET", path, If_None_Match=etag)
    assert again.status == 304 and body == b"" and again.getheader("ETag") == etag
    assert again.getheader("X-RateLimit-Used") == first.getheader("X-RateLimit-Used")
    # A change gives a new tag; the old one then gets the whole answer.
    github_client(host).get_repo(TEST_REPO).create_git_release("v1.1.0", "v1.1", "")
    changed, body = call(host, "GET", path, If_None_Match=etag)
    assert changed.status == 200 and changed.getheader("ETag") != etag
    # What the token may see (drafts) is another answer, with another tag.
    github_client(host).get_repo(TEST_REPO).create_git_release("v2", "v2", "", draft=True)
    anonymous = call(host, "GET", path)[0].getheader("ETag")
    assert call(host, "GET", path, **AUTH)[0].getheader("ETag") != anonymous


def test_releases_have_updated_at(host):
    rel = github_client(host).get_repo(TEST_REPO).create_git_release("v1", "v1", "", draft=True)
    assert rel.updated_at is not None and rel.updated_at == rel.created_at
    published = rel.update_release("v1", "notes", draft=False)
    assert published.updated_at >= rel.updated_at


def test_users_have_githubs_fields_and_are_found_by_name(host):
    gh = github_client(host)
    rel = gh.get_repo(TEST_REPO).create_git_release("v1", "v1", "")
    # PyGithub completes the author lazily through its `url`: /users/lcm-host.
    assert rel.author.login == "lcm-host" and rel.author.public_repos == 0
    assert rel.author.avatar_url.endswith("/avatars/u/1")
    owner = gh.get_repo(TEST_REPO).owner
    assert (owner.login, owner.type, owner.public_repos) == ("acme", "Organization", 1)
    assert gh.get_user().login == "lcm-host"
    _, body = call(host, "GET", "/api/v3/users/ACME")
    user = json.loads(body)
    for field in ("avatar_url", "gravatar_id", "followers_url", "repos_url", "events_url"):
        assert field in user
    assert call(host, "GET", "/api/v3/users/nobody")[0].status == 404


def test_cors_headers_and_preflight(host):
    response, _ = call(host, "GET", f"/api/v3/repos/{TEST_REPO}")
    assert response.getheader("Access-Control-Allow-Origin") == "*"
    assert "ETag" in response.getheader("Access-Control-Expose-Headers")
    missing, _ = call(host, "GET", "/api/v3/repos/acme/nothing")
    assert missing.status == 404 and missing.getheader("Access-Control-Allow-Origin") == "*"
    preflight, body = call(
        host, "OPTIONS", f"/api/v3/repos/{TEST_REPO}/releases",
        Origin="https://example.org", Access_Control_Request_Method="POST",
    )  # fmt: skip
    assert preflight.status == 204 and body == b""
    assert "POST" in preflight.getheader("Access-Control-Allow-Methods")
    assert "Authorization" in preflight.getheader("Access-Control-Allow-Headers")
    # Refused for their framing, before they are routed: still API answers.
    chunked, _ = call(host, "POST", "/api/graphql", Transfer_Encoding="chunked")
    bad_length, _ = call(host, "GET", f"/api/v3/repos/{TEST_REPO}", Content_Length="x")
    for refused, status in ((chunked, 411), (bad_length, 400)):
        assert refused.status == status and refused.getheader("Access-Control-Allow-Origin") == "*"


def test_created_things_have_a_location(host):
    payload = json.dumps({"tag_name": "v1", "draft": True}).encode()
    created, body = call(host, "POST", f"/api/v3/repos/{TEST_REPO}/releases", payload, **AUTH)
    rel = json.loads(body)
    assert created.status == 201 and created.getheader("Location") == rel["url"]
    upload = rel["upload_url"].split("{")[0][len(host.url) :] + "?name=a.bin"
    stored, body = call(host, "POST", upload, b"abc", Content_Type="application/x-thing", **AUTH)
    assert stored.status == 201 and stored.getheader("Location") == json.loads(body)["url"]


def test_405_says_what_is_allowed(host):
    rel = github_client(host).get_repo(TEST_REPO).create_git_release("v1", "v1", "")
    rel.upload_asset_from_memory(io.BytesIO(b"x"), 1, "a.bin")
    signed = call(host, "GET", f"/{TEST_REPO}/releases/download/v1/a.bin")[0].getheader("Location")
    refused, _ = call(host, "POST", signed[len(host.url) :], b"")
    assert refused.status == 405 and refused.getheader("Allow") == "GET, HEAD"


def test_release_notes_are_generated_from_the_previous_release(host):
    repo = github_client(host).get_repo(TEST_REPO)
    first = repo.create_git_release("v1.0.0", "v1", generate_release_notes=True)
    assert first.body == f"**Full Changelog**: {host.url}/{TEST_REPO}/commits/v1.0.0"
    second = repo.create_git_release("v1.1.0", "v1.1", "Fixes.", generate_release_notes=True)
    compare = f"{host.url}/{TEST_REPO}/compare/v1.0.0...v1.1.0"
    assert second.body == f"Fixes.\n\n**Full Changelog**: {compare}"
    notes = repo.generate_release_notes("v2.0.0")
    assert notes.name == "v2.0.0"
    assert notes.body.endswith("/compare/v1.1.0...v2.0.0")
    chosen = repo.generate_release_notes("v2.0.0", previous_tag_name="v1.0.0")
    assert chosen.body.endswith("/compare/v1.0.0...v2.0.0")
    refused, _ = call(
        host, "POST", f"/api/v3/repos/{TEST_REPO}/releases/generate-notes", b"{}", **AUTH
    )
    assert refused.status == 422


def graphql(host, query: str, variables: dict | None = None, token: str | None = TEST_TOKEN):
    headers = {"Authorization": "token " + token} if token else {}
    payload = json.dumps({"query": query, "variables": variables or {}}).encode()
    response, body = call(host, "POST", "/api/graphql", payload, **headers)
    return response.status, json.loads(body)


def test_graphql_pages_releases_with_cursors_and_finds_drafts_by_tag(host):
    repo = github_client(host).get_repo(TEST_REPO)
    for n in range(5):
        repo.create_git_release(f"v1.{n}.0", f"r{n}", "", draft=n == 4, prerelease=n == 3)
    query = """query Page($owner: String!, $name: String!, $after: String) {
      repository(owner: $owner, name: $name) {
        releases(first: 2, after: $after, orderBy: {field: CREATED_AT, direction: DESC}) {
          totalCount
          nodes { tagName isDraft isLatest isPrerelease author { login } }
          pageInfo { hasNextPage endCursor }
        }
      }
    }"""
    seen, after = [], None
    while True:
        status, answer = graphql(host, query, {"owner": "acme", "name": "widget", "after": after})
        page = answer["data"]["repository"]["releases"]
        assert status == 200 and page["totalCount"] == 5
        seen += page["nodes"]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert [r["tagName"] for r in seen] == ["v1.4.0", "v1.3.0", "v1.2.0", "v1.1.0", "v1.0.0"]
    assert [r["tagName"] for r in seen if r["isLatest"]] == ["v1.2.0"]
    assert seen[0]["isDraft"] and seen[1]["isPrerelease"] and seen[0]["author"]["login"]
    status, answer = graphql(
        host, '{ repository(owner: "ACME", name: "widget") { d: release(tagName: "v1.4.0") '
        "{ databaseId isDraft } gone: release(tagName: \"v9\") { databaseId } } }"
    )  # fmt: skip
    assert answer["data"]["repository"]["d"]["isDraft"] is True
    assert answer["data"]["repository"]["gone"] is None


def test_graphql_variable_defaults_apply_when_the_request_leaves_them_out(host):
    repo = github_client(host).get_repo(TEST_REPO)
    for n in range(3):
        repo.create_git_release(f"v1.{n}.0", f"r{n}", "")
    query = """query($owner: String = "acme", $n: Int = 1) {
      repository(owner: $owner, name: "widget") { releases(first: $n) { nodes { tagName } } }
    }"""
    _status, answer = graphql(host, query)
    assert len(answer["data"]["repository"]["releases"]["nodes"]) == 1
    _status, answer = graphql(host, query, {"n": 2})  # a given value wins
    assert len(answer["data"]["repository"]["releases"]["nodes"]) == 2


def test_graphql_errors_are_githubs(host):
    status, answer = graphql(host, '{ repository(owner: "acme", name: "nope") { name } }')
    assert status == 200 and answer["data"] == {"repository": None}
    assert answer["errors"][0]["type"] == "NOT_FOUND"
    status, answer = graphql(host, '{ repository(owner: "acme", name: "widget") { stars } }')
    assert "Field 'stars' doesn't exist on type 'Repository'" in answer["errors"][0]["message"]
    assert graphql(host, "{ viewer { login } }", token=None)[0] == 401
    assert graphql(host, "{ viewer { login } }", token="wrong")[0] == 401
    assert graphql(host, "{ viewer { login } }")[1] == {"data": {"viewer": {"login": "lcm-host"}}}
    for broken in ["{ viewer { login }", "mutation { x }", "{ ...F }", '{ a(b: "\n") }', "{}"]:
        status, answer = graphql(host, broken)
        assert status == 400 and answer["message"], broken


def test_graphql_strings_keep_their_escapes_and_non_ascii(host):
    github_client(host).get_repo(TEST_REPO).create_git_release("v1", "v1", "")
    query = (
        '{ repository(owner: "acme", name: "wid\\u0067et") '
        '{ r: release(tagName: "v1") { tagName } } }'
    )
    assert graphql(host, query)[1]["data"]["repository"]["r"] == {"tagName": "v1"}
    _, answer = graphql(host, '{ repository(owner: "é", name: "x") { name } }')
    assert "'é/x'" in answer["errors"][0]["message"]
    assert graphql(host, '{ repository(owner: "\\q", name: "x") { name } }')[0] == 400


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet='{}()[]:!=$@."\\, \n#abcqueryrepositoryreleasesnodes0123', max_size=80))
def test_fuzzed_graphql_parses_or_is_a_400(text):
    from publisher.host.errors import ApiError
    from publisher.host.graphql import Parser

    try:
        Parser(text).document()
    except ApiError as exc:
        assert exc.status == 400


def test_deeply_nested_graphql_is_a_400(host):
    for deep in ["{ a(b: " + "[" * 5000 + " }", "{ a " * 5000]:
        status, answer = graphql(host, deep)
        assert status == 400 and "deeper" in answer["message"]
