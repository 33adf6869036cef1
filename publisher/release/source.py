"""Reading the app folder a release is built from, refusing what must not ship.

Rules (each refusal names the offending path):
  - SOURCE must exist and hold at least one file.
  - A symlink is followed only when its target stays inside SOURCE; one that
    escapes it (or a loop of directory links) is refused, so a release can
    never carry a file from elsewhere on the maintainer's machine.
  - Only regular files and directories; sockets, FIFOs and devices are refused.
  - Hidden entries (names starting with ".") and `__pycache__` folders are
    skipped: they are editor, VCS and interpreter droppings, never app files.
  - At most MAX_FILES files, MAX_FILE_SIZE bytes each, MAX_PACK_SIZE in all
    (the manifest's limits; the pack is one asset a device streams).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cert_sector.errors import FormatError
from cert_sector.manifest import MAX_FILE_SIZE, MAX_FILES, check_path
from publisher.release.errors import SourceError

# Largest pack (all files together) a release may carry.
MAX_PACK_SIZE = 16 * 1024 * 1024
SKIPPED_DIRS = ("__pycache__",)


@dataclass(frozen=True)
class SourceFile:
    """One file of a release: its path on the device (relative, "/"-separated) and bytes."""

    path: str
    data: bytes


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _check_release_path(rel: str) -> str:
    try:
        check_path(rel)
        for c in rel:
            if ord(c) < 0x20 or ord(c) == 0x7F:
                raise FormatError("control character in path " + repr(rel))
    except FormatError as exc:
        raise SourceError(f"{rel!r} cannot be a release path: {exc}") from None
    return rel


class _Walker:
    def __init__(self, root: Path, max_total: int) -> None:
        self.root = root
        self.max_total = max_total
        self.total = 0
        self.files: list[SourceFile] = []
        # Real paths of the folders being walked (the current chain): a link back
        # into one of them is a loop; two links to the same sibling folder are not.
        self.ancestors: set[Path] = set()

    def walk(self, real_dir: Path, rel_prefix: str) -> None:
        if real_dir in self.ancestors:
            raise SourceError(f"directory link loop at {rel_prefix or '.'!r} in SOURCE")
        self.ancestors.add(real_dir)
        try:
            entries = sorted(os.scandir(real_dir), key=lambda e: e.name)
        except OSError as exc:
            raise SourceError(f"cannot list {real_dir}: {exc.strerror}") from None
        for entry in entries:
            self.visit(entry, rel_prefix)
        self.ancestors.discard(real_dir)

    def visit(self, entry: os.DirEntry[str], rel_prefix: str) -> None:
        if entry.name.startswith(".") or entry.name in SKIPPED_DIRS:
            return
        rel = rel_prefix + entry.name
        target = Path(entry.path)
        if entry.is_symlink():
            resolved = target.resolve()
            if not _inside(resolved, self.root):
                raise SourceError(
                    f"{rel!r} is a symlink to {resolved}, outside SOURCE; refusing to ship it"
                )
            target = resolved
        try:
            mode = target.stat().st_mode
        except OSError as exc:
            raise SourceError(f"cannot read {rel!r}: {exc.strerror}") from None
        if stat.S_ISDIR(mode):
            self.walk(target.resolve(), rel + "/")
        elif stat.S_ISREG(mode):
            self.add(rel, target)
        else:
            raise SourceError(f"{rel!r} is not a regular file or folder")

    def add(self, rel: str, path: Path) -> None:
        _check_release_path(rel)
        if len(self.files) >= MAX_FILES:
            raise SourceError(f"SOURCE has more than {MAX_FILES} files (the manifest's limit)")
        size = path.stat().st_size
        if size > MAX_FILE_SIZE:
            raise SourceError(f"{rel!r} is {size} bytes, more than {MAX_FILE_SIZE} per file")
        if self.total + size > self.max_total:
            raise SourceError(
                f"SOURCE is too large: more than {self.max_total} bytes in all (at {rel!r})"
            )
        data = read_bounded(path, size, rel)
        self.total += len(data)
        self.files.append(SourceFile(rel, data))


def read_bounded(path: Path, expected: int, what: str) -> bytes:
    """Read `path`, refusing it when it holds more than `expected` bytes (it grew meanwhile)."""
    try:
        with open(path, "rb") as f:
            data = f.read(expected + 1)
    except OSError as exc:
        raise SourceError(f"cannot read {what!r}: {exc.strerror}") from None
    if len(data) != expected:
        raise SourceError(f"{what!r} changed size while it was read; try again")
    return data


def check_exists(source: Path) -> None:
    """SourceError unless SOURCE (an app folder or a firmware .bin) is there."""
    if not source.exists() and not source.is_symlink():
        raise SourceError(f"SOURCE {source} does not exist")


def collect(source: Path, max_total: int = MAX_PACK_SIZE) -> list[SourceFile]:
    """Every file of the app folder `source`, sorted bytewise by path (manifest order)."""
    check_exists(source)
    if not source.is_dir():
        raise SourceError(f"SOURCE {source} is not a folder (use --kind firmware for a .bin)")
    root = source.resolve()
    walker = _Walker(root, max_total)
    walker.walk(root, "")
    if not walker.files:
        raise SourceError(f"SOURCE {source} holds no files to release")
    return sorted(walker.files, key=lambda f: f.path.encode("utf-8"))
