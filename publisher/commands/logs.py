"""`lcm logs`: print devices' UDP log lines live, or the flash log ring of a simulated
device (`--state`) or of a board on a serial port (`--device`, through mpremote).

The line and ring formats are `cert_sector.logline`'s (shared with the device,
which writes them); lines are parsed here. Everything a device sends is untrusted text:
control characters are escaped before they reach the terminal.
"""

from __future__ import annotations

import json
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from cert_sector import logline
from publisher.console import command_edge, err
from publisher.device import flash as flashing
from publisher.errors import PublisherError
from publisher.printable import printable

# Longest datagram read; device lines are far shorter (see cert_sector.logline).
MAX_DATAGRAM = 2048


class LogsError(PublisherError):
    """`lcm logs` cannot listen or cannot read a ring."""


def parse_line(line: str) -> tuple[str, int, str, str] | None:
    """(device, seq, time, text) of a line in the `cert_sector.logline` format, else None."""
    parts = line.split(" ", 3)
    if len(parts) < 3 or not parts[0] or not (parts[1].isascii() and parts[1].isdigit()):
        return None
    return parts[0], int(parts[1]), parts[2], parts[3] if len(parts) > 3 else ""


def record(line: str, received: float | None, source: str) -> dict[str, Any]:
    """One log line as a dict; a line that is not in the device format keeps its raw text.

    Every record has the same keys, whatever the line came from (a script reads them
    alike): `received` is the host's receive time of a UDP datagram, null for a line
    read from a ring; `source` is the sender HOST:PORT, the --state folder or the
    --device port."""
    parsed = parse_line(line)
    rec: dict[str, Any] = {
        "device": None,
        "sequence": None,
        "time": None,
        "uptime": None,
        "text": printable(line),
        "received": None if received is None else logline.iso_time(received),
        "source": printable(source),
    }
    if parsed is not None:
        device, seq, when, text = parsed
        rec.update(device=printable(device), sequence=seq, text=printable(text))
        if when.startswith("+"):
            rec["uptime"] = printable(when)
        else:
            rec["time"] = printable(when)
    return rec


def render(rec: dict[str, Any]) -> str:
    """`TIME DEVICE #SEQ TEXT`; when the device has no clock, the host's receive time
    stands in and the device's uptime follows it."""
    when = rec["time"] or rec["received"]
    if when is None:
        when = rec["uptime"] or "-"
    elif rec["uptime"]:
        when += " (up " + rec["uptime"][1:] + ")"
    if rec["device"] is None:
        return f"{when} ? [{rec['source']}] {rec['text']}"
    return f"{when} {rec['device']} #{rec['sequence']} {rec['text']}"


def emit(rec: dict[str, Any], as_json: bool) -> None:
    sys.stdout.write((json.dumps(rec, sort_keys=True) if as_json else render(rec)) + "\n")
    sys.stdout.flush()


def print_ring(state: Path, count: int, as_json: bool) -> None:
    ring = state / logline.RING.lstrip("/")
    old = state / logline.RING_OLD.lstrip("/")
    if not state.exists():
        raise LogsError(f"--state {state}: no such folder")
    if not state.is_dir():
        raise LogsError(f"--state {state} is a file: give a simulated device's folder")
    if not ring.exists() and not old.exists():
        raise LogsError(f"--state {state}: no log ring at {ring}")
    lines = newest(list(logline.read_ring(str(state))), count)
    for line in lines:
        emit(record(line, None, str(state)), as_json)
    if not lines:
        err.print(f"no log line could be read from the ring in {state}", highlight=False)


def newest(lines: list[str], count: int) -> list[str]:
    """The last `count` lines of a ring (all with 0)."""
    return lines[-count:] if count else lines


def print_board_ring(port: str, count: int, as_json: bool) -> None:
    """The ring of the MicroPython board on `port`, read through mpremote; a board that has
    logged nothing yet has no ring, which is said, not refused."""
    halves = flashing.read_files(port, [logline.RING_OLD, logline.RING])
    lines = newest(board_ring_lines(halves), count)
    for line in lines:
        emit(record(line, None, port), as_json)
    if not lines:
        err.print(f"no log lines are stored on the board on {port}", highlight=False)
    err.print(
        f"the board on {port} stopped its program to answer: reset it to run it again",
        highlight=False,
    )


def board_ring_lines(halves: dict[str, bytes | None]) -> list[str]:
    """The lines of a ring read off a board, parsed by the device's own reader (read_ring):
    the halves are laid out in a scratch folder as on the board's flash. (A bytes reader
    in cert_sector.logline would be one more function object in a board's RAM whenever
    the log is loaded, the update cycle included: docs/device.md, bar 2.)"""
    with tempfile.TemporaryDirectory(prefix="lcm-logs-") as root:
        present = {path: data for path, data in halves.items() if data is not None}
        flashing.stage_files(present, Path(root))
        return list(logline.read_ring(root))


def listen(bind: str, port: int) -> socket.socket:
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # No SO_REUSEADDR: a second listener on the port would get some of the unicast
        # lines and this one the rest, silently. It is refused instead.
        sock.bind((bind, port))
    except OSError as exc:
        raise LogsError(f"cannot listen on UDP {bind}:{port}: {exc.strerror or exc}") from None
    return sock


def follow(sock: socket.socket, count: int, as_json: bool) -> None:
    seen = 0
    while count == 0 or seen < count:
        data, (host, port) = sock.recvfrom(MAX_DATAGRAM)
        received = time.time()
        for line in data.decode("utf-8", "replace").splitlines():
            if line.strip():
                emit(record(line, received, f"{host}:{port}"), as_json)
                seen += 1


@command_edge
def logs(
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="UDP port (0: any free port).")
    ] = logline.DEFAULT_PORT,
    bind: Annotated[str, typer.Option("--bind", help="Address to listen on.")] = "0.0.0.0",
    state: Annotated[
        Path | None,
        typer.Option("--state", help="Print the flash log ring of a simulated device and exit."),
    ] = None,
    device: Annotated[
        str | None,
        typer.Option(
            "--device",
            metavar="PORT",
            help="Print the flash log ring of a MicroPython board on this serial port "
            "(e.g. /dev/ttyUSB0) and exit; stops the board's program.",
        ),
    ] = None,
    count: Annotated[
        int,
        typer.Option(
            "--count",
            min=0,
            help="Stop after this many lines (0: run until ^C); with --state or --device: "
            "the newest this many.",
        ),
    ] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Print device log lines live (UDP, as LCM's port 45678) with device id and time, or
    the flash log ring of a simulated device (--state) or a board (--device)."""
    if state is not None and device is not None:
        raise LogsError("give --state or --device, not both")
    if device is not None:
        print_board_ring(device, count, as_json)
        return
    if state is not None:
        print_ring(state, count, as_json)
        return
    sock = listen(bind, port)
    host, actual = sock.getsockname()[:2]
    err.print(f"listening on UDP {host}:{actual} (Ctrl-C to stop)", highlight=False)
    try:
        follow(sock, count, as_json)
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
