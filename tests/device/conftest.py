"""Fixtures for tests that run device code in the real MicroPython unix port.

The device packages are compiled to `.mpy` once per session (as they ship).
`--mpy-heap` selects the heap for every run (the `device` nox session runs
the suite once with the default heap and once with `--mpy-heap 24k`).

The power-cut suites cut at every flash mutation of an update in the default
pass; in the small-heap pass (whose point is the heap, not the cut points) they
cut at a deterministic sample (`heap_pass_sample`, `--cut-every`).
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from publisher.micropython import (
    ROM_MODEL_HEAP,
    UNIX_PACKAGES,
    build_mpy,
    heap_bytes,
    micropython_command,
    rom_prelude,
    run_micropython,
)

# The small-heap pass cuts at every this many flash mutations (and see `cut_sample`).
SMALL_HEAP_CUT_EVERY = 4
SWEEP_ENV = "LCM_POWERCUT_SWEEP"  # as tests/device/bootkit.py: the exhaustive runs


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--mpy-heap",
        default=None,
        help="MicroPython heap size for device tests, e.g. 24k (default: the port's own)",
    )
    parser.addoption(
        "--cut-every",
        type=int,
        default=None,
        help="power-cut suites: cut at every Nth flash mutation, plus the first and last "
        f"and the first and last of each kind (default: 1, every one; {SMALL_HEAP_CUT_EVERY} "
        f"with --mpy-heap; {SWEEP_ENV}=1 forces 1)",
    )


class MicroPython:
    """Runs snippets or scripts in the unix port with the compiled device code importable."""

    def __init__(self, build: Path, heap: str | None, workdir: Path) -> None:
        self.build = build
        self.heap = heap
        self.workdir = workdir

    def heap_at_least(self, kb: int) -> str | None:
        """The selected heap raised to `kb` KB (None, the port's default, stays None).

        For runs whose code alone does not fit the small-heap pass on the 64-bit
        unix port (bytecode loads into the GC heap; a board runs it frozen): each
        caller names its floor and why.
        """
        if self.heap is None:
            return None
        return f"{max(heap_bytes(self.heap) // 1024, kb)}k"

    def run(
        self,
        code: str,
        *,
        heap: str | None = None,
        timeout: float = 120,
        check: bool = True,
        extra_path: tuple[Path, ...] = (),
        extra_env: dict[str, str] | None = None,
        rom: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """Run `code` (dedented) as a script; by default fail the test on a non-zero exit.

        With `rom` it runs as on a board with the manager frozen: all of the
        manager's code loaded first (lcm_sim/rommodel.py), then the pass's
        heap left for data, raised to `heap` when that is given (which applies in
        the default pass too); without either, the port's default heap.
        """
        code = textwrap.dedent(code)
        if rom and (self.heap is not None or heap is not None):
            data = max(heap_bytes(self.heap or "0"), heap_bytes(heap or "0"))
            code = rom_prelude(data) + code
            heap = ROM_MODEL_HEAP
        (self.workdir / "snippet.py").write_text(code)
        proc = run_micropython(
            ["snippet.py"],
            path=self._short_paths([self.build, *extra_path]),
            heap=heap or self.heap,
            timeout=timeout,
            cwd=self.workdir,
            extra_env=extra_env,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"micropython exited {proc.returncode}\n--- stdout\n{proc.stdout}"
                f"\n--- stderr\n{proc.stderr}"
            )
        return proc

    def _short_paths(self, folders: list[Path]) -> list[str]:
        """`folders` as short links relative to the working folder.

        The strings MicroPython keeps for module paths live in its heap, so an
        absolute temp path (whose length varies with the machine and the test's
        name) would change what fits in the 24 KB pass from one machine to the next.
        """
        names = []
        for i, folder in enumerate(folders):
            link = self.workdir / f"_p{i}"
            if link.is_symlink() and link.readlink() != Path(folder):
                link.unlink()
            if not link.is_symlink():
                link.symlink_to(folder, target_is_directory=True)
            names.append(link.name)
        return names


@pytest.fixture(scope="session")
def mpy_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    micropython_command()  # fail loudly, never skip, when the port is missing
    # The device packages and the simulated board they run on here.
    return build_mpy(tmp_path_factory.mktemp("mpy"), UNIX_PACKAGES)


@pytest.fixture
def mpy(mpy_build: Path, request: pytest.FixtureRequest, tmp_path: Path) -> MicroPython:
    return MicroPython(mpy_build, request.config.getoption("--mpy-heap"), tmp_path)


# The device's /main.py, replaced in a census copy of a device: every flash mutation
# the unix HAL counts (lcm_sim/faults.py's FaultyFs._tick, the counter `LCM_FAULT_AT`
# cuts at; the census runs with LCM_FAULT_AT=0: counted, never cut) prints its kind
# (the FaultyFs method or file write that made it; "other" for any other caller),
# then the device's own /main.py (kept beside it) runs unchanged.
CENSUS_MAIN = """\
import sys
sys.path.insert(0, {build!r})
import lcm_sim.faults as _u
sys.path.pop(0)
_kind = ["other"]
_count = _u.FaultyFs._tick


def _tick(self, grows=True):
    print("lcm-census: " + _kind[0])
    _kind[0] = "other"
    return _count(self, grows)


def _tap(cls, name):
    f = getattr(cls, name)

    def g(self, *a):
        _kind[0] = name
        return f(self, *a)

    setattr(cls, name, g)


_u.FaultyFs._tick = _tick
for _n in ("open_write", "open_append", "rename", "remove", "mkdir", "rmdir"):
    _tap(_u.FaultyFs, _n)
_tap(_u.CountedFile, "write")
exec(open({device_main!r}).read())
"""
CENSUS_MARK = "lcm-census: "


# A socket read returns what has arrived, so a download can take a write more or
# less from one run to the next: the mutations after it move by as much.
DRIFT = 2


def cut_sample(kinds: list[str], every: int) -> list[int]:
    """The mutations (1-based) to cut at, of an update whose k-th mutation is `kinds[k-1]`.

    Every `every`-th from the first; the first mutation of each kind (write,
    open_write, open_append, rename, remove, mkdir, rmdir), and its last with the
    `DRIFT` mutations either side; and the last `DRIFT` + 1 mutations. Over the
    sample every kind of flash mutation is cut, and the update's last steps (the
    switch) are cut even when this run's download took a write or two more or
    less than the census's.
    """
    n = len(kinds)
    chosen = set(range(1, n + 1, every)) | set(range(max(1, n - DRIFT), n + 1))
    for kind in set(kinds):
        at = [k for k in range(1, n + 1) if kinds[k - 1] == kind]
        chosen |= {at[0], *range(max(1, at[-1] - DRIFT), min(n, at[-1] + DRIFT) + 1)}
    return sorted(chosen)


class CutPoints:
    """The k's a power-cut suite cuts at (the k-th flash mutation of an update).

    Iterating yields 1, 2, 3, ... in full; sampled (`every` > 1), it first runs the
    census (an uncut run that names every mutation's kind), yields `cut_sample`,
    then the mutation counts past the census's last (len + 1, ...). Either way the
    suite breaks at the first k its update completes without reaching.
    """

    def __init__(self, every: int, census: Any) -> None:
        self.every = every
        self._census = census
        self.kinds: list[str] | None = None  # the census, when sampled
        self.tried: list[int] = []

    def __iter__(self) -> Iterator[int]:
        if self.every > 1:
            self.kinds = self._census()
            assert self.kinds, "the census saw no flash mutation"
            for k in cut_sample(self.kinds, self.every):
                self.tried.append(k)
                yield k
        start = len(self.kinds) + 1 if self.kinds else 1
        for k in itertools.count(start):
            self.tried.append(k)
            yield k

    @property
    def points(self) -> int:
        """The update's flash mutations: the last k tried (which it did not reach) less one
        (when sampled and that k was in the sample, the update may have ended sooner)."""
        return self.tried[-1] - 1

    def summary(self) -> str:
        if self.kinds is None:
            return f"every one of {self.points} flash mutations"
        counts = {kind: self.kinds.count(kind) for kind in sorted(set(self.kinds))}
        return (
            f"{len(self.tried) - 1} of {self.points} flash mutations (1 in {self.every}, "
            f"the last {DRIFT + 1}, the first and last of each kind: {counts})"
        )


class HeapPassSample:
    """How the power-cut suites pick their cut points in this pass (`heap_pass_sample`).

    `every` is 1 (every point) in the default pass and in a sweep; in the small-heap
    pass the cuts are sampled (see `cut_sample`), the heap being that pass's point.
    """

    def __init__(self, every: int, mpy: MicroPython) -> None:
        self.every = every
        self.mpy = mpy

    def cuts(self, golden: Path, boot: int = 1, **run_kw: Any) -> CutPoints:
        """The k's to cut at in boot number `boot` of `enginekit.run(copy of golden,
        mpy, **run_kw)` (the suite's own run, without `fault_at`)."""
        return CutPoints(self.every, lambda: self.census(golden, boot, **run_kw))

    def census(self, golden: Path, boot: int = 1, **run_kw: Any) -> list[str]:
        """The kind of every flash mutation of boot `boot` of an uncut run of a copy
        of `golden` (the HAL traced from a stand-in /main.py).

        It runs at the port's default heap: the trace's own allocations do not fit
        the margins of the small heap, and which mutations an update makes does not
        depend on the heap (the device reads into fixed-size buffers).
        """
        from tests.device.enginekit import run

        state = golden.parent / "census"
        shutil.rmtree(state, ignore_errors=True)
        shutil.copytree(golden, state)
        device_main = "main.census.py"
        (state / device_main).write_bytes((state / "main.py").read_bytes())
        (state / "main.py").write_text(
            CENSUS_MAIN.format(build=str(self.mpy.build), device_main=device_main)
        )
        default_heap = MicroPython(self.mpy.build, None, self.mpy.workdir)
        # Counted (LCM_FAULT_AT set), never cut (0): the HAL's flash is the FaultyFs traced.
        env = {**(run_kw.pop("env", None) or {}), "LCM_FAULT_AT": "0"}
        status = run(state, default_heap, env=env, **run_kw)
        shutil.rmtree(state)
        out = "\n".join(status.lines)
        assert "crashed" not in out and "Traceback" not in out, out
        lines = out.split(f"--- boot {boot}\n", 1)[1].split("\n--- exit ", 1)[0]
        return [
            line[len(CENSUS_MARK) :] for line in lines.splitlines() if line.startswith(CENSUS_MARK)
        ]


@pytest.fixture
def heap_pass_sample(mpy: MicroPython, request: pytest.FixtureRequest) -> HeapPassSample:
    every = request.config.getoption("--cut-every")
    if every is None:
        every = 1 if mpy.heap is None else SMALL_HEAP_CUT_EVERY
    if os.environ.get(SWEEP_ENV) == "1":
        every = 1
    assert every >= 1, "--cut-every must be 1 or more"
    return HeapPassSample(every, mpy)
