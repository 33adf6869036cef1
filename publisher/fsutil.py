"""Atomic file writes: a reader sees the old file or the new one, never a torn one."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Sequence
from pathlib import Path

from publisher.errors import OutputError

_KEY_PEM = (b"PRIVATE KEY-----", b"PUBLIC KEY-----")


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write `data` to `path` via a temp file in the same folder, fsync, rename."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", dir=path.parent)
    except OSError as exc:  # named by the file asked for, not by the temporary one
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.replace(tmp, path)
        except OSError as exc:  # named by the file asked for, not by the temporary one
            raise OSError(exc.errno, exc.strerror, str(path)) from None
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_output(path: Path, data: bytes, inputs: Sequence[Path] = (), mode: int = 0o644) -> None:
    """Write a command's output file (-o) atomically, unless it would destroy what the
    user keeps: a folder, a key (a PEM private or public key: a slip of -o, such as the
    root key's name, would replace it with no way back), or one of the command's own
    input files (`inputs`)."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"-o {path} is a folder: give a file name")
    if path.is_file():
        with open(path, "rb") as f:
            head = f.read(4096)
        if head.startswith(b"-----BEGIN") and any(k in head for k in _KEY_PEM):
            raise OutputError(f"-o {path} holds a key: not overwritten (give another file)")
        for source in inputs:
            if Path(source).is_file() and os.path.samefile(source, path):
                raise OutputError(f"-o {path} is also an input of this command: not overwritten")
    write_atomic(path, data, mode)


def read_at_most(path: Path, limit: int) -> bytes:
    """At most `limit` + 1 bytes of the regular file `path` (more than `limit`: too big).
    A device (/dev/zero) or a FIFO is refused, not read without end: OSError."""
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    with open(path, "rb") as f:
        return f.read(limit + 1)
