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


def table(view: FleetView) -> Group:
    devices, ro, _ = view.snapshot()
    now = time.time()
    title = f"{view.repo}: {len(devices)} device(s)"
    if ro.tag:
        title += f", release {ro.tag}"
        if ro.halted:
            title += " (roll-out halted)"
        elif ro.share is not None:
            title += f" (roll-out {ro.share} %)"
    t = Table(title=title)
    # What identifies a device is never cut (a pipe or a narrow terminal is 80 columns);
    # the state and the check results wrap between their words, never inside one
    # ("installe"/"d" cannot be read back): each is as wide as its longest word. A last
    # error (up to 200 characters) does not fit in a column of 80: it goes under the
    # table, one line per device, wrapped by words like any text.
    states = [_state(d, now) for d in devices]
    results = [" ".join(d.result) or "-" for d in devices]  # the manager's, the app's
    t.add_column("device", no_wrap=True, min_width=12)
    t.add_column("app", no_wrap=True)
    t.add_column("manager", no_wrap=True)
    t.add_column("state", min_width=_longest_word(states))
    t.add_column("last seen", no_wrap=True)
    t.add_column("last check", min_width=_longest_word(results))
    for d, state, result in zip(devices, states, results, strict=True):
        seen = d.last_seen()
        t.add_row(
            d.id,
            d.app or "-",
            d.manager or "(factory)",
            state,
            _age(None if seen is None else now - seen),
            result,
        )
    # Printed with soft_wrap=False: wrapped at the width like the table, not left to a
    # terminal (a pipe has none).
    errors = [Text(f"{d.id} last error: {d.error}") for d in devices if d.error]
    return Group(t, *errors)


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
            out.print(table(view), soft_wrap=False)
        if not watch:
            return
        seen = view.snapshot()[2]
        if not out.is_terminal:
            # Piped or logged: one table per change, appended, at most one every
            # PIPED_EVERY_S (a device re-publishing its status non-stop would otherwise
            # write a whole table per message to the log, and fill the disk).
            out.print(table(view), soft_wrap=False)
            while True:
                changes = view.wait_change(seen, 1.0)
                if changes != seen:
                    seen = changes
                    out.print(table(view), soft_wrap=False)
                    time.sleep(PIPED_EVERY_S)
        with Live(table(view), console=out, refresh_per_second=2) as live:
            while True:
                seen = view.wait_change(seen, 1.0)
                live.update(table(view))
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
