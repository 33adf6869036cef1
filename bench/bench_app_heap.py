"""The app's heap after a check, against a board without lcm (the bar: within 2 KB).

A simulated device checks (nothing new) in an update boot, which resets into
the app boot; the app's first line collects and prints the free heap. The
same is measured in a plain interpreter of the same heap size with only the
app API imported (`import lcm`, the slot's shim), which is what a board
without lcm would give the app, minus that API. Printed, each with what lcm
keeps (plain minus app):

- with `.mpy` modules in the heap (stock firmware), the whole process heap
  the same for both (`-X heapsize`), twice: with the simulated board's code
  (lcm_sim: the unix HAL, which stands in for a board's firmware) as `.mpy`
  in the heap, and with it mounted from a ROMFS image (`vfs.VfsRom`, the
  image's bytes in the heap of both processes alike), as a board's
  firmware would be. A board's own HAL (lcm_device/hal) is in the heap in
  both. The bar is judged on the ROMFS line: the simulator's HAL is not
  lcm's code on a board (where `machine` and the firmware are not in the
  heap), while everything lcm ships to a board is counted;
- in the ROM model (lcm_sim/rommodel.py: the manager's code "in ROM", a
  data heap of the same size for both).

The bar compares the app's first line (before it imports anything) with the
plain interpreter after `import lcm`, as the issue defines it: the app boot
after an update boot does not load the app API (the app does, when it
imports `lcm`), so there the app has more heap than the plain interpreter.
Each line also prints the app's free heap once it has imported `lcm` itself,
the same modules on both sides: what lcm keeps then is the device's /main.py
(the app runs in its frame), the check timer and the names interned by the
modules the app boot loaded (docs/device.md, "The app's heap after a check").
"""

from __future__ import annotations

import contextlib
import io
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lcm_sim import EXIT_RESET
from publisher.device.simulate import board_code, boot_once, provision, simulate
from publisher.micropython import (
    ROM_MODEL_HEAP,
    SIM_PACKAGES,
    UNIX_PACKAGES,
    build_mpy,
    rom_prelude,
    run_micropython,
)
from tests.device.enginekit import Repo
from tests.hostserver import running_host

HEAP_KB = 256  # whole process, .mpy in the heap
DATA_KB = 64  # ROM model: data heap
BAR = 2048

# The app: its first line measures, then with the app API imported (a healthy app: it
# returns, and is confirmed).
APP = b"""import gc
gc.collect()
print("APP free", gc.mem_free())
import lcm
gc.collect()
print("APP+API free", gc.mem_free())
"""

PLAIN = """import gc
import lcm
assert "lcm_device.app" in __import__("sys").modules  # the slot's shim, not a folder
gc.collect()
print("PLAIN free", gc.mem_free())
"""

# Runs a script with the simulated board's code mounted from a ROMFS image at /rom (as
# a board's firmware sits beside its filesystem); the image's bytes are in the heap, the
# same in the app's process and the plain one.
ROMFS_RUN = """import sys, vfs
vfs.mount(vfs.VfsRom(open(sys.argv[1], "rb").read()), "/rom")
sys.path.append("/rom")


def code(path):
    # In a function: the source text is not left on this frame's stack while it runs.
    with open(path) as f:
        return compile(f.read(), path, "exec")


exec(code(sys.argv[2]), {"__name__": "__main__"})  # its own globals, as a board's main.py
"""


def free_of(lines: list[str], mark: str) -> int:
    for line in lines:
        if line.startswith(mark + " "):
            return int(line.rsplit(" ", 1)[1])
    raise SystemExit(f"no {mark!r} line in:\n" + "\n".join(lines))


def romfs_image(folder: Path) -> bytes:
    """A ROMFS image of `folder` (.mpy files as they are), built by mpremote's builder."""
    from mpremote.romfs import make_romfs

    with contextlib.redirect_stdout(io.StringIO()):  # the builder prints the tree
        return make_romfs(str(folder), mpy_cross=False)


def app_free(state: Path, mode: str, sim_img: Path) -> tuple[int, int]:
    """(first line, after `import lcm`) of the app's free heap after a check (nothing new)."""
    if mode == "rom":
        kw = {"heap": ROM_MODEL_HEAP, "env": {"LCM_DATA_HEAP": str(DATA_KB * 1024)}}
    else:
        kw = {"heap": f"{HEAP_KB}k"}
    if mode != "romfs":
        # A check now in an update boot, then the app boot it resets into.
        status = simulate(state, check_first=True, **kw)
        if not any("nothing new" in line for line in status.lines):
            raise SystemExit("the check did not run:\n" + "\n".join(status.lines))
        lines = status.lines
    else:
        code, lines = boot_once(state, heap=f"{HEAP_KB}k", check_now=True)
        if code != EXIT_RESET or not any("nothing new" in line for line in lines):
            raise SystemExit("the check did not run:\n" + "\n".join(lines))
        # The app boot with the simulated board from ROMFS (not on the path as .mpy).
        (state / "romfs_run.py").write_text(ROMFS_RUN)
        proc = run_micropython(
            ["romfs_run.py", str(sim_img), "main.py"],
            path=[],
            heap=f"{HEAP_KB}k",
            cwd=state,
            extra_env={"LCM_ROOT": str(state), "LCM_BOOT_CAUSE": "reset", "LCM_CHECK_NOW": "0"},
        )
        lines = (proc.stdout + proc.stderr).splitlines()
    return free_of(lines, "APP free"), free_of(lines, "APP+API free")


def plain_free(state: Path, mode: str, sim_img: Path) -> int:
    slot = state / "lcm" / "m0"
    code = (rom_prelude(DATA_KB * 1024) if mode == "rom" else "") + PLAIN
    # Not run from the device's root: its folder `lcm/` would be what `import lcm` finds
    # (an empty namespace package), not the slot's lcm.py.
    run_dir = state.parent / "plain"
    run_dir.mkdir(exist_ok=True)
    (run_dir / "plain.py").write_text(code)
    args = ["plain.py"]
    path = [slot, board_code()]
    if mode == "romfs":
        (run_dir / "romfs_run.py").write_text(ROMFS_RUN)
        args = ["romfs_run.py", str(sim_img), "plain.py"]
        path = [slot]
    proc = run_micropython(
        args,
        path=path,
        heap=ROM_MODEL_HEAP if mode == "rom" else f"{HEAP_KB}k",
        cwd=run_dir,
        extra_env={"LCM_ROOT": str(state)},
    )
    return free_of((proc.stdout + proc.stderr).splitlines(), "PLAIN free")


def main() -> None:
    # A short root: the unix HAL puts it in front of every path, interned names among them,
    # where a board's is "" (both processes run from it).
    with tempfile.TemporaryDirectory(prefix="a") as name:
        tmp = Path(name)
        build = build_mpy(tmp / "mpy", UNIX_PACKAGES)
        sim_img = tmp / "sim.img"
        sim_img.write_bytes(romfs_image(build_mpy(tmp / "sim", SIM_PACKAGES)))
        with running_host(tmp / "host") as host:
            repo = Repo(host)
            repo.publish("1.0.0", {"main.py": APP})
            state = tmp / "d"
            provision(
                state,
                web_url=host.url,
                repo=repo.name,
                roots=[repo.root.public_key],
                build=build,
                settings={"gestures": False},
            )
            simulate(state, heap=f"{HEAP_KB}k")  # install v1.0.0 (and its trial boot)
            modes = (
                ("mpy", f".mpy, -X heapsize={HEAP_KB}k, simulator's HAL as .mpy in the heap"),
                ("romfs", f".mpy, -X heapsize={HEAP_KB}k, simulator's HAL in ROMFS (the bar)"),
                ("rom", "ROM model"),
            )
            for mode, what in modes:
                (app, app_api), plain = (
                    app_free(state, mode, sim_img),
                    plain_free(state, mode, sim_img),
                )
                gap = plain - app
                verdict = "within" if gap <= BAR else "over"
                print(
                    f"app's free heap after a check ({what}): {app} bytes; plain interpreter "
                    f"with only `import lcm`: {plain}; lcm keeps {gap} bytes ({verdict} the "
                    f"2 KB bar); once the app imported lcm too: {app_api}, lcm keeps "
                    f"{plain - app_api} bytes ({'within' if plain - app_api <= BAR else 'over'} "
                    "2 KB)"
                )


if __name__ == "__main__":
    main()
