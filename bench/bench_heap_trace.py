"""Where bar 3's heap goes: the live heap and the interned names at fixed points of the update.

Bar 3 (bench_update.py) is the smallest whole-process heap of a one-file update with
the code as `.mpy` in the heap. It moves by 2-4 KB with the heap's layout alone
(docs/device.md, "Where bar 3's heap goes"), so two versions of the update path are
compared by what is live, not by it. This bench copies the board code, puts a probe
after each line of POINTS (a collection, then `gc.mem_alloc()` and MicroPython's
count of interned names), builds the copy as the bar's build does (`.mpy`, `-O3`,
the message catalog), and runs bench_update's one-file update in a 256 KB process
(20 files, a 4 KB sector with two CA certificates). It prints one line per point the
update reached, in order. The probe itself interns one name ("heap-trace").

A point whose line is no longer in its module, once, stops the bench naming it:
update POINTS with the code.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench_update as update

from publisher.device.manager import manager_files
from publisher.micropython import DEVICE_PACKAGES, REPO_ROOT, build_mpy
from tests.device.enginekit import Repo, app_files
from tests.hostserver import running_host

HEAP = "256k"
# (module, the line the probe follows, what the update has done by then).
POINTS = (
    ("lcm_device/boot.py", "    global startup, appboot\n", "lcm_device.boot started"),
    ("lcm_device/boot.py", "        unload(_STEPS.split(), True)\n", "the boot's steps released"),
    ("lcm_device/update.py", "            self.budget(0)\n", "a check's HTTP client made"),
    ("lcm_device/update.py", "            tag = self._latest_tag()\n", "its tag found"),
    (
        "lcm_device/metadata.py",
        '    unload(["lcm_device.resolve"], True)\n',
        "the asset URLs resolved",
    ),
    ("lcm_device/metadata.py", "    sector = _refresh_sector(u, tag)\n", "the sector refreshed"),
    (
        "lcm_device/metadata.py",
        "    new, size, digest, kid = _download_manifest(u, tag, slot)\n",
        "the manifest downloaded",
    ),
    (
        "lcm_device/metadata.py",
        "    from cert_sector.manifest import check_header, manifest_order\n",
        "the manifest's parser imported",
    ),
    (
        "lcm_device/slotfill.py",
        "    need, get_bytes = _plan(u, slot, active, plan)\n",
        "the slot's plan made",
    ),
    (
        "lcm_device/slotfill.py",
        "    _plan_and_fetch(u, st, slot, pack_size, tag, spent)\n",
        "the pack fetched",
    ),
)
PROBE = (
    "import gc, micropython; gc.collect(); print('heap-trace', {n}, gc.mem_alloc()); "
    "micropython.qstr_info()\n"
)
_COUNT = re.compile(r"n_qstr=(\d+), n_str_data_bytes=\d+, n_total_bytes=(\d+)")


def probed_build(tmp: Path) -> Path:
    """The board code with a probe after each point's line, built as `.mpy`."""
    src = tmp / "probed"
    for package in DEVICE_PACKAGES:
        shutil.copytree(REPO_ROOT / package, src / package)
    for n, (module, line, what) in enumerate(POINTS):
        path = src / module
        text = path.read_text(encoding="utf-8")
        if text.count(line) != 1:
            raise SystemExit(f"bench_heap_trace: {what}: {line.strip()!r} not once in {module}")
        indent = line[: len(line) - len(line.lstrip())]
        path.write_text(text.replace(line, line + indent + PROBE.format(n=n)), encoding="utf-8")
    return build_mpy(tmp / "probed-mpy", root=src)


def trace(lines: list[str]) -> list[tuple[int, int, int, int]]:
    """(point, live bytes, names, bytes of the names' pools and text) per probe line."""
    found = []
    for i, line in enumerate(lines[:-1]):
        words = line.split()
        count = _COUNT.search(lines[i + 1])
        if len(words) == 3 and words[0] == "heap-trace" and count:
            found.append((int(words[1]), int(words[2]), int(count[1]), int(count[2])))
    return found


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        build = build_mpy(tmp / "mpy")
        probed = manager_files(probed_build(tmp))
        with running_host(tmp / "host") as host:
            repo = Repo(host)
            repo.sector = update.full_sector(repo)
            v1 = app_files("1.0.0", n=update.FILES, size=update.FILE_SIZE)
            repo.publish("1.0.0", v1)
            state = update.new_device(tmp, "device", host, repo, build)
            for rel, data in probed.items():  # as if its factory image held the probed build
                (state / "lcm" / "m0" / rel).write_bytes(data)
            status = update.simulate(state, heap=HEAP)
            assert status.state.get("app_tag") == "v1.0.0", status.lines
            repo.publish("1.0.1", update.one_file_changed(v1))
            status = update.simulate(state, heap=HEAP)
            assert status.state.get("app_tag") == "v1.0.1", status.lines
    print(
        f"where bar 3's heap goes: a one-file update of {update.FILES} files, .mpy, a {HEAP}B "
        "process (live heap after a collection; interned names and their pools):"
    )
    for point, live, names, pools in trace(status.lines):
        what = POINTS[point][2]
        print(f"  {what:<40} {live / 1024:6.1f} KB {names:4} names ({pools / 1024:.1f} KB)")


if __name__ == "__main__":
    main()
