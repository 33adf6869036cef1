"""The part of GitHub's GraphQL API (`POST /api/graphql`) that the GitHub CLI's release and
auth commands send.

A small parser reads the query (operations with variables, fields with aliases and
arguments, nested selections; no fragments, directives or mutations) and a resolver
walks it over this schema, answering only the fields asked for:

  Query       repository(owner, name): Repository    viewer: User
  Repository  id databaseId name nameWithOwner url
              releases(first, last, after, orderBy{field: CREATED_AT|NAME, direction})
                : ReleaseConnection
              release(tagName): Release              the published one, else a draft
              latestRelease: Release
              ref(qualifiedName: "refs/tags/TAG"): Ref
  ReleaseConnection  nodes totalCount pageInfo{hasNextPage endCursor hasPreviousPage startCursor}
  Release     id databaseId name tagName isDraft isLatest isPrerelease createdAt
              publishedAt updatedAt url description author{login}
  Ref         id name prefix
  User        login id databaseId name url

There are no git objects: a tag exists (a `ref`) when a published release carries it.
Errors come as GitHub sends them: 200 with `errors` (unknown fields, an unknown repo),
401 without the token (GitHub's GraphQL API needs one), 400 for a query that does not parse.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from publisher.host import render
from publisher.host.errors import ApiError
from publisher.host.exchange import Request, Response, ascii_int, check_unicode, json_response
from publisher.host.render import Urls
from publisher.host.state import HostState
from publisher.host.store import Release, Repo, Store

GRAPHQL_PATH = "/api/graphql"
MAX_DEPTH = 8  # gh's queries nest four deep; a deeper query is refused, not recursed into
MAX_PAGE = 100

_TOKEN = re.compile(
    r"\s*(?:(?P<name>[_A-Za-z][_0-9A-Za-z]*)|(?P<var>\$[_A-Za-z][_0-9A-Za-z]*)"
    r'|(?P<num>-?[0-9]+(?:\.[0-9]+)?)|(?P<str>"(?:[^"\\\n]|\\.)*")|(?P<punct>\.\.\.|[{}()\[\]:!=@]))'
)
_IGNORED = re.compile(r"(?:[\s,]|#[^\n]*)*")


class GraphQLError(Exception):
    """A query GitHub would answer with `errors` (200), as opposed to a transport error."""

    def __init__(self, message: str, kind: str = "", path: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.path = path


@dataclass
class Field:
    name: str
    alias: str
    args: dict[str, Any] = field(default_factory=dict)
    selections: list[Field] = field(default_factory=list)


@dataclass(frozen=True)
class Variable:
    name: str


class Parser:
    """Recursive descent over GraphQL's query syntax (the subset named in the module doc)."""

    def __init__(self, text: str) -> None:
        self.tokens: list[tuple[str, str]] = []
        pos = _IGNORED.match(text, 0).end()  # type: ignore[union-attr]
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None or m.lastgroup is None:
                raise ApiError(400, f"Problems parsing the GraphQL query at character {pos}")
            self.tokens.append((m.lastgroup, m.group(m.lastgroup)))
            pos = _IGNORED.match(text, m.end()).end()  # type: ignore[union-attr]
        self.i = 0
        self.defaults: dict[str, Any] = {}  # the operation's variable defaults ($n: Int = 5)

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.i] if self.i < len(self.tokens) else ("end", "")

    def take(self, kind: str, value: str | None = None) -> str:
        got_kind, got = self.peek()
        if got_kind != kind or (value is not None and got != value):
            want = value or kind
            raise ApiError(
                400, f"Problems parsing the GraphQL query: expected {want!r}, got {got!r}"
            )
        self.i += 1
        return got

    def document(self) -> list[Field]:
        """The selections of the one operation (a query; mutations are not served)."""
        kind, value = self.peek()
        if kind == "name":
            if value != "query":
                raise ApiError(400, f"GraphQL operation {value!r} is not served (queries only)")
            self.i += 1
            if self.peek()[0] == "name":
                self.i += 1
            if self.peek() == ("punct", "("):
                self.variable_definitions()
        selections = self.selection_set(0)
        if self.peek()[0] != "end":
            raise ApiError(400, "Problems parsing the GraphQL query: one operation expected")
        return selections

    def variable_definitions(self) -> None:
        self.take("punct", "(")
        while self.peek() != ("punct", ")"):
            name = self.take("var")[1:]
            self.take("punct", ":")
            self.type_ref()
            if self.peek() == ("punct", "="):
                self.i += 1
                self.defaults[name] = self.value()
        self.take("punct", ")")

    def type_ref(self) -> None:
        if self.peek() == ("punct", "["):
            self.i += 1
            self.type_ref()
            self.take("punct", "]")
        else:
            self.take("name")
        if self.peek() == ("punct", "!"):
            self.i += 1

    def selection_set(self, depth: int) -> list[Field]:
        if depth > MAX_DEPTH:
            raise ApiError(400, f"GraphQL query nested deeper than {MAX_DEPTH}")
        self.take("punct", "{")
        fields = []
        while self.peek() != ("punct", "}"):
            if self.peek()[1] in ("...", "@"):
                raise ApiError(400, "GraphQL fragments and directives are not served")
            fields.append(self.field(depth))
        self.take("punct", "}")
        if not fields:
            raise ApiError(400, "Problems parsing the GraphQL query: empty selection")
        return fields

    def field(self, depth: int) -> Field:
        alias = name = self.take("name")
        if self.peek() == ("punct", ":"):
            self.i += 1
            name = self.take("name")
        f = Field(name, alias)
        if self.peek() == ("punct", "("):
            self.i += 1
            while self.peek() != ("punct", ")"):
                key = self.take("name")
                self.take("punct", ":")
                f.args[key] = self.value()
            self.take("punct", ")")
        if self.peek() == ("punct", "{"):
            f.selections = self.selection_set(depth + 1)
        return f

    def value(self, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise ApiError(400, f"GraphQL value nested deeper than {MAX_DEPTH}")
        kind, text = self.peek()
        self.i += 1
        if kind == "var":
            return Variable(text[1:])
        if kind == "num":
            if len(text) > 20:  # int() of thousands of digits is slow, then refused
                raise ApiError(400, f"GraphQL number {text[:20]}... is too long")
            return float(text) if "." in text else int(text)
        if kind == "str":
            try:
                value = json.loads(text)  # GraphQL's string escapes are JSON's
            except ValueError:
                raise ApiError(400, f"Problems parsing the GraphQL string {text[:40]}") from None
            check_unicode(value, "the GraphQL string")
            return value
        if kind == "name":
            return {"true": True, "false": False, "null": None}.get(text, text)  # enums as text
        if (kind, text) == ("punct", "["):
            items = []
            while self.peek() != ("punct", "]"):
                items.append(self.value(depth + 1))
            self.take("punct", "]")
            return items
        if (kind, text) == ("punct", "{"):
            obj = {}
            while self.peek() != ("punct", "}"):
                key = self.take("name")
                self.take("punct", ":")
                obj[key] = self.value(depth + 1)
            self.take("punct", "}")
            return obj
        raise ApiError(400, f"Problems parsing the GraphQL query: unexpected {text!r}")


def substitute(value: Any, variables: dict[str, Any]) -> Any:
    if isinstance(value, Variable):
        return variables.get(value.name)
    if isinstance(value, list):
        return [substitute(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, variables) for k, v in value.items()}
    return value


def handle_graphql(state: HostState, req: Request) -> Response:
    if req.method != "POST":
        raise ApiError(404, "Not Found")
    if req.auth == "invalid":
        raise ApiError(401, "Bad credentials")
    if not req.authenticated:
        raise ApiError(401, "This endpoint requires you to be authenticated.")
    body = req.json_body()
    query, variables = body.get("query"), body.get("variables") or {}
    if not isinstance(query, str) or not isinstance(variables, dict):
        raise ApiError(400, "A GraphQL request needs a `query` string and `variables` object")
    parser = Parser(query)
    selections = parser.document()
    # A variable the request leaves out takes its default (GraphQL spec 6.4.1).
    resolver = Resolver(state.store, req.urls, {**parser.defaults, **variables})
    data: dict[str, Any] = {}
    errors: list[dict[str, Any]] = []
    for f in selections:
        try:
            data[f.alias] = resolver.query_field(f)
        except GraphQLError as exc:
            data[f.alias] = None
            error: dict[str, Any] = {"message": exc.message, "path": exc.path or [f.alias]}
            if exc.kind:
                error["type"] = exc.kind
            errors.append(error)
    answer: dict[str, Any] = {"data": data}
    if errors:
        answer["errors"] = errors
    return json_response(200, answer)


class Resolver:
    """Walks the selections over the store; every read happens under the store's lock."""

    def __init__(self, store: Store, urls: Urls, variables: dict[str, Any]) -> None:
        self.store = store
        self.urls = urls
        self.variables = variables

    def args(self, f: Field) -> dict[str, Any]:
        return {k: substitute(v, self.variables) for k, v in f.args.items()}

    def query_field(self, f: Field) -> Any:
        if f.name == "repository":
            args = self.args(f)
            owner, name = args.get("owner"), args.get("name")
            if not isinstance(owner, str) or not isinstance(name, str):
                raise GraphQLError("repository needs owner and name strings")
            try:
                repo = self.store.read(lambda: self.store.repo(f"{owner}/{name}"))
            except ApiError:
                raise GraphQLError(
                    f"Could not resolve to a Repository with the name '{owner}/{name}'.",
                    "NOT_FOUND",
                    [f.alias],
                ) from None
            return self.store.read(lambda: self.select(f, "Repository", repo))
        if f.name == "viewer":
            return self.select(f, "User", render.HOST_USER)
        raise GraphQLError(f"Field '{f.name}' doesn't exist on type 'Query'")

    def select(self, f: Field, type_name: str, obj: Any) -> dict[str, Any]:
        if not f.selections:
            raise GraphQLError(f"Field '{f.name}' of type '{type_name}' must have a selection")
        resolvers: dict[str, Callable[[Field, Any], Any]] = {
            "User": self.resolve_User,
            "Repository": self.resolve_Repository,
            "ReleaseConnection": self.resolve_ReleaseConnection,
            "Release": self.resolve_Release,
            "Ref": self.resolve_Ref,
        }
        resolve = resolvers[type_name]
        return {sub.alias: resolve(sub, obj) for sub in f.selections}

    def unknown(self, f: Field, type_name: str) -> GraphQLError:
        return GraphQLError(f"Field '{f.name}' doesn't exist on type '{type_name}'")

    # -- types ----------------------------------------------------------------

    def resolve_User(self, f: Field, login: str) -> Any:
        values = {
            "login": login,
            "name": login,
            "id": render.node_id("U", render.user_id(login)),
            "databaseId": render.user_id(login),
            "url": f"{self.urls.web}/{login}",
        }
        return self.pick(f, values, "User")

    def resolve_Repository(self, f: Field, repo: Repo) -> Any:
        store = self.store
        if f.name == "releases":
            return self.select(f, "ReleaseConnection", self.connection(f, repo))
        if f.name == "release":
            tag = self.args(f).get("tagName")
            rel = self.by_tag(repo, tag) if isinstance(tag, str) else None
            return None if rel is None else self.select(f, "Release", rel)
        if f.name == "latestRelease":
            latest = store.latest(repo)
            return None if latest is None else self.select(f, "Release", latest)
        if f.name == "ref":
            qualified = self.args(f).get("qualifiedName")
            if not isinstance(qualified, str):
                return None
            tag = qualified.removeprefix("refs/tags/")
            published = [r for r in store.releases_of(repo, drafts=False) if r.tag_name == tag]
            return self.select(f, "Ref", "refs/tags/" + tag) if published else None
        values = {
            "id": render.node_id("R", repo.id),
            "databaseId": repo.id,
            "name": repo.full_name.split("/", 1)[1],
            "nameWithOwner": repo.full_name,
            "url": f"{self.urls.web}/{repo.full_name}",
        }
        return self.pick(f, values, "Repository")

    def by_tag(self, repo: Repo, tag: str) -> Release | None:
        """The published release of `tag`, else its newest draft (the token may see drafts)."""
        candidates = [r for r in self.store.releases_of(repo, drafts=True) if r.tag_name == tag]
        published = [r for r in candidates if not r.draft]
        found = published or candidates
        return found[0] if found else None

    def connection(self, f: Field, repo: Repo) -> tuple[list[Release], int, int]:
        """(the page, its offset, the total) for releases(first|last, after, orderBy)."""
        args = self.args(f)
        order = args.get("orderBy") or {}
        rels = self.store.releases_of(repo, drafts=True)  # newest first
        if isinstance(order, dict) and order.get("field") == "NAME":
            rels = sorted(rels, key=lambda r: r.tag_name, reverse=True)
        if isinstance(order, dict) and order.get("direction") == "ASC":
            rels.reverse()
        start = 0
        after = args.get("after")
        if isinstance(after, str):
            start = decode_cursor(after) + 1
        count = args.get("first") or args.get("last") or MAX_PAGE
        if not isinstance(count, int) or not 1 <= count <= MAX_PAGE:
            raise GraphQLError(f"first/last on releases must be 1 to {MAX_PAGE}")
        if args.get("last") and not args.get("first"):
            start = max(start, len(rels) - count)
        return rels[start : start + count], start, len(rels)

    def resolve_ReleaseConnection(self, f: Field, page: tuple[list[Release], int, int]) -> Any:
        rels, start, total = page
        if f.name == "nodes":
            return [self.select(f, "Release", r) for r in rels]
        if f.name == "totalCount":
            return total
        if f.name == "pageInfo":
            end = start + len(rels) - 1
            info = {
                "hasNextPage": end + 1 < total,
                "hasPreviousPage": start > 0,
                "endCursor": encode_cursor(end) if rels else None,
                "startCursor": encode_cursor(start) if rels else None,
            }
            return {sub.alias: self.pick(sub, info, "PageInfo") for sub in f.selections}
        raise self.unknown(f, "ReleaseConnection")

    def pick(self, f: Field, values: dict[str, Any], type_name: str) -> Any:
        if f.name not in values:
            raise self.unknown(f, type_name)
        return values[f.name]

    def resolve_Release(self, f: Field, rel: Release) -> Any:
        if f.name == "author":
            return self.select(f, "User", rel.author)
        latest = self.store.latest(self.store.repo(rel.repo))
        tag = self.urls.release_tag(rel)
        values = {
            "id": render.node_id("RE", rel.id),
            "databaseId": rel.id,
            "name": rel.name or None,
            "tagName": rel.tag_name,
            "isDraft": rel.draft,
            "isPrerelease": rel.prerelease,
            "isLatest": latest is not None and latest.id == rel.id,
            "createdAt": render.iso(rel.created_at),
            "publishedAt": render.iso(rel.published_at),
            "updatedAt": render.iso(rel.updated_at or rel.created_at),
            "url": f"{self.urls.web}/{rel.repo}/releases/tag/{tag}",
            "description": rel.body or None,
        }
        return self.pick(f, values, "Release")

    def resolve_Ref(self, f: Field, qualified: str) -> Any:
        values = {
            "id": base64.b64encode(b"REF:" + qualified.encode()).decode(),
            "name": qualified.removeprefix("refs/tags/"),
            "prefix": "refs/tags/",
        }
        return self.pick(f, values, "Ref")


def encode_cursor(index: int) -> str:
    return base64.b64encode(f"cursor:v2:{index}".encode()).decode()


def decode_cursor(cursor: str) -> int:
    try:
        text = base64.b64decode(cursor, validate=True).decode()
    except (ValueError, UnicodeError):
        raise GraphQLError(f"`{cursor[:40]}` does not appear to be a valid cursor.") from None
    head, _, number = text.rpartition(":")
    position = ascii_int(number, 9)
    if head != "cursor:v2" or position is None:
        raise GraphQLError(f"`{cursor[:40]}` does not appear to be a valid cursor.")
    return position
