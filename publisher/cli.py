"""The `lcm` command: wires sub-commands only; each lives in `publisher/commands/`."""

from __future__ import annotations

import typer

from publisher.commands import certs, keys

app = typer.Typer(
    name="lcm",
    help="Life-cycle manager for MicroPython devices: keys, cert sectors, releases, host, devices.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(keys.app, name="keys")
app.add_typer(certs.app, name="certs")


def main() -> None:
    app()
