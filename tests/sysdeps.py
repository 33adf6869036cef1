"""Debian programs the tests drive for real: a missing one fails the test with the command
that installs it (never a silent skip)."""

from __future__ import annotations

import os

import pytest


def require(path: str, package: str) -> str:
    """`path` if it exists; else fail naming the apt-get command (noxfile's SYSTEM_PACKAGES)."""
    if not os.path.exists(path):
        pytest.fail(f"{path} is missing; install it with: sudo apt-get install -y {package}")
    return path
