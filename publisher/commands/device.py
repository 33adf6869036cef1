"""`lcm device`: build factory images, flash boards, simulate a device on the unix port.

Each sub-command lives in its own module under `publisher/commands/`; this
module only holds the group they register on.
"""

from __future__ import annotations

import typer

from publisher.commands import device_image, simulate

app = typer.Typer(
    help="Factory images, flashing, and simulated devices on the MicroPython unix port.",
    no_args_is_help=True,
)
app.command("image")(device_image.image)
app.command("flash")(device_image.flash)
app.command("install")(device_image.install)
app.command("simulate")(simulate.simulate_command)
