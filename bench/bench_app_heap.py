"""The app's heap after a check, against a board without lcm (the bar: within 2 KB).

A simulated device checks (nothing new: the engine is loaded, runs and is
released), then starts its app, whose first line collects and prints the
free heap. The same is measured in a plain interpreter of the same heap
size with only the app API imported (`import lcm`, the slot's shim), which
is what a board without lcm would give the app, minus that API. Printed:

- with `.mpy` modules in the heap (stock firmware): the whole process heap
  is the same for both (`-X heapsize`);
- in the ROM model (lcm_sim/rommodel.py: the manager's code "in ROM", a
  data heap of the same size for both).

The difference is what lcm leaves behind in the app's heap: the modules
the app needs (the app API, the check timer and the schedule) and what the
boot did not release.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from publisher.device.simulate import board_code, provision, simulate
from publisher.micropython import (
    ROM_MODEL_HEAP,
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

# The app: its first line measures, then it confirms itself (a healthy app).
APP = b"""import gc
gc.collect()
print("APP free", gc.mem_free())
import lcm
lcm.confirm()
"""

PLAIN = """import gc
import lcm
assert "lcm_device.app" in __import__("sys").modules  # the slot's shim, not a folder
gc.collect()
print("PLAIN free", gc.mem_free())
"""


def free_of(lines: list[str], mark: str) -> int:
    for line in lines:
        if mark in line:
            return int(line.rsplit(" ", 1)[1])
    raise SystemExit(f"no {mark!r} line in:\n" + "\n".join(lines))


def app_free(state: Path, rom: bool) -> int:
    if rom:
        kw = {"heap": ROM_MODEL_HEAP, "env": {"LCM_DATA_HEAP": str(DATA_KB * 1024)}}
    else:
        kw = {"heap": f"{HEAP_KB}k"}
    # A check now (nothing new) in an update boot, then the app boot it resets into.
    status = simulate(state, check_first=True, **kw)
    if not any("nothing new" in line for line in status.lines):
        raise SystemExit("the check did not run:\n" + "\n".join(status.lines))
    return free_of(status.lines, "APP free")


def plain_free(state: Path, rom: bool) -> int:
    slot = state / "lcm" / "m0"
    code = (rom_prelude(DATA_KB * 1024) if rom else "") + PLAIN
    # Not run from the device's root: its folder `lcm/` would be what `import lcm` finds
    # (an empty namespace package), not the slot's lcm.py.
    run_dir = state.parent / "plain"
    run_dir.mkdir(exist_ok=True)
    (run_dir / "plain.py").write_text(code)
    proc = run_micropython(
        ["plain.py"],
        path=[slot, board_code()],
        heap=ROM_MODEL_HEAP if rom else f"{HEAP_KB}k",
        cwd=run_dir,
        extra_env={"LCM_ROOT": str(state)},
    )
    return free_of((proc.stdout + proc.stderr).splitlines(), "PLAIN free")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="lcm-bench-app-") as name:
        tmp = Path(name)
        build = build_mpy(tmp / "mpy", UNIX_PACKAGES)
        with running_host(tmp / "host") as host:
            repo = Repo(host)
            repo.publish("1.0.0", {"main.py": APP})
            state = tmp / "device"
            provision(
                state,
                web_url=host.url,
                repo=repo.name,
                roots=[repo.root.public_key],
                build=build,
                settings={"gestures": False},
            )
            simulate(state, heap=f"{HEAP_KB}k")  # install v1.0.0 (and its trial boot)
            for rom, what in ((False, f".mpy, -X heapsize={HEAP_KB}k"), (True, "ROM model")):
                app, plain = app_free(state, rom), plain_free(state, rom)
                gap = plain - app
                verdict = "within" if gap <= BAR else "over"
                print(
                    f"app's free heap after a check ({what}): {app} bytes; plain interpreter "
                    f"with only `import lcm`: {plain}; lcm keeps {gap} bytes "
                    f"({verdict} the 2 KB bar)"
                )


if __name__ == "__main__":
    main()
