"""Factory images: stock MicroPython firmware + a LittleFS filesystem holding lcm.

`lcm device image` validates the firmware (`firmware.py`), builds the
filesystem the board's MicroPython will mount at `/` (same block size, block
count and littlefs settings as the port) holding the files of
`device_files`, and merges both with esptool's merge-bin into one file that
is flashed at the firmware's offset. The same files make the mip package.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from publisher.device.firmware import (
    BLOCK_SIZE,
    Board,
    FirmwareInfo,
    ImageError,
    KiB,
    MiB,
    Region,
    check_firmware,
    factory_filesystem,
    get_board,
    parse_flash_size,
)
from publisher.device.manager import LCM_SHIM_SOURCE, manager_files
from publisher.device.settings import CONFIG_PATH, DeviceSettings, check_settings, config_json
from publisher.micropython import DEVICE_PACKAGES, REPO_ROOT, build_mpy, source_files

# littlefs settings of MicroPython's VfsLfs2 defaults (extmod/vfs_lfsx.c):
# readsize=32, progsize=32, lookahead=32, cache = min(block, 4 * max(read, prog)).
LFS_READ_SIZE = 32
LFS_PROG_SIZE = 32
LFS_LOOKAHEAD = 32
LFS_CACHE_SIZE = 128
LFS_BLOCK_CYCLES = 100
# On-disk version 2.0: readable by every littlefs v2 MicroPython has shipped.
LFS_DISK_VERSION = 0x00020000

MAIN_SHIM = REPO_ROOT / "lcm_device" / "main.py"
# What /main.py runs at every boot but the app boot after an update boot (it picks and
# starts the manager slot): never updated over the air either.
PICK = REPO_ROOT / "lcm_device" / "pick.py"
PICK_PATH = "/lcm/pick.py"
MANAGER_SLOT = "/lcm/m0"


@dataclass(frozen=True)
class FactoryImage:
    data: bytes
    firmware: FirmwareInfo
    files: dict[str, bytes]
    settings: DeviceSettings

    @property
    def flash_offset(self) -> int:
        return self.firmware.board.firmware_offset


# ---------------------------------------------------------------- mip package


def mip_package(root: Path = REPO_ROOT, version: str = "0.1.0") -> dict[str, Any]:
    """The repo's package.json for mip: the lcm layout, installed with target="/".

    Sources are relative URLs (mip resolves them against package.json's own
    URL), so `mip.install("github:OWNER/lcm", target="/")` works for any fork.
    """
    urls: list[list[str]] = []
    if (root / "lcm_device" / "main.py").is_file():
        urls.append(["main.py", "lcm_device/main.py"])
        urls.append([PICK_PATH.lstrip("/"), "lcm_device/pick.py"])
    slot = MANAGER_SLOT.lstrip("/")
    for rel in source_files(DEVICE_PACKAGES, root):
        # The app shim lives at the slot's root, where apps `import lcm` from.
        dest = "lcm.py" if rel.as_posix() == "lcm_device/lcm.py" else rel.as_posix()
        urls.append([f"{slot}/{dest}", rel.as_posix()])
    return {"urls": urls, "deps": [], "version": version}


def mip_package_text(root: Path = REPO_ROOT) -> str:
    """package.json as committed: one file per line, so diffs show what moved."""
    pkg = mip_package(root)
    lines = ",\n".join("    " + json.dumps(u) for u in pkg["urls"])
    return (
        '{\n  "urls": [\n' + lines + '\n  ],\n  "deps": [],\n'
        f'  "version": {json.dumps(pkg["version"])}\n}}\n'
    )


# ---------------------------------------------------------------- filesystem


def device_files(
    settings: DeviceSettings, main_shim: Path | None = None, frozen_manager: bool = False
) -> dict[str, bytes]:
    """Every file the device starts with: path on the device -> bytes.

    With `frozen_manager` the firmware holds the manager: the slot holds only the
    `lcm` shim apps import, and the boot shim's imports fall through to the frozen
    modules (code in flash). The shim must be there: without it `import lcm`
    would find the /lcm data folder (on sys.path as "") before the frozen module.
    """
    main_shim = main_shim or MAIN_SHIM
    try:
        shim = main_shim.read_bytes()
    except OSError as exc:
        raise ImageError(f"cannot read the boot shim {main_shim}: {exc.strerror}") from None
    files = {"/main.py": shim, PICK_PATH: PICK.read_bytes()}
    if frozen_manager:
        files[f"{MANAGER_SLOT}/lcm.py"] = LCM_SHIM_SOURCE.read_bytes()
    else:
        with tempfile.TemporaryDirectory(prefix="lcm-mpy-") as tmp:
            build = build_mpy(Path(tmp), DEVICE_PACKAGES)
            # The slot a manager release installs: .mpy modules and the `lcm` shim apps import.
            for rel, data in manager_files(build).items():
                files[f"{MANAGER_SLOT}/{rel}"] = data
    files[CONFIG_PATH] = config_json(settings)
    return files


def check_manager_fits(board_name: str, frozen_manager: bool) -> None:
    """Refuse to put the manager as .mpy files on an ESP8266.

    With the manager frozen, an install needs about 32 KB of heap on a 32-bit board
    (the ROM model's data heap plus the frozen modules' RAM objects; an ESP8266 has
    about 30 KB free), and much more with its .mpy bytecode loaded into the heap
    (docs/device.md, "Memory"): such a board could never run the manager.
    """
    if board_name == "esp8266" and not frozen_manager:
        raise ImageError(
            "this ESP8266 firmware does not have the lcm manager frozen in, and an "
            "ESP8266's heap (about 30 KB free) cannot hold it loaded from .mpy files "
            "(about 72 KB): build MicroPython with FROZEN_MANIFEST including lcm's "
            "manifest.py (docs/hobbyist.md) and pass that firmware"
        )


def esp8266_notes(web_url: str) -> list[str]:
    """What fits an ESP8266, said when its image is built (docs/hobbyist.md)."""
    notes = [
        "updates    plain HTTP from a LAN mirror or static host (lcm host --mirror, "
        "lcm release export); the signatures are the defence",
    ]
    if web_url.startswith("https://"):
        notes.append(
            f"warning    --web-url {web_url} is HTTPS: an ESP8266's TLS (axTLS) allocates "
            "from its ~30 KB heap, an update over HTTPS does not fit; use an http:// mirror"
        )
    return notes


def new_littlefs(region: Region, buffer: bytearray | None = None) -> Any:
    """A littlefs-python filesystem with MicroPython's VfsLfs2 settings (not mounted)."""
    from littlefs import LittleFS, UserContext

    context = UserContext(buffer=buffer) if buffer is not None else None
    return LittleFS(
        context=context,
        mount=False,
        block_size=BLOCK_SIZE,
        block_count=region.block_count,
        read_size=LFS_READ_SIZE,
        prog_size=LFS_PROG_SIZE,
        lookahead_size=LFS_LOOKAHEAD,
        cache_size=LFS_CACHE_SIZE,
        block_cycles=LFS_BLOCK_CYCLES,
        disk_version=LFS_DISK_VERSION,
    )


def build_filesystem(files: dict[str, bytes], region: Region) -> bytes:
    """A LittleFS image of exactly `region.size` bytes holding `files`."""
    from littlefs import LittleFSError

    total = sum(len(d) for d in files.values())
    capacity = region.block_count * BLOCK_SIZE
    fs = new_littlefs(region)
    fs.format()
    fs.mount()
    try:
        for path, data in files.items():
            parent = path.rsplit("/", 1)[0]
            if parent:
                fs.makedirs(parent, exist_ok=True)
            with fs.open(path, "wb") as f:
                f.write(data)
        fs.unmount()
    except LittleFSError as exc:
        raise ImageError(
            f"the files ({total} bytes in {len(files)} files) do not fit in the "
            f"{capacity // KiB} KiB filesystem at {region.offset:#x} ({exc})"
        ) from None
    image = bytes(fs.context.buffer)
    assert len(image) == region.size - region.size % BLOCK_SIZE
    return image


# ---------------------------------------------------------------- reading an image back

MAX_CONFIG_SIZE = 16 * KiB


def factory_config(board: Board, data: bytes) -> dict[str, Any]:
    """The /lcm/state/config.json inside a factory image; ImageError if it has none."""
    from littlefs import LittleFSError

    region = factory_filesystem(board, data)
    start = region.offset - board.firmware_offset
    chunk = data[start : start + region.size]
    if region.block_count < 2 or len(chunk) < region.size:
        raise ImageError(
            f"the image has no lcm filesystem at {region.offset:#x}: build it with lcm device image"
        )
    fs = new_littlefs(region, bytearray(chunk))
    try:
        fs.mount()
        if fs.stat(CONFIG_PATH).size > MAX_CONFIG_SIZE:
            raise ImageError(f"{CONFIG_PATH} in the image is larger than {MAX_CONFIG_SIZE} bytes")
        with fs.open(CONFIG_PATH, "rb") as f:
            cfg = json.loads(f.read())
    except (LittleFSError, ValueError) as exc:
        raise ImageError(
            f"the image has no lcm filesystem at {region.offset:#x} ({exc}): "
            "build it with lcm device image"
        ) from None
    if not isinstance(cfg, dict) or cfg.get("board") != board.name:
        raise ImageError(f"the image's config is not for {board.name}")
    return cfg


# ---------------------------------------------------------------- merge


def merge(info: FirmwareInfo, firmware: bytes, filesystem: bytes) -> bytes:
    """esptool merge-bin: firmware at its offset, filesystem at its region, one file."""
    from esptool.cmds import merge_bin
    from esptool.logger import log

    base = info.board.firmware_offset
    log.set_verbosity("silent")  # esptool narrates; the command prints its own summary
    try:
        merged = merge_bin(
            [(base, firmware), (info.filesystem.offset, filesystem)],
            chip=info.board.chip,
            output=None,
            flash_size=f"{info.flash_size // MiB}MB",
            target_offset=base,
        )
    except Exception as exc:  # esptool's FatalError
        raise ImageError(f"esptool merge-bin failed: {exc}") from None
    finally:
        log.set_verbosity("auto")
    assert isinstance(merged, bytes)
    return merged


def build_factory_image(
    board_name: str,
    firmware: bytes,
    flash_size_text: str,
    settings: DeviceSettings,
    main_shim: Path | None = None,
) -> FactoryImage:
    """Validate everything, then build and merge. Nothing is written here."""
    board = get_board(board_name)
    flash_size = parse_flash_size(board, flash_size_text)
    settings.board = board.name
    check_settings(settings)
    info = check_firmware(board, firmware, flash_size)
    check_manager_fits(board.name, info.frozen_manager)
    files = device_files(settings, main_shim, info.frozen_manager)
    fs_image = build_filesystem(files, info.filesystem)
    return FactoryImage(merge(info, firmware, fs_image), info, files, settings)
