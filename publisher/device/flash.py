"""Put lcm on a board: flash a factory image (esptool), or copy files onto MicroPython (mpremote);
read files back from MicroPython (`lcm logs --device`).

All talk to the board over its serial port. A port that does not exist, or
where no board answers, ends in a `FlashError` naming the port; the board's
flash is untouched until esptool has connected and identified the chip.
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from publisher.device.firmware import (
    Board,
    ImageError,
    MiB,
    esp32_family_chip_id,
    get_board,
)
from publisher.device.image import factory_config
from publisher.errors import PublisherError

# The largest flash a supported board has; a factory image is never longer.
MAX_FACTORY_IMAGE = 16 * MiB
DEFAULT_BAUD = 460800
# Enough of esptool's output to find the MAC and the reason of a failure.
ESPTOOL_OUTPUT_KEPT = 64 * 1024
_MAC_LINE = re.compile(r"^MAC:\s*((?:[0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2})", re.MULTILINE)
# mpremote copies ~200 KiB of .mpy over a 115200 baud REPL in well under this.
INSTALL_TIMEOUT_S = 600
DETECT_TIMEOUT_S = 30
# Bytes of a file the board reads and prints (as hex) at a time: a small buffer on its heap.
READ_CHUNK = 192


class FlashError(PublisherError):
    """The board could not be flashed or reached."""


def check_factory_image(board: Board, path: Path) -> int:
    """Refuse a file that is not a factory image for `board`; returns its size."""
    try:
        size = path.stat().st_size
        if size > MAX_FACTORY_IMAGE:
            raise FlashError(f"{path} is {size} bytes, larger than any {board.name} flash")
        with path.open("rb") as f:
            head = f.read(24)
    except OSError as exc:
        raise FlashError(f"cannot read {path}: {exc.strerror}") from None
    if not head or head[0] != 0xE9:
        raise FlashError(f"{path} is not an ESP firmware image (build it with lcm device image)")
    chip_id = esp32_family_chip_id(head)
    if board.name == "esp32" and chip_id != 0:
        raise FlashError(f"{path} is not an esp32 image (esp8266 or another ESP32 variant)")
    if board.name == "esp8266" and chip_id is not None:
        raise FlashError(f"{path} is an ESP32-family image, not an esp8266 one")
    return size


def esptool_flash_args(
    board: Board, port: str, path: Path, baud: int, connect_attempts: int
) -> list[str]:
    """esptool's command line: write the factory image where MicroPython's download goes."""
    return [
        "--chip",
        board.chip,
        "--port",
        port,
        "--baud",
        str(baud),
        "--connect-attempts",
        str(connect_attempts),
        "write-flash",
        f"{board.firmware_offset:#x}",
        str(path),
    ]


@dataclass(frozen=True)
class Flashed:
    mac: bytes | None  # as esptool read it while connected
    config: dict[str, Any]  # the image's /lcm/state/config.json


def _echo_stdout(chunk: bytes) -> None:
    sys.stdout.buffer.write(chunk)
    sys.stdout.flush()


def flash(
    board_name: str,
    port: str,
    path: Path,
    baud: int = DEFAULT_BAUD,
    connect_attempts: int = 7,
    echo: Callable[[bytes], None] = _echo_stdout,
    on_start: Callable[[], None] | None = None,
) -> Flashed:
    """esptool write-flash, its progress echoed as it runs; errors name the port.

    esptool runs as a child process so its output (progress, the MAC it read)
    can be shown and parsed at once. `on_start` is called once the image passed its
    checks, just before esptool starts (a command's "flashing ..." line).
    """
    try:
        board = get_board(board_name)
    except ImageError as exc:
        raise FlashError(str(exc)) from None
    check_factory_image(board, path)
    try:
        config = factory_config(board, path.read_bytes())
    except ImageError as exc:
        raise FlashError(f"{path}: {exc}") from None
    if on_start is not None:
        on_start()
    args = [sys.executable, "-m", "esptool"]
    args += esptool_flash_args(board, port, path, baud, connect_attempts)
    tail = bytearray()
    with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
        assert proc.stdout is not None
        while chunk := os.read(proc.stdout.fileno(), 4096):
            echo(chunk)
            tail += chunk
            del tail[:-ESPTOOL_OUTPUT_KEPT]
        code = proc.wait()
    text = tail.decode("utf-8", "replace")
    if code != 0:
        raise FlashError(f"no {board.name} answered on {port}: {_esptool_reason(text)}")
    return Flashed(mac_from_esptool_output(text), config)


def mac_from_esptool_output(text: str) -> bytes | None:
    """The MAC esptool prints after connecting (`MAC:` and six hex bytes)."""
    found = _MAC_LINE.search(text)
    return bytes.fromhex(found.group(1).replace(":", "")) if found else None


def _esptool_reason(text: str) -> str:
    """esptool's own one-line reason, from 'A fatal error occurred: ...'."""
    found = re.search(r"A fatal error occurred:\s*(.+)", text)
    if found:
        return found.group(1).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "esptool failed"


# ---------------------------------------------------------------- mpremote


def stage_files(files: dict[str, bytes], staging: Path) -> None:
    """Write the device's files under `staging`, laid out as on the board."""
    for device_path, data in files.items():
        local = staging / device_path.lstrip("/")
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(data)


# Run on the board before the copy: what the copy replaces whole is removed (files and
# folders; one that is not there is fine), then each top-level folder exists (one that
# already does is kept, with what it holds); any other failure (a full flash) stops the
# install.
_PREPARE = """
import errno, os
def rm(p):
    try:
        os.remove(p)
        return
    except OSError as e:
        if e.args[0] == errno.ENOENT:
            return
    for entry in os.ilistdir(p):
        rm(p + "/" + entry[0])
    os.rmdir(p)
for p in %r:
    rm(p)
for p in %r:
    try:
        os.mkdir(p)
    except OSError as e:
        if e.args[0] != errno.EEXIST:
            raise
"""


def mpremote_install_args(
    port: str, paths: Iterable[str], reset: bool = True, remove: Sequence[str] = ()
) -> list[str]:
    """One mpremote session: remove the board's `remove` paths (files or folders, whose
    contents the copy replaces whole), copy the staged files (their board `paths`) to
    the board's root, then reset.

    Run with the staging folder as the working directory. Every destination is
    absolute: the board's current folder is not `/` on a board that runs lcm
    (the boot enters the app's slot, /lcm/appN, and Ctrl-C leaves it
    there), and a relative `:lcm` would land in the slot. An `os.chdir('/')`
    first would fix only that, and only as long as nothing in the session moves
    it again; an absolute path does not depend on the session's state.

    A folder is never the target of `cp -r lcm :/lcm`: mpremote copies a folder
    *into* a destination that exists (`/lcm/lcm/...` on a board that has
    `/lcm`, as a reinstall does), *as* one that does not. So each top-level
    folder is made first (exec; kept if it exists), then what the staging holds
    in it is copied into it (`cp -r lcm/m0 lcm/state :/lcm`): always the
    "into" case, `/lcm/m0/...` whatever the board held. Files are overwritten.
    `resume` skips mpremote's soft reset on connect: its Ctrl-C already stops
    the running program, and a board's soft reset is not needed to copy files
    (the unix port, which the tests use, has none).
    """
    folders: dict[str, set[str]] = {}
    files: set[str] = set()
    for path in paths:
        top, _, rest = path.strip("/").partition("/")
        if rest:
            folders.setdefault(top, set()).add(rest.split("/", 1)[0])
        else:
            files.add(top)
    args = [sys.executable, "-m", "mpremote", "connect", port, "resume"]
    if folders or remove:
        made = tuple("/" + top for top in sorted(folders))
        args += ["exec", _PREPARE % (tuple(remove), made), "+"]
    for top in sorted(folders):
        inside = [f"{top}/{name}" for name in sorted(folders[top])]
        args += ["fs", "cp", "-r", *inside, f":/{top}", "+"]
    for name in sorted(files):
        args += ["fs", "cp", name, f":/{name}", "+"]
    return [*args, "reset"] if reset else args[:-1]


def _ask_board(port: str, code: str) -> str:
    """Run `code` on the MicroPython board on `port` (mpremote exec); returns its output."""
    args = [sys.executable, "-m", "mpremote", "connect", port, "resume", "exec", code]
    return _mpremote(
        port,
        args,
        None,
        DETECT_TIMEOUT_S,
        f"no MicroPython board answered on {port} in {DETECT_TIMEOUT_S} s",
        f"no MicroPython board answered on {port}",
    )


def _mpremote(
    port: str, args: list[str], cwd: Path | None, timeout: int, stalled: str, failed: str
) -> str:
    """Run mpremote; its output, or FlashError: `stalled` past `timeout` seconds, else
    `failed` with mpremote's last line (its reason)."""
    try:
        import mpremote  # noqa: F401  (it runs as a child process; a missing one is named)
    except ImportError:
        raise FlashError(
            f"cannot reach the board on {port}: mpremote is not installed (pip install mpremote)"
        ) from None
    if port.startswith("/") and not os.path.exists(port):
        # mpremote's own words ("failed to access ... it may be in use by another
        # program") would send the user looking for another program.
        raise FlashError(
            f"no serial port {port}: is the board plugged in? (ls /dev/ttyUSB* /dev/ttyACM*)"
        )
    try:
        proc = subprocess.run(
            args, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise FlashError(stalled) from None
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        reason = detail[-1] if detail else f"mpremote exited {proc.returncode}"
        raise FlashError(f"{failed}: {reason}")
    return proc.stdout


def detect_board(port: str) -> str:
    """Ask the MicroPython on `port` which port it is (`sys.platform`): esp32 or esp8266."""
    found = re.search(
        r"platform=(\w+)", _ask_board(port, "import sys; print('platform=' + sys.platform)")
    )
    if not found:
        raise FlashError(f"no MicroPython board answered on {port}: no platform in its answer")
    platform = found.group(1)
    if platform not in ("esp32", "esp8266"):
        raise FlashError(
            f"the board on {port} runs MicroPython for {platform!r}, not esp32 or esp8266"
        )
    return platform


def has_frozen_manager(port: str) -> bool:
    """Whether the firmware on `port` has lcm frozen in (`help('modules')` lists frozen ones)."""
    return "lcm_device/boot" in _ask_board(port, "help('modules')")


# Run on the board: each file's bytes as hex lines, after `lcm-file INDEX ERRNO` (0: opened;
# a read that fails part way says so again). A file's errors are printed, not raised, so
# that a failed mpremote run means the board did not answer.
_READ_FILES = """
import binascii
for i, p in enumerate(%r):
    try:
        f = open(p, 'rb')
    except OSError as e:
        print('lcm-file', i, e.args[0])
        continue
    print('lcm-file', i, 0)
    try:
        while True:
            b = f.read(%d)
            if not b:
                break
            print('lcm-hex', binascii.hexlify(b).decode())
    except OSError as e:
        print('lcm-file', i, e.args[0])
    f.close()
print('lcm-end')
"""


def read_files(port: str, paths: Sequence[str]) -> dict[str, bytes | None]:
    """The bytes of each of `paths` (absolute, on the board's filesystem) on the MicroPython
    board on `port`, None for a file that does not exist (mpremote exec), or whose folder
    is a file.

    mpremote stops the board's running program (Ctrl-C) to ask; the board is left at its
    REPL. Files are read in small pieces: the board needs no buffer the size of a file.
    """
    answer = _ask_board(port, _READ_FILES % (tuple(paths), READ_CHUNK))
    try:
        found = _files_in_answer(answer, paths)
    except (ValueError, IndexError):
        found = None
    if found is None:
        raise FlashError(f"the board on {port} gave no complete answer for {', '.join(paths)}")
    for path, (code, _) in found.items():
        if code not in (0, errno.ENOENT, errno.ENOTDIR):
            raise FlashError(f"the board on {port} cannot read {path}: {os.strerror(code)}")
    return {path: bytes(data) if code == 0 else None for path, (code, data) in found.items()}


def _files_in_answer(answer: str, paths: Sequence[str]) -> dict[str, tuple[int, bytearray]] | None:
    """{path: (0 or the board's errno, bytes)} from the board's answer to _READ_FILES; None
    if the answer was cut short."""
    found: dict[str, tuple[int, bytearray]] = {}
    data = bytearray()
    for line in answer.splitlines():
        tag, _, value = line.strip().partition(" ")
        if tag == "lcm-file":
            index, code = (int(v) for v in value.split())
            data = found[paths[index]][1] if paths[index] in found else bytearray()
            found[paths[index]] = (code, data)
        elif tag == "lcm-hex":
            data += bytes.fromhex(value)
        elif tag == "lcm-end":
            return found if len(found) == len(paths) else None
    return None


def install(
    port: str,
    files: dict[str, bytes],
    staging: Path,
    reset: bool = True,
    remove: Sequence[str] = (),
) -> str:
    """Copy `files` onto the board on `port` with mpremote, `remove` removed first;
    returns mpremote's output."""
    stage_files(files, staging)
    return _mpremote(
        port,
        mpremote_install_args(port, files, reset, remove),
        staging,
        INSTALL_TIMEOUT_S,
        f"the board on {port} stopped answering during the copy ({INSTALL_TIMEOUT_S} s): "
        "run lcm device install again",
        # Not "no board answered": the board may have, and refused a file (a full flash).
        f"could not copy lcm to the board on {port}",
    )
