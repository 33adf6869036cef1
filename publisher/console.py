"""The command edge: one place that turns library errors into a message and an exit code."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from cert_sector.errors import TrustError
from publisher.errors import PublisherError
from publisher.printable import printable

# Markup off: what is printed is text (paths, tags, a host's or a certificate's strings,
# any of which may hold "[...]"); a style is given as a Text, never as markup in a string.
# Soft wrap: a line is never broken by the console (a path, URL or command stays one line
# to copy or grep, in a terminal as in a CI log); tables and rules still fit the width.
out = Console(markup=False, soft_wrap=True)
err = Console(stderr=True, markup=False, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])

EXIT_REFUSED = 1


def command_edge(func: F) -> F:
    """Run a command; a PublisherError or TrustError becomes `error: ...` and exit 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (PublisherError, TrustError) as exc:
            _say("error:", "bold red", str(exc))
            raise typer.Exit(EXIT_REFUSED) from None
        except OSError as exc:
            # What the machine refused (a folder that does not exist, no permission, a full
            # disk), named with its path, rather than a traceback.
            where = f"{exc.filename}: " if exc.filename else ""
            _say("error:", "bold red", f"{where}{exc.strerror or exc}")
            raise typer.Exit(EXIT_REFUSED) from None

    return wrapper  # type: ignore[return-value]


def _say(label: str, style: str, text: str) -> None:
    # A message may carry what a host or a device sent: its control characters are
    # shown as escapes (no terminal escape injection); its own line breaks stay.
    safe = "\n".join(printable(line) for line in text.split("\n"))
    err.print(Text.assemble((label, style), " ", safe), highlight=False)


def warn(text: str) -> None:
    """A warning on stderr: the command goes on."""
    _say("warning:", "yellow", text)


def retry_notice(text: str) -> None:
    """A host's transient failure that is retried (publisher.release.github.Session)."""
    _say("retrying:", "yellow", text)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True) + "\n")
