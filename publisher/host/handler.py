"""The HTTP/1.1 handler: parses a request, routes it, writes the answer, logs it.

Keep-alive works because every answer has a Content-Length and every request
body is either read or, when too large to drain, the connection is closed.
Any unexpected exception becomes a 500 with GitHub-style JSON (and a log
line), never a traceback sent to the client.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import socket
import time
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

from publisher.host.api import (
    API_PREFIX,
    CORS_HEADERS,
    UPLOADS_PREFIX,
    handle_api,
    handle_upload,
    with_cors,
)
from publisher.host.browser import handle_browser, handle_object
from publisher.host.errors import DOCS_URL, ApiError
from publisher.host.exchange import FileBody, Request, Response, ascii_int, error_response
from publisher.host.faults import RequestRecord
from publisher.host.graphql import GRAPHQL_PATH, handle_graphql
from publisher.host.render import Urls
from publisher.host.urlsign import OBJECTS_PREFIX

if TYPE_CHECKING:
    from publisher.host.server import HostServer

log = logging.getLogger("lcm.host")

SEND_CHUNK = 64 * 1024
CHUNKED_PIECE = 1000  # small, odd-sized chunks so a client meets many chunk boundaries
DRAIN_LIMIT = 64 * 1024 * 1024  # read and discard up to this much of an unused body
LINGER_SECONDS = 2  # how long a closing connection keeps reading what the client sends
LINGER_BYTES = 1024 * 1024


def chunked_length(length: int) -> int:
    """Bytes on the wire for `length` body bytes sent in CHUNKED_PIECE chunks."""
    full, rest = divmod(length, CHUNKED_PIECE)
    framed = full * (len(b"%x" % CHUNKED_PIECE) + 4 + CHUNKED_PIECE)
    if rest:
        framed += len(b"%x" % rest) + 4 + rest
    return framed + len(b"0\r\n\r\n")


class CountingWriter:
    """Wraps the socket writer to count the bytes sent (the request log's bytes_sent)."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.count = 0

    def write(self, data: bytes) -> int:
        self.raw.write(data)
        self.count += len(data)
        return len(data)

    def flush(self) -> None:
        self.raw.flush()

    def close(self) -> None:
        self.raw.close()

    @property
    def closed(self) -> bool:
        return bool(self.raw.closed)


class DeadlineReader(io.RawIOBase):
    """The connection's bytes for `rfile`: each read waits at most until the handler's
    deadline (publisher/host/limits.py), not a fresh timeout per read."""

    def __init__(self, handler: HostHandler) -> None:
        self.handler = handler

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        return self.handler.read_before_deadline(buf)


def is_api_path(path: str) -> bool:
    """REST, GraphQL and uploads: the answers that carry GitHub's CORS headers."""
    return path in (API_PREFIX, GRAPHQL_PATH) or path.startswith(
        (API_PREFIX + "/", UPLOADS_PREFIX + "/")
    )


class HostHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "lcm-host"
    sys_version = ""
    # Headers and body go out in separate writes; with Nagle's algorithm and
    # delayed ACKs each kept-alive request could wait ~40 ms for nothing.
    disable_nagle_algorithm = True
    host: HostServer
    connection_id: int
    wfile: Any
    _headers_buffer: list[bytes]  # http.server's pending status line and headers

    def setup(self) -> None:
        self.host = self.server.host  # type: ignore[attr-defined]
        self.limits = self.host.limits
        self.connection_id, self.over_limit = self.host._new_connection(
            self.request, self.client_address[0]
        )
        self.deadline = math.inf
        self.awaiting_request = False
        try:
            if self.host.tls_context is not None:
                if self.over_limit > 0:
                    # A 503 needs a handshake first, and a handshake left silent is what
                    # holds a thread and a file descriptor for header_s: over the limit,
                    # a TLS connection is closed at once instead.
                    self.warn_over_limit()
                    raise ConnectionRefusedError("over the per-address connection limit")
                # The handshake runs here, in this connection's thread, so a slow or
                # broken client cannot hold up accept(); `ssl` holds it to one deadline.
                self.request.settimeout(self.limits.header_s)
                self.request = self.host.tls_context.wrap_socket(self.request, server_side=True)
                self.host._track_socket(self.connection_id, self.request)
            super().setup()
        except BaseException:
            # finish() runs only after a setup that returned: a failed handshake must not
            # stay counted against its address.
            self.host._forget_connection(self.connection_id)
            raise
        self.connection.settimeout(self.limits.idle_s)  # a write stalls this long at most
        self.rfile.close()  # http.server's own reader: ours keeps the deadlines
        self.rfile = io.BufferedReader(DeadlineReader(self))
        self.wfile = CountingWriter(self.wfile)

    def read_before_deadline(self, buf: Any) -> int:
        """One read into `buf`, waiting until the deadline at most (and `idle_s` per read)."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request's line and headers took too long")
        self.connection.settimeout(min(left, self.limits.idle_s))
        n = self.connection.recv_into(buf)
        if n and self.awaiting_request:
            # The request's first bytes: its line and headers have header_s from here.
            self.awaiting_request = False
            self.deadline = time.monotonic() + self.limits.header_s
        return int(n)

    def handle(self) -> None:
        if self.over_limit > 0:
            self.refuse()
            return
        super().handle()

    def handle_one_request(self) -> None:
        # Waiting for the next request: idle_s for its first byte (read_before_deadline).
        self.deadline = time.monotonic() + self.limits.idle_s
        self.awaiting_request = True
        super().handle_one_request()

    def warn_over_limit(self) -> None:
        if self.over_limit == 1:  # once as the address goes over, not once per connection
            log.warning(
                "%s: more than %d connections at once: refusing the others",
                self.client_address[0],
                self.limits.per_ip,
            )

    def refuse(self) -> None:
        """Over `per_ip` connections: 503 with Retry-After, without reading the request."""
        self.warn_over_limit()
        error = ApiError(
            503,
            f"too many connections from {self.client_address[0]} at once "
            f"(at most {self.limits.per_ip}); retry later",
            headers={"Retry-After": str(self.limits.retry_after_s)},
        )
        # Answered as every other answer, without a request read: these stand for it.
        self.request_version, self.requestline, self.close_connection = "HTTP/1.1", "", True
        record = RequestRecord("", "", "", 0, 0, self.connection_id)
        with contextlib.suppress(OSError):
            self.write_response(error_response(error), record)
            self.linger()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.host._forget_connection(self.connection_id)
            if self.host.tls_context is not None:
                # socketserver shuts down and closes the socket it accepted, which the TLS
                # wrapper detached: without this the connection stayed open until the
                # garbage collector freed this handler (its reader refers back to it).
                with contextlib.suppress(OSError):
                    self.request.shutdown(socket.SHUT_WR)
                self.request.close()

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        # Headers read: a body read (or a write) may stall idle_s at a time. The request
        # is under way even when its bytes came in an earlier read (pipelined).
        self.deadline = math.inf
        self.awaiting_request = False
        self.connection.settimeout(self.limits.idle_s)
        if self.request_version == "HTTP/0.9":
            # An HTTP/0.9 answer has no status line or headers: nothing to tell
            # the client what went wrong. Only HTTP/1.x is served.
            self.send_error(400, "HTTP/1.0 or HTTP/1.1 required")
            return False
        return True

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    # Every method goes through dispatch; unknown methods get 501 via send_error.
    def do_GET(self) -> None:
        self.dispatch()

    do_HEAD = do_POST = do_PATCH = do_DELETE = do_PUT = do_OPTIONS = do_GET

    def urls(self) -> Urls:
        return Urls(self.host.base_url_for(self.headers.get("Host")), self.host.asset_base_url())

    def build_request(self) -> Request:
        path, query = Request.parse_target(self.path)
        if not path.startswith("/"):
            raise ApiError(400, "Malformed request target")
        if self.headers.get("Transfer-Encoding"):
            # Only Content-Length bodies; a chunked body cannot be told apart
            # from the next request, so the connection is closed after the answer.
            self.close_connection = True
            raise ApiError(411, "Length Required: send a Content-Length, not chunked bodies")
        length_text = self.headers.get("Content-Length")
        length = None
        if length_text is not None:
            length = ascii_int(length_text.strip(), 18)
            if length is None:
                self.close_connection = True
                raise ApiError(400, "Malformed Content-Length")
        return Request(
            method=self.command,
            path=path,
            query=query,
            headers=self.headers,
            client_ip=self.client_address[0],
            urls=self.urls(),
            rfile=self.rfile,  # type: ignore[arg-type]
            body_length=length,
            auth=self.host.state.check_token(self.headers.get("Authorization")),
        )

    def route(self, req: Request) -> Response:
        state = self.host.state
        if req.path == GRAPHQL_PATH:
            return with_cors(handle_graphql, state, req)
        if req.path == API_PREFIX or req.path.startswith(API_PREFIX + "/"):
            return with_cors(handle_api, state, req)
        if req.path.startswith(UPLOADS_PREFIX + "/"):
            return with_cors(handle_upload, state, req)
        if req.path.startswith(OBJECTS_PREFIX):
            return handle_object(state, req)
        return handle_browser(state, req)

    def dispatch(self) -> None:
        start = self.wfile.count
        path, _, query = self.path.partition("?")
        req: Request | None = None
        try:
            req = self.build_request()
            response = self.route(req)
        except ApiError as exc:
            if req is None and is_api_path(path):
                # Refused before it was routed (its framing): still an API answer.
                exc.headers = {**CORS_HEADERS, **exc.headers}
            response = error_response(exc)
        except Exception:
            log.exception("internal error answering %s %s", self.command, path)
            response = error_response(ApiError(500, "Server Error"))
        if req is not None and req.method == "HEAD":
            response.head_only = True
        record = RequestRecord(self.command, path, query, 0, 0, self.connection_id)
        try:
            if response.drop:
                self.close_connection = True
                self.host._record(record)
            else:
                if req is not None:
                    self.drain(req)
                # Taken before the answer leaves: a fault injected after a client
                # has read an answer never applies to that answer.
                close_after = self.host.state.faults.take("close_after_response")
                self.write_response(response, record)
                if close_after:
                    # A kept-alive connection the server drops while the client
                    # thinks it can reuse it (idle timeouts do this on real CDNs).
                    self.close_connection = True
            if self.close_connection and (req is None or req.body_left > 0):
                self.linger()
        except OSError:
            self.close_connection = True
        finally:
            if isinstance(response.body, FileBody):
                response.body.file.close()  # sent, or not (HEAD, a drop, a client gone)
        record.bytes_sent = self.wfile.count - start

    def drain(self, req: Request) -> None:
        """Read what is left of an unused body, so the connection can stay alive."""
        left = req.body_left
        if left <= 0:
            return
        if left > DRAIN_LIMIT:
            self.close_connection = True
            return
        while req.body_left > 0:
            if not req.read(min(SEND_CHUNK, req.body_left)):
                self.close_connection = True
                return

    def write_response(self, response: Response, record: RequestRecord) -> None:
        """Write the answer. The request is logged just before its first byte leaves, so a
        test that has read an answer always finds its record (bytes_sent is the plan, then
        corrected to what was written)."""
        has_body = not response.head_only and response.status not in (204, 304)
        cut, stall, chunked = None, False, False
        if has_body and isinstance(response.body, FileBody):
            faults = self.host.state.faults
            if faults.take("drop_download"):
                cut = response.body.length // 2
            elif faults.take("stall_download"):
                cut, stall = response.body.length // 2, True
            elif self.request_version == "HTTP/1.1" and faults.take("chunked_download"):
                chunked = True
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(response.length))
        if self.close_connection:
            self.send_header("Connection", "close")
        self._headers_buffer.append(b"\r\n")
        planned = sum(len(line) for line in self._headers_buffer)
        if has_body and chunked:
            planned += chunked_length(response.length)
        elif has_body:
            planned += response.length if cut is None else cut
        record.status = response.status
        record.bytes_sent = planned
        self.host._record(record)
        if has_body and not isinstance(response.body, FileBody):
            self._headers_buffer.append(response.body)  # one write for a small answer
        self.flush_headers()
        if has_body and isinstance(response.body, FileBody):
            self.send_file(response.body, cut, stall, chunked)

    def send_file(self, body: FileBody, cut: int | None, stall: bool, chunked: bool) -> None:
        """Stream the asset; with a fault, only `cut` bytes, then close (or stall), or
        in small chunks with chunked framing."""
        limit = body.length if cut is None else cut
        piece = CHUNKED_PIECE if chunked else SEND_CHUNK
        with body.file as f:
            f.seek(body.start)
            sent = 0
            while sent < limit:
                data = f.read(min(piece, limit - sent))
                if not data:
                    self.close_connection = True
                    return  # the file shrank under us: the client sees a short body
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
                sent += len(data)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")
        if cut is not None:
            self.wfile.flush()
            if stall:
                # Send nothing more until the server stops: a slow-retrieval attack.
                self.host.state.stopping.wait()
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

    def linger(self) -> None:
        """Close gently after an error: send our FIN, then read (and drop) what the client
        still sends for a moment, so that closing with unread input does not reset the
        connection and destroy the error answer before the client has read it."""
        try:
            self.wfile.flush()
            self.connection.settimeout(LINGER_SECONDS)
            self.connection.shutdown(socket.SHUT_WR)
            received = 0
            while received < LINGER_BYTES:
                chunk = self.connection.recv(SEND_CHUNK)
                if not chunk:
                    break
                received += len(chunk)
        except OSError:
            pass

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own errors (bad request line, huge headers): JSON, then close."""
        self.close_connection = True
        if self.request_version == "HTTP/0.9":
            # Garbage request lines are parsed as HTTP/0.9, which has no status
            # line; answer with one so the client can tell what went wrong.
            self.request_version = "HTTP/1.0"
        body = json.dumps(
            {
                "message": message or self.responses.get(code, ("Error",))[0],
                "documentation_url": DOCS_URL,
                "status": str(code),
            }
        ).encode()
        target = getattr(self, "path", "") or ""
        path, _, query = target.partition("?")
        command = getattr(self, "command", None) or ""
        record = RequestRecord(command, path, query, code, len(body), self.connection_id)
        start = self.wfile.count
        self.host._record(record)
        try:
            self.send_response(code, message)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except OSError:
            return
        finally:
            record.bytes_sent = self.wfile.count - start
        self.linger()
