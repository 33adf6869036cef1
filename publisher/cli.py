"""The `lcm` command: wires sub-commands only; each lives in `publisher/commands/`."""

from __future__ import annotations

import typer

from publisher.commands import (
    certs,
    certs_cas,
    certs_ceremony,
    device,
    fleet,
    keys,
    logs,
    release_withdraw,
    version,
)
from publisher.commands import demo as demo_command
from publisher.commands import export as export_command
from publisher.commands import host as host_commands
from publisher.commands import release as release_commands
from publisher.commands import rollout as rollout_command

app = typer.Typer(
    name="lcm",
    help="Life-cycle manager for MicroPython devices: keys, cert sectors, releases, host, devices.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.callback()(version.options)
app.add_typer(keys.app, name="keys")
certs.app.command("sign")(certs_ceremony.sign)
certs.app.command("combine")(certs_ceremony.combine)
certs.app.command("cas")(certs_cas.cas)
app.add_typer(certs.app, name="certs")
app.add_typer(device.app, name="device")
release_commands.app.command("rollout")(rollout_command.rollout)
app.add_typer(release_commands.app, name="release")
release_commands.app.command("export")(export_command.export)
release_commands.app.command("yank")(release_withdraw.yank_command)
release_commands.app.command("delete")(release_withdraw.delete_command)
app.add_typer(fleet.app, name="fleet")
app.command("logs")(logs.logs)
app.command("host")(host_commands.host)
app.command("demo")(demo_command.demo)


def main() -> None:
    app()
