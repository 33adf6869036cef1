"""Fixtures for tests that run device code in the real MicroPython unix port.

The device packages are compiled to `.mpy` once per session (as they ship).
`--mpy-heap` selects the heap for every run (the `device` nox session runs
the suite once with the default heap and once with `--mpy-heap 24k`).
"""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

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


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--mpy-heap",
        default=None,
        help="MicroPython heap size for device tests, e.g. 24k (default: the port's own)",
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
