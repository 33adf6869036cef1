"""The command edge: one place that turns library errors into a message and an exit code."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

from cert_sector.errors import TrustError
from publisher.errors import PublisherError

out = Console()
err = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

EXIT_REFUSED = 1


def command_edge(func: F) -> F:
    """Run a command; a PublisherError or TrustError becomes `error: ...` and exit 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (PublisherError, TrustError) as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_REFUSED) from None
        except OSError as exc:
            # What the machine refused (a folder that does not exist, no permission, a full
            # disk), named with its path, rather than a traceback.
            where = f"{exc.filename}: " if exc.filename else ""
            err.print(
                f"[bold red]error:[/] {where}{exc.strerror or exc}", highlight=False, soft_wrap=True
            )
            raise typer.Exit(EXIT_REFUSED) from None

    return wrapper  # type: ignore[return-value]


def retry_notice(text: str) -> None:
    """A host's transient failure that is retried (publisher.release.github.Session)."""
    err.print(f"[yellow]retrying:[/] {text}", highlight=False, soft_wrap=True)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True) + "\n")
