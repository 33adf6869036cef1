"""`lcm fleet`: the devices' retained statuses over MQTT (`status`), a live dashboard (`serve`)."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from publisher.commands.release_options import Repo
from publisher.console import command_edge, out, print_json
from publisher.errors import PublisherError
from publisher.fleet import broker
from publisher.fleet.view import DeviceStatus, FleetView, follow, settle

PIPED_EVERY_S = 10.0  # `status --watch` to a pipe or file: at most one table this often

app = typer.Typer(
    help="The fleet over MQTT: device statuses and a dashboard.", no_args_is_help=True
)

MqttUrl = Annotated[
    str,
    typer.Option(
        "--mqtt",
        envvar="LCM_MQTT_URL",
        help=f"Broker, mqtt://HOST[:PORT] or mqtts://… (user/password from ${broker.USER_ENV}, "
        f"${broker.PASSWORD_ENV}).",
    ),
]


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(max(seconds, 0))
    return f"{s}s" if s < 120 else f"{s // 60}m" if s < 7200 else f"{s // 3600}h"


def _state(d: DeviceStatus, now: float) -> str:
    words = [d.problem or d.state, "trial" if d.trial else ""]
    if d.stale(now) and d.state != "offline":
        words.append("not seen")
    return " ".join(w for w in words if w)


def table(view: FleetView, width: int) -> Group:
    """One row per device; when the rows cannot fit `width` columns without cutting a
    word (long tags in a pipe of 80), one block of lines per device instead."""
    devices, ro, _ = view.snapshot()
    now = time.time()
    title = f"{view.repo}: {len(devices)} device(s)"
    if ro.tag:
        title += f", release {ro.tag}"
        if ro.halted:
            title += " (roll-out halted)"
        elif ro.share is not None:
            title += f" (roll-out {ro.share} %)"
    rows = []
    for d in devices:
        seen = d.last_seen()
        rows.append(
            [
                d.id,
                d.app or "-",
                d.manager or "(factory)",
                _state(d, now),
                _age(None if seen is None else now - seen),
                " ".join(d.result) or "-",  # the manager's check, the app's
            ]
        )
    # A last error (up to 200 characters) does not fit in a column of 80: it goes
    # under the table, one line per device, wrapped by words like any text.
    errors = [Text(f"{d.id} last error: {d.error}") for d in devices if d.error]
    # What identifies a device is never cut, and the state and the check results wrap
    # between their words, never inside one ("installe"/"d" cannot be read back).
    widths = [
        max(_cell_width(cell, wraps) for cell in [heading, *(r[i] for r in rows)])
        for i, (heading, wraps) in enumerate(_COLUMNS)
    ]
    if sum(widths) + 3 * len(widths) + 1 > width:
        blocks: list[Text] = [Text(title, style="italic")]
        for r, d in zip(rows, devices, strict=True):
            blocks.append(Text(r[0], style="bold"))
            for (heading, _), cell in zip(_COLUMNS[1:], r[1:], strict=True):
                blocks.append(Text(f"  {heading:<11}{cell}"))
            if d.error:
                blocks.append(Text(f"  {'last error':<11}{d.error}"))
        return Group(*blocks)
    t = Table(title=title)
    for (heading, wraps), w in zip(_COLUMNS, widths, strict=True):
        t.add_column(heading, no_wrap=wraps is None, min_width=w)
    for r in rows:
        t.add_row(*r)
    return Group(t, *errors)


# (heading, None when never wrapped, else True: wraps between words)
_COLUMNS = (
    ("device", None),
    ("app", None),
    ("manager", None),
    ("state", True),
    ("last seen", None),
    ("last check", True),
)


def _cell_width(cell: str, wraps: bool | None) -> int:
    """The narrowest a cell may be: whole, or (wrapping) its longest word."""
    return _longest_word([cell]) if wraps else len(cell)


def _longest_word(cells: list[str]) -> int:
    return max((len(word) for cell in cells for word in cell.split()), default=1)


@app.command("status")
@command_edge
def status(
    mqtt: MqttUrl,
    repo: Repo,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    watch: Annotated[bool, typer.Option("--watch", help="Keep showing changes until ^C.")] = False,
) -> None:
    """Show every device of the repo from its retained status: versions, state, last error."""
    client, view = follow(mqtt, repo)
    try:
        settle(view)
        if as_json:
            devices, ro, _ = view.snapshot()
            now = time.time()
            print_json(
                {
                    "repo": repo,
                    "release": ro.__dict__,
                    "devices": [d.as_json(now) for d in devices],
                }
            )
        elif not watch:
            out.print(table(view, out.width), soft_wrap=False)
        if not watch:
            return
        seen = view.snapshot()[2]
        if not out.is_terminal:
            # Piped or logged: one table per change, appended, at most one every
            # PIPED_EVERY_S (a device re-publishing its status non-stop would otherwise
            # write a whole table per message to the log, and fill the disk).
            out.print(table(view, out.width), soft_wrap=False)
            while True:
                changes = view.wait_change(seen, 1.0)
                if changes != seen:
                    seen = changes
                    out.print(table(view, out.width), soft_wrap=False)
                    time.sleep(PIPED_EVERY_S)
        with Live(table(view, out.width), console=out, refresh_per_second=2) as live:
            while True:
                seen = view.wait_change(seen, 1.0)
                live.update(table(view, out.width))
    except KeyboardInterrupt:
        pass
    finally:
        broker.close(client)


@app.command("serve")
@command_edge
def serve(
    mqtt: MqttUrl,
    repo: Repo,
    bind: Annotated[str, typer.Option("--bind", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="0: any free port.")] = 8765,
) -> None:
    """Serve a live web page of the fleet: devices, versions, roll-out progress, silent devices."""
    from publisher.fleet.dashboard import make_server

    client, view = follow(mqtt, repo)
    try:
        try:
            server = make_server(view, bind, port)
        except OSError as exc:
            raise PublisherError(f"cannot listen on {bind}:{port}: {exc}") from None
        out.print(
            f"dashboard: http://{bind}:{server.server_address[1]}/  (^C to stop)", highlight=False
        )
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
    finally:
        broker.close(client)


@app.command("hint")
@command_edge
def hint(
    mqtt: MqttUrl,
    repo: Repo,
    text: Annotated[
        str,
        typer.Argument(help='The hint: "TAG", or "TAG NOTE" (e.g. "v1.2.0 rollout 50").'),
    ],
) -> None:
    """Publish the repo's retained push hint, as `release publish --mqtt` does: devices
    check soon (spread out), and install only what the signed release allows."""
    broker.publish_hint(mqtt, repo, text)
    out.print(f"push hint {text!r} published to {mqtt}", highlight=False)
