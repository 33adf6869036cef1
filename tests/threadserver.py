"""A Python HTTP server for tests, on a free loopback port in a thread of the test process.

with serving(Handler) as url:       # Handler: a BaseHTTPRequestHandler class (or partial)
    ...                             # url: http://127.0.0.1:PORT

Its request log lines and handler errors are not printed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from http.server import ThreadingHTTPServer
from typing import Any


class _Quiet(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up mid-answer is what some tests do


def _silenced(handler: Any) -> Any:
    # The handler class (behind a partial, such as SimpleHTTPRequestHandler's with its
    # directory) with its per-request log line dropped.
    if isinstance(handler, partial):
        return partial(_silenced(handler.func), *handler.args, **handler.keywords)
    return type(handler.__name__, (handler,), {"log_message": lambda self, *args: None})


@contextmanager
def serving(handler: Callable[..., Any]) -> Iterator[str]:
    """Serve with `handler` until the block ends; yields the server's base URL."""
    server = _Quiet(("127.0.0.1", 0), _silenced(handler))
    # A short poll interval only makes shutdown quick.
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
