"""`lcm device image | flash | install`: put lcm on a board, once, by cable.

Registered on the `lcm device` group in `publisher/commands/device.py`.
Secrets (Wi-Fi and setup passwords) come from environment variables named
on the command line, never from the command line itself.
"""

from __future__ import annotations

import os
import tempfile
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from publisher.console import command_edge, out, print_json
from publisher.device import flash as flashing
from publisher.device import image as img
from publisher.device import reinstall
from publisher.device import settings as device_settings
from publisher.device.firmware import ImageError, get_board, read_firmware
from publisher.fsutil import write_output


class BoardName(StrEnum):
    esp32 = "esp32"
    esp8266 = "esp8266"


class Channel(StrEnum):
    stable = "stable"
    beta = "beta"


BoardOpt = Annotated[BoardName, typer.Option("--board", help="Target board family.")]
RepoOpt = Annotated[str, typer.Option("--repo", help="The app repo OWNER/NAME to follow.")]
RootOpt = Annotated[
    list[Path], typer.Option("--root", help="App repo root public key (.pub); repeatable.")
]
ThresholdOpt = Annotated[
    int, typer.Option("--threshold", min=1, help="App root signatures needed (k of n).")
]
ManagerRepoOpt = Annotated[
    str | None, typer.Option("--manager-repo", help="The manager's own repo OWNER/NAME.")
]
ManagerRootOpt = Annotated[
    list[Path] | None,
    typer.Option("--manager-root", help="Manager repo root public key (.pub); repeatable."),
]
ManagerThresholdOpt = Annotated[
    int, typer.Option("--manager-threshold", min=1, help="Manager root signatures needed.")
]
ChannelOpt = Annotated[Channel, typer.Option("--channel", help="Release channel to follow.")]
WebUrlOpt = Annotated[
    str, typer.Option("--web-url", help="Browser base URL: GitHub, or an lcm host.")
]
WifiSsidOpt = Annotated[
    str | None, typer.Option("--wifi-ssid", help="Home network to join (optional).")
]
WifiPasswordEnvOpt = Annotated[
    str | None,
    typer.Option("--wifi-password-env", help="Name of the env var holding the Wi-Fi password."),
]
SetupPasswordEnvOpt = Annotated[
    str | None,
    typer.Option(
        "--setup-password-env",
        help="Env var holding the setup network's WPA2 password (default: a new random one).",
    ),
]
MqttOpt = Annotated[
    str | None,
    typer.Option(
        "--mqtt",
        help="The fleet's MQTT broker, mqtt://HOST[:PORT] or mqtts://…: push hints and "
        "status (docs/fleet.md).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _env_secret(var: str | None, what: str) -> str | None:
    if var is None:
        return None
    value = os.environ.get(var)
    if value is None:
        raise ImageError(f"environment variable {var} ({what}) is not set")
    return value


def _settings(
    board: str,
    repo: str | None,
    root: list[Path] | None,
    threshold: int,
    manager_repo: str | None,
    manager_root: list[Path] | None,
    manager_threshold: int,
    channel: Channel,
    web_url: str,
    wifi_ssid: str | None,
    wifi_password_env: str | None,
    setup_password_env: str | None,
    mqtt_url: str | None,
) -> device_settings.DeviceSettings:
    if manager_threshold != 1 and not manager_root:
        raise ImageError("--manager-threshold counts --manager-root keys: give them")
    setup_password = _env_secret(setup_password_env, "setup password")
    return device_settings.DeviceSettings(
        board=board,
        repo=repo,
        app_roots=device_settings.load_roots(root, threshold, "app") if root else [],
        app_threshold=threshold,
        manager_repo=manager_repo,
        manager_roots=(
            device_settings.load_roots(manager_root, manager_threshold, "manager")
            if manager_root
            else []
        ),
        manager_threshold=manager_threshold,
        channel=channel.value,
        web_url=web_url,
        wifi_ssid=wifi_ssid,
        wifi_password=_env_secret(wifi_password_env, "Wi-Fi password"),
        setup_password=(
            setup_password
            if setup_password is not None
            else device_settings.generate_setup_password()
        ),
        mqtt_url=mqtt_url,
    )


def _print_setup_network(password: str, mac: bytes | None) -> None:
    out.print(Text.assemble(("setup network", "bold"), " (when the board has no working Wi-Fi):"))
    if mac is not None:
        ssid = device_settings.setup_ssid(mac)
        out.print(f"  name     {ssid}")
    else:
        ssid = None
        out.print("  name     LCM-XXXXXX  (XXXXXX: last 3 bytes of the board's Wi-Fi MAC, hex)")
    out.print(f"  password {password}  (WPA2; stored in the board's config)")
    if ssid is not None:
        out.print("  scan to join:")
        out.print(device_settings.wifi_qr_text(ssid, password), highlight=False)
    else:
        out.print("  add --mac to print a QR code for one board (esptool read-mac shows it)")


@command_edge
def image(
    board: BoardOpt,
    firmware: Annotated[
        Path, typer.Option("--firmware", help="MicroPython .bin from micropython.org/download.")
    ],
    repo: RepoOpt,
    root: RootOpt,
    output: Annotated[Path, typer.Option("-o", "--output", help="Factory image to write.")],
    threshold: ThresholdOpt = 1,
    manager_repo: ManagerRepoOpt = None,
    manager_root: ManagerRootOpt = None,
    manager_threshold: ManagerThresholdOpt = 1,
    channel: ChannelOpt = Channel.stable,
    web_url: WebUrlOpt = device_settings.DEFAULT_WEB_URL,
    wifi_ssid: WifiSsidOpt = None,
    wifi_password_env: WifiPasswordEnvOpt = None,
    setup_password_env: SetupPasswordEnvOpt = None,
    mqtt: MqttOpt = None,
    flash_size: Annotated[
        str, typer.Option("--flash-size", help="The board's flash: 2MB, 4MB, 8MB, 16MB.")
    ] = "4MB",
    mac: Annotated[
        str | None, typer.Option("--mac", help="A board's MAC, to print its setup QR code.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Build one factory image: MicroPython + lcm + config + pinned keys, for esptool."""
    mac_bytes = device_settings.parse_mac(mac) if mac else None
    settings = _settings(
        board.value,
        repo,
        root,
        threshold,
        manager_repo,
        manager_root,
        manager_threshold,
        channel,
        web_url,
        wifi_ssid,
        wifi_password_env,
        setup_password_env,
        mqtt,
    )
    factory = img.build_factory_image(board.value, read_firmware(firmware), flash_size, settings)
    # The image holds the Wi-Fi and setup passwords: 0600.
    write_output(output, factory.data, [firmware, *(root or []), *(manager_root or [])], 0o600)
    fs = factory.firmware.filesystem
    if as_json:
        print_json(
            {
                "output": str(output),
                "board": board.value,
                "flash_offset": factory.flash_offset,
                "filesystem": {"offset": fs.offset, "size": fs.size},
                "files": sorted(factory.files),
                "frozen_manager": factory.firmware.frozen_manager,
                "setup_ssid": device_settings.setup_ssid(mac_bytes) if mac_bytes else "LCM-XXXXXX",
                "setup_password": settings.setup_password,
            }
        )
        return
    used = sum(len(d) for d in factory.files.values())
    out.print(f"firmware   {firmware} ({factory.firmware.size} bytes, checked by esptool)")
    if factory.firmware.frozen_manager:
        out.print("manager    frozen in the firmware (its code runs from flash)")
    else:
        out.print(f"manager    .mpy files in {img.MANAGER_SLOT} (loaded into the heap)")
    if board.value == "esp8266":
        for line in img.esp8266_notes(settings.web_url):
            out.print(line)
    out.print(
        f"filesystem LittleFS at {fs.offset:#x}, {fs.size // 1024} KiB: "
        f"{len(factory.files)} files, {used // 1024} KiB"
    )
    out.print(f"wrote      {output} ({len(factory.data)} bytes, mode 0600)")
    out.print(f"flash it   lcm device flash --port PORT --board {board.value} {output}")
    out.print(f"           (esptool write-flash at {factory.flash_offset:#x})")
    _print_setup_network(settings.setup_password, mac_bytes)


@command_edge
def flash(
    image_file: Annotated[Path, typer.Argument(help="Factory image from lcm device image.")],
    port: Annotated[str, typer.Option("--port", help="Serial port, e.g. /dev/ttyUSB0.")],
    board: BoardOpt,
    baud: Annotated[int, typer.Option("--baud", min=9600, help="Serial speed.")] = (
        flashing.DEFAULT_BAUD
    ),
    connect_attempts: Annotated[
        int, typer.Option("--connect-attempts", min=1, help="Tries to reach the bootloader.")
    ] = 7,
) -> None:
    """Write a factory image with esptool at the board's firmware offset."""
    b = get_board(board.value)
    flashed = flashing.flash(
        board.value,
        port,
        image_file,
        baud,
        connect_attempts,
        # Said once the image passed its checks: a wrong file is refused without it.
        on_start=lambda: out.print(
            f"flashing {image_file} to {board.value} on {port} at {b.firmware_offset:#x}"
        ),
    )
    out.print("done: the board reboots into lcm")
    password = flashed.config.get("setup_password")
    if isinstance(password, str):
        _print_setup_network(password, flashed.mac)


@command_edge
def install(
    port: Annotated[str, typer.Option("--port", help="Serial port of a MicroPython board.")],
    board: Annotated[
        BoardName | None, typer.Option("--board", help="Board family (default: ask the board).")
    ] = None,
    repo: Annotated[
        str | None, typer.Option("--repo", help="App repo OWNER/NAME (default: setup page).")
    ] = None,
    root: Annotated[
        list[Path] | None, typer.Option("--root", help="App repo root public key; repeatable.")
    ] = None,
    threshold: ThresholdOpt = 1,
    manager_repo: ManagerRepoOpt = None,
    manager_root: ManagerRootOpt = None,
    manager_threshold: ManagerThresholdOpt = 1,
    channel: ChannelOpt = Channel.stable,
    web_url: WebUrlOpt = device_settings.DEFAULT_WEB_URL,
    wifi_ssid: WifiSsidOpt = None,
    wifi_password_env: WifiPasswordEnvOpt = None,
    setup_password_env: SetupPasswordEnvOpt = None,
    mqtt: MqttOpt = None,
) -> None:
    """Copy lcm (the same files as a factory image) onto a board already running MicroPython."""
    settings = _settings(
        board.value if board else "",
        repo,
        root,
        threshold,
        manager_repo,
        manager_root,
        manager_threshold,
        channel,
        web_url,
        wifi_ssid,
        wifi_password_env,
        setup_password_env,
        mqtt,
    )
    device_settings.check_settings(settings, require_repo=False)
    if not board:
        settings.board = flashing.detect_board(port)
        out.print(f"the board on {port} runs MicroPython for {settings.board}")
    # An ESP8266 runs the manager only frozen into its firmware (docs/hobbyist.md).
    frozen = settings.board == "esp8266" and flashing.has_frozen_manager(port)
    img.check_manager_fits(settings.board, frozen)
    files = img.device_files(settings, frozen_manager=frozen)
    # A board that runs lcm: its older manager's files go, and it runs the one copied.
    plan = reinstall.plan(flashing.read_files(port, reinstall.BOOT_FILES))
    files.update(plan.files)
    with tempfile.TemporaryDirectory(prefix="lcm-install-") as staging:
        out.print(f"copying {len(files)} files to the board on {port} (mpremote)")
        flashing.install(port, files, Path(staging), remove=plan.remove)
    if plan.before:
        out.print(f"{plan.before}; it now runs the manager copied to /lcm/m0")
    out.print("done: the board was reset and runs lcm")
    if settings.repo is None:
        out.print("no --repo: pick the app repo on the setup page")
    _print_setup_network(settings.setup_password, None)
