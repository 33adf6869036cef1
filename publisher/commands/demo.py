"""`lcm demo`: publish to a local release host and watch a simulated device update itself."""

from __future__ import annotations

from typing import Annotated

import typer

from publisher.console import command_edge, out
from publisher.demo import DEMO_HEAP, run_demo
from publisher.micropython import check_heap


@command_edge
def demo(
    keep: Annotated[
        bool,
        typer.Option("--keep", help="Leave the host running and say how to add a second device."),
    ] = False,
    heap: Annotated[
        str, typer.Option("--heap", help="MicroPython heap of the simulated device.")
    ] = DEMO_HEAP,
) -> None:
    """Run the whole product on this machine: host, keys, releases, a device, a roll-back."""
    run_demo(out, keep=keep, heap=check_heap(heap))
