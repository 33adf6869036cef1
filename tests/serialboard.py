"""A MicroPython board on a serial port, for tests that run mpremote as the world does.

The unix port runs behind one pseudo-terminal and is relayed to another,
whose name is the board's port. Only the USB-UART is missing: mpremote opens
the port as it would a board's and speaks the raw REPL to the real
interpreter. The board's filesystem is a folder, mounted as its `/`. Its
current folder is `/`, as after a board's boot, or another one (`cwd`): a
board that runs lcm is in its app's slot (/lcm/appN, lcm_device/boot.py).
"""

from __future__ import annotations

import contextlib
import os
import pty
import select
import subprocess
import threading
import tty
from collections.abc import Iterator
from pathlib import Path

from publisher.micropython import micropython_command

# Run before the REPL starts (-i): the folder becomes the board's root filesystem, and the
# board's current folder is the second (a board path).
_ROOT_AT = "import vfs, os; vfs.umount('/'); vfs.mount(vfs.VfsPosix({!r}), '/'); os.chdir({!r})"


@contextlib.contextmanager
def serial_board(folder: Path, cwd: str = "/") -> Iterator[str]:
    """MicroPython's REPL on a serial port, its filesystem `folder`; yields the port.

    `cwd` is the board's current folder, a board path that exists in `folder`
    (`/lcm/app0`: `folder / "lcm/app0"`).
    """
    if not (folder / cwd.lstrip("/")).is_dir():
        raise ValueError(f"the board's current folder {cwd} is not a folder in {folder}")
    dev_leader, dev_follower = pty.openpty()
    host_leader, host_follower = pty.openpty()
    for fd in (dev_leader, dev_follower, host_leader, host_follower):
        tty.setraw(fd)
    proc = subprocess.Popen(
        [*micropython_command(), "-i", "-c", _ROOT_AT.format(str(folder.resolve()), cwd)],
        stdin=dev_follower,
        stdout=dev_follower,
        stderr=dev_follower,
        cwd=folder,
    )
    stop = threading.Event()

    def relay() -> None:
        peer = {dev_leader: host_leader, host_leader: dev_leader}
        while not stop.is_set():
            ready, _, _ = select.select(list(peer), [], [], 0.05)
            for fd in ready:
                try:
                    os.write(peer[fd], os.read(fd, 4096))
                except OSError:
                    return

    thread = threading.Thread(target=relay, daemon=True)
    thread.start()
    try:
        yield os.ttyname(host_follower)
    finally:
        stop.set()
        proc.kill()
        proc.wait()
        thread.join()
        for fd in (dev_leader, dev_follower, host_leader, host_follower):
            os.close(fd)
