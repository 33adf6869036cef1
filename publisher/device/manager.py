"""What a manager slot (/lcm/m0, /lcm/m1) holds, whichever way it gets onto a device.

A factory image (`lcm device image`), a simulated device (`lcm device
simulate`) and a manager release (`lcm demo`, or a maintainer publishing the
manager) all install the same files: the device packages compiled to .mpy, with the
catalog of their messages (lcm_device/catalog.txt, publisher/mpytext.py), and
`lcm.py` at the slot's root, which apps `import lcm` from.
"""

from __future__ import annotations

from pathlib import Path

from publisher.micropython import DEVICE_PACKAGES, REPO_ROOT, build_mpy
from publisher.mpytext import CATALOG

# What apps import as `lcm`: a re-export of lcm_device.app, installed at the slot's root.
LCM_SHIM_SOURCE = REPO_ROOT / "lcm_device" / "lcm.py"
# Compiled with the packages but not part of a slot: /main.py's source, and the
# shim (it sits at the slot's root as lcm.py instead).
_NOT_IN_SLOT = ("lcm_device/main.mpy", "lcm_device/pick.mpy", "lcm_device/lcm.mpy")


def manager_files(build: Path) -> dict[str, bytes]:
    """The files of a manager slot, by path inside the slot, from a `build_mpy` folder."""
    files = {"lcm.py": LCM_SHIM_SOURCE.read_bytes()}
    for package in DEVICE_PACKAGES:  # board code only: a build may hold lcm_sim too
        for mpy in sorted((build / package).rglob("*.mpy")):
            rel = mpy.relative_to(build).as_posix()
            if rel not in _NOT_IN_SLOT:
                files[rel] = mpy.read_bytes()
    # The messages the .mpy files name by number: they go together.
    files[CATALOG] = (build / CATALOG).read_bytes()
    return files


def write_manager_release(workdir: Path) -> Path:
    """A folder holding exactly a manager slot's files (`lcm release publish --manager`)."""
    build = build_mpy(workdir / "mpy")
    source = workdir / "manager-release"
    for rel, data in manager_files(build).items():
        dest = source / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
    return source
