"""Fixtures shared by the CPython tests (the device tests have tests/device/conftest.py)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def device_root() -> Iterator[Path]:
    """A short folder for a device measured against the data-heap bar. A board's paths are
    short (`/lcm/state/...`); the unix HAL puts its folder in front of every one, and a
    long folder (a deep clone, nox's temporary folder) spends heap that a board does not,
    and moves the heap's layout with it (the crowded page failed at 24 KB under nox's
    folder, and passed at 23 KB under /tmp)."""
    base = "/tmp" if os.path.isdir("/tmp") else None
    root = Path(tempfile.mkdtemp(prefix="lcm-", dir=base))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)
