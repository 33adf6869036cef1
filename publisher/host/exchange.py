"""One request and its answer, as the routes see them (independent of http.server)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from email.message import Message
from typing import Any, BinaryIO
from urllib.parse import parse_qsl, unquote

from publisher.host.errors import ApiError
from publisher.host.render import Urls

MAX_JSON_BODY = 1024 * 1024  # a release's JSON is a few KB; anything near this is abuse


def ascii_int(text: str, max_digits: int) -> int | None:
    """`text` as a number when it is 1 to `max_digits` ASCII digits, else None
    (`str.isdigit` also takes '²', which int() refuses, and '١', which it reads)."""
    if 0 < len(text) <= max_digits and text.isascii() and text.isdigit():
        return int(text)
    return None


def check_unicode(value: Any, what: str) -> None:
    """Refuse a string holding a lone UTF-16 surrogate (JSON's "\\ud800"): it cannot be
    written out as UTF-8, so a page showing it would fail for good."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(400, f"Problems parsing {what}: a string holds a lone surrogate") from None
    except RecursionError:  # one level deeper than json.loads went
        raise ApiError(400, f"Problems parsing {what}: nested too deep") from None


@dataclass
class Request:
    method: str
    path: str  # without the query, still percent-encoded
    query: dict[str, str]
    headers: Message
    client_ip: str
    urls: Urls
    rfile: BinaryIO
    body_length: int | None  # Content-Length, None when absent
    body_read: int = 0
    # The token check: "none" (no Authorization), "valid" or "invalid".
    auth: str = "none"

    @classmethod
    def parse_target(cls, target: str) -> tuple[str, dict[str, str]]:
        path, _, query = target.partition("?")
        return path, dict(parse_qsl(query, keep_blank_values=True))

    def segments(self, prefix: str) -> list[str]:
        """The decoded path segments after `prefix`; a `..` or empty segment is refused."""
        rest = self.path[len(prefix) :].strip("/")
        parts = [unquote(p) for p in rest.split("/")] if rest else []
        if any(p in ("", ".", "..") or "\x00" in p for p in parts):
            raise ApiError(400, "Malformed path")
        return parts

    @property
    def route_method(self) -> str:
        """HEAD is routed as GET (the handler then sends the headers only)."""
        return "GET" if self.method == "HEAD" else self.method

    @property
    def authenticated(self) -> bool:
        return self.auth == "valid"

    @property
    def body_left(self) -> int:
        return (self.body_length or 0) - self.body_read

    def read(self, n: int) -> bytes:
        """Up to `n` body bytes (fewer only when the client hangs up)."""
        n = min(n, self.body_left)
        if n <= 0:
            return b""
        data = self.rfile.read(n)
        self.body_read += len(data)
        return data

    def json_body(self) -> dict[str, Any]:
        if self.body_length is None or self.body_length == 0:
            return {}
        if self.body_length > MAX_JSON_BODY:
            raise ApiError(413, f"Request body is larger than {MAX_JSON_BODY} bytes")
        raw = self.read(self.body_length)
        if len(raw) != self.body_length:
            raise ApiError(400, "Problems parsing JSON: the body ended early")
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeError, RecursionError):
            raise ApiError(400, "Problems parsing JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "Problems parsing JSON: expected an object")
        check_unicode(body, "JSON")
        return body


@dataclass
class FileBody:
    """`length` bytes of `file` from `start`: an asset download, streamed by the handler,
    which closes the file. Opened where the record was read, so the bytes are the ones it
    describes even if the asset is replaced or deleted meanwhile."""

    file: BinaryIO
    start: int
    length: int


@dataclass
class Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | FileBody = b""
    # True when the connection must be closed without any answer (a dropped upload).
    drop: bool = False
    # True for HEAD: headers (with the body's length) only.
    head_only: bool = False

    @property
    def length(self) -> int:
        return self.body.length if isinstance(self.body, FileBody) else len(self.body)


def etag_matches(header: str | None, etag: str) -> bool:
    """`If-None-Match` names `etag` (weak comparison, as RFC 9110 asks for it) or is `*`."""
    if not header:
        return False
    bare = etag.removeprefix("W/")
    return any(t.strip().removeprefix("W/") in (bare, "*") for t in header.split(","))


def json_response(status: int, value: Any, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(value, indent=1).encode()
    return Response(
        status, {"Content-Type": "application/json; charset=utf-8", **(headers or {})}, body
    )


def error_response(exc: ApiError) -> Response:
    return json_response(exc.status, exc.body(), exc.headers)


def redirect(location: str, status: int = 302) -> Response:
    return Response(status, {"Location": location, "Cache-Control": "no-cache"})


def html_response(status: int, html: str) -> Response:
    return Response(status, {"Content-Type": "text/html; charset=utf-8"}, html.encode())
