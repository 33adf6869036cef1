"""`lcm device simulate`: run a device on the MicroPython unix port against a release host."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated

import typer

from publisher import signing
from publisher.console import command_edge, out
from publisher.device.simulate import SimulateError, der_from_pem, provision, simulate

_LOG_LINE = re.compile(r"^[0-9a-f]{12} \d+ (\S+) (.*)$")
_HEAP = re.compile(r"^\d{1,6}[kKmM]?$")


def timeline_line(line: str) -> str:
    """A device output line made readable: log lines lose the device id and sequence."""
    if line.startswith("--- "):
        return line[4:]
    m = _LOG_LINE.match(line)
    if m:
        return f"  {m.group(1)}  {m.group(2)}"
    return f"  | {line}"


def print_line(line: str) -> None:
    out.print(timeline_line(line), highlight=False, markup=False, soft_wrap=True)


@command_edge
def simulate_command(
    state: Annotated[Path, typer.Option("--state", help="Folder holding the device's flash.")],
    web_url: Annotated[
        str, typer.Option("--web-url", help="Browser base URL: https://github.com or an lcm host.")
    ],
    repo: Annotated[str, typer.Option("--repo", help="The app repo, OWNER/NAME.")],
    root: Annotated[
        list[Path], typer.Option("--root", help="Pinned root public key of the app repo (.pub).")
    ],
    manager_repo: Annotated[
        str | None, typer.Option("--manager-repo", help="The manager's own repo, OWNER/NAME.")
    ] = None,
    manager_root: Annotated[
        list[Path] | None,
        typer.Option("--manager-root", help="Pinned root public key of the manager repo."),
    ] = None,
    heap: Annotated[
        str | None, typer.Option("--heap", help="MicroPython heap size, e.g. 160k.")
    ] = None,
    once: Annotated[
        bool, typer.Option("--once", help="One check/update cycle and its trial boot, then stop.")
    ] = False,
    https_ca: Annotated[
        Path | None, typer.Option("--https-ca", help="CA certificate (PEM) of an HTTPS host.")
    ] = None,
    board: Annotated[str, typer.Option("--board", help="Board the device claims to be.")] = "esp32",
    max_boots: Annotated[int, typer.Option("--max-boots", help="Stop after this many boots.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="End with a JSON status line.")] = False,
) -> None:
    """Simulate a device: provision a blank state folder, then boot it like a board."""
    if heap is not None and not _HEAP.match(heap):
        raise SimulateError(f"--heap must look like 160k or 2m, got {heap!r}")
    if max_boots < 1:
        raise SimulateError("--max-boots must be at least 1")
    roots = [signing.load_public_key(p) for p in root]
    manager_roots = [signing.load_public_key(p) for p in manager_root or []]
    ca = None
    if https_ca is not None:
        try:
            ca = der_from_pem(https_ca.read_bytes())
        except OSError as exc:
            raise SimulateError(f"cannot read --https-ca {https_ca}: {exc.strerror}") from None
    if provision(
        state,
        web_url=web_url,
        repo=repo,
        roots=roots,
        manager_repo=manager_repo,
        manager_roots=manager_roots,
        board=board,
        https_ca=ca,
    ):
        out.print(f"provisioned a blank device in {state}", highlight=False, soft_wrap=True)
    else:
        # An existing device keeps its own settings, as a board in the field would.
        out.print(
            f"booting the device in {state} (its configuration is kept)",
            highlight=False,
            soft_wrap=True,
        )
    status = simulate(
        state,
        heap=heap,
        once=once,
        max_boots=max_boots,
        on_line=print_line,
        interval_s=1.0,
    )
    if as_json:
        # One line, last: what scripts and CI parse.
        sys.stdout.write(json.dumps(status.as_json(), sort_keys=True) + "\n")
