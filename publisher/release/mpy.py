"""`--compile-mpy`: ship the app's modules as .mpy, as the device code itself ships.

Every `.py` becomes `.mpy` (smaller, no compile step and no parse heap on
the device), except `main.py`: the device runs the slot's `main.py` as the
app's entry point, so it stays source (and should be a one-line import).
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from publisher.micropython import mpy_cross_command
from publisher.release.errors import SourceError
from publisher.release.source import SourceFile

ENTRY_POINTS = ("main.py",)
# mpy-cross on one module of a few hundred KB takes well under this.
COMPILE_TIMEOUT_S = 120


def compile_files(files: list[SourceFile]) -> list[SourceFile]:
    """`files` with each .py module (not main.py) replaced by its compiled .mpy."""
    cross = mpy_cross_command()
    paths = {f.path for f in files}
    result: list[SourceFile] = []
    with tempfile.TemporaryDirectory(prefix="lcm-mpy-") as tmp:
        for f in files:
            if not f.path.endswith(".py") or f.path in ENTRY_POINTS:
                result.append(f)
                continue
            compiled_path = f.path[:-3] + ".mpy"
            if compiled_path in paths:
                raise SourceError(f"{f.path!r} and {compiled_path!r} both exist in SOURCE")
            src = Path(tmp) / "module.py"
            out = Path(tmp) / "module.mpy"
            src.write_bytes(f.data)
            proc = subprocess.run(
                [*cross, "-o", str(out), "-s", f.path, str(src)],
                capture_output=True,
                text=True,
                timeout=COMPILE_TIMEOUT_S,
                check=False,
            )
            if proc.returncode != 0:
                raise SourceError(f"mpy-cross failed on {f.path!r}: {proc.stderr.strip()}")
            result.append(SourceFile(compiled_path, out.read_bytes()))
    return sorted(result, key=lambda f: f.path.encode("utf-8"))
