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
print("TOP", sorted(os.listdir(".")))
remove_tree(fs, "state")
print("LEFT", sorted(os.listdir(".")))
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
