"""lcm_device.hal.fs tree helpers on MicroPython, with relative and absolute roots."""

from __future__ import annotations

from typing import Any

SCRIPT = """
import os
from lcm_device.hal.fs import Fs, makedirs, remove_tree

class Counting(Fs):
    made = []
    def mkdir(self, path):
        self.made.append(path)
        Fs.mkdir(self, path)

fs = Counting()
makedirs(fs, "state")
makedirs(fs, "state/lcm/state/certs/")
makedirs(fs, "state/lcm/state")  # there already: nothing to do
makedirs(fs, "{absolute}/a/b")
print("MADE", fs.made)
# (without the runner's links to the code: see MicroPython._short_paths)
def listing():
    return sorted(n for n in os.listdir(".") if not n.startswith("_p"))
print("TOP", listing())
remove_tree(fs, "state")
print("LEFT", listing())
"""


def test_makedirs_relative_and_absolute_paths(mpy: Any) -> None:
    (mpy.workdir / "abs").mkdir()
    absolute = str(mpy.workdir / "abs")

    out = mpy.run(SCRIPT.replace("{absolute}", absolute)).stdout

    made = [
        "state",
        "state/lcm",
        "state/lcm/state",
        "state/lcm/state/certs",
        f"{absolute}/a",
        f"{absolute}/a/b",
    ]
    assert f"MADE {made!r}".replace('"', "'") in out, out
    assert "TOP ['abs', 'snippet.py', 'state']" in out, out  # no "stat", no "stat/..."
    assert "LEFT ['abs', 'snippet.py']" in out, out
    assert (mpy.workdir / "abs" / "a" / "b").is_dir()
