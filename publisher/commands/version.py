"""`lcm --version`: lcm's version and the manager version it builds for devices."""

from __future__ import annotations

from typing import Annotated

import typer

from cert_sector.version import MANAGER_VERSION
from publisher import __version__


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"lcm {__version__} (device manager {MANAGER_VERSION})")
        raise typer.Exit()


def options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Life-cycle manager for MicroPython devices: keys, cert sectors, releases, host, devices."""
