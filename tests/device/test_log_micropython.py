"""lcm_device.log in the real MicroPython unix port: format, ring bounds, never raising.

Devices run with the real unix HAL (`lcm_sim.unix`): flash is the test's
folder, the clock is unknown unless a test says otherwise, and the MAC is
fixed so lines are predictable. The other life-cycle tests reuse `DEVICE_ENV`.
"""

import subprocess
from pathlib import Path

from publisher.micropython import mpy_cross_command

DEVICE = "240ac4123456"
# Unix HAL settings: no known clock, a fixed MAC.
DEVICE_ENV = {"LCM_CLOCK": "unknown", "LCM_MAC": DEVICE}


# A light stand-in for the unix HAL where a test needs neither power cuts nor the
# simulator's environment: the real HAL module costs about 5 KB of the 24 KB heap
# the second device pass runs with. Flash mutations still go through the real `Fs`; the
# members it does not override are the closed HAL's (lcm_device.hal.board).
HAL_DOUBLE = """
from lcm_device.hal.board import BoardHal
from lcm_device.hal.fs import Fs


class Hal(BoardHal):
    board = "unix"
    fs = Fs()

    def __init__(self, root=None, clock=None):
        self.root = root or "."
        self.clock = clock

    def time(self):
        return self.clock

    def unique_id(self):
        return b"$\\n\\xc4\\x124V"

    def reset(self):
        raise SystemExit(75)
"""


def compile_module(workdir: Path, name: str, source: str) -> tuple[Path, ...]:
    """Compile test helper `source` to `name.mpy` in a folder of `workdir`; returns the path
    to add (compiled like the device code, so the 24 KB heap is not spent compiling it)."""
    folder = workdir / "helpers"
    folder.mkdir(exist_ok=True)
    (folder / (name + "_src.py")).write_text(source)
    subprocess.run(
        [*mpy_cross_command(), "-o", name + ".mpy", name + "_src.py"],
        cwd=folder,
        check=True,
        capture_output=True,
    )
    return (folder,)


def run(mpy, code, env=None, **kw):
    # The manager's code "in ROM", as on a board (a frozen manager).
    kw.setdefault("rom", True)
    return mpy.run(code, extra_env={**DEVICE_ENV, **(env or {})}, **kw)


def test_lines_carry_device_seq_and_uptime(mpy):
    out = run(
        mpy,
        """
        from lcm_sim.unix import UnixHal
        from lcm_device import log
        from cert_sector import logline
        hal = UnixHal()
        log.setup(hal, {})
        log.log("boot")
        log.log("two\\nlines")
        log.log(ValueError("not a string"))
        print("RING", list(logline.read_ring(hal.root)))
        """,
    ).stdout
    assert "240ac4123456 1 +0s boot\n" in out
    assert "240ac4123456 2 +0s two lines\n" in out
    assert "240ac4123456 3 +0s not a string\n" in out
    assert (
        "RING ['240ac4123456 1 +0s boot', '240ac4123456 2 +0s two lines', "
        "'240ac4123456 3 +0s not a string']" in out
    )


def test_known_clock_gives_utc_time(mpy):
    out = run(
        mpy,
        """
        from lcm_sim.unix import UnixHal
        from lcm_device import log
        from cert_sector import logline

        class Clock(UnixHal):
            def time(self):
                return 1795939658

        log.setup(Clock(), {})
        log.log("clock")
        from cert_sector.logline import iso_time
        print(iso_time(0), iso_time(951782400), iso_time(4107542399))
        """,
    ).stdout
    assert "240ac4123456 1 2026-11-29T08:07:38Z clock\n" in out
    assert "1970-01-01T00:00:00Z 2000-02-29T00:00:00Z 2100-02-28T23:59:59Z" in out


def test_ring_stays_bounded_and_keeps_the_newest_lines(mpy):
    out = run(
        mpy,
        """
        import os
        from lcm_sim.unix import UnixHal
        from lcm_device import log
        from cert_sector import logline
        hal = UnixHal()
        log.setup(hal, {})
        for i in range(300):
            log.log("line %d %s" % (i, "x" * (i % 50)))
        sizes = [os.stat("lcm/state/" + n)[6] for n in ("log.ring", "log.ring.old")]
        seqs = [int(l.split()[1]) for l in logline.read_ring(hal.root)]
        print("SIZES", sum(sizes))
        print("FIRST", seqs[0], "LAST", seqs[-1], "COUNT", len(seqs))
        print("CONTIGUOUS", seqs == list(range(seqs[0], 301)))
        """,
    ).stdout
    total = int(out.split("SIZES ")[1].split()[0])
    assert total <= 2 * 2048
    assert "LAST 300" in out
    assert "CONTIGUOUS True" in out
    first = int(out.split("FIRST ")[1].split()[0])
    assert 1 < first < 300 - 20  # old lines dropped, still a useful history kept


def test_a_line_before_setup_sets_the_log_up_from_the_boards_hal(mpy):
    """On demand (the boot released the log before the app, or the app boot after an update
    boot never loaded it): from the board's HAL, made then when the process had none, the
    sequence going on from the ring."""
    out = run(
        mpy,
        """
        from lcm_device import log
        log.log("no HAL made yet")
        from lcm_device.hal import get
        from cert_sector import logline
        hal = get()
        log.setup(hal, {})
        log.log("set up")
        import sys
        from lcm_device.compat import unload
        unload(("lcm_device.log",), True)  # as the boot releases it before the app
        from lcm_device import log
        log.log("loaded again")
        print("RING", list(logline.read_ring(hal.root)))
        """,
    ).stdout
    assert (
        "RING ['240ac4123456 1 +0s no HAL made yet', '240ac4123456 2 +0s set up',"
        " '240ac4123456 3 +0s loaded again']"
    ) in out


def test_logging_never_raises(mpy):
    """A broken flash, a broken HAL, a bad config and a bad UDP target: lines still print."""
    out = run(
        mpy,
        """
        from lcm_device import log
        from cert_sector import logline

        class Broken:
            root = "/no/such/dir"

            class fs:
                def open_append(p):
                    raise OSError(28)

                def rename(a, b):
                    raise OSError(28)

                def mkdir(p):
                    raise OSError(30)

            def unique_id(self):
                raise OSError(5)

            def time(self):
                raise OSError(5)

        log.setup(Broken(), {"log_port": "not a port", "log_host": 17})
        log.online(True)
        log.log("still printed")
        log.setup(Broken(), {"log_port": 0, "log_host": "127.0.0.1"})
        log.log("and again")
        log.online(False)
        print("DONE")
        """,
    ).stdout
    assert "000000000000 1 +0s still printed\n" in out
    assert "000000000000 2 +0s and again\n" in out
    assert "DONE" in out


# The unix port's socket module with a name service that does not answer: every lookup
# fails (and is counted); the rest is the real module's.
FAILING_DNS = """
from usocket import *

lookups = []


def getaddrinfo(host, port, *args):
    lookups.append(host)
    raise OSError(-3)  # EAI_AGAIN: the name server did not answer
"""


def test_a_log_target_that_does_not_resolve_is_looked_up_once_per_connection(mpy):
    """A lookup that an unanswered name server fails blocks for seconds on a board: lines
    logged after it do not look the target up again, until the network comes up again."""
    extra = compile_module(mpy.workdir, "socket", FAILING_DNS)
    compile_module(mpy.workdir, "haldouble", HAL_DOUBLE)
    out = run(
        mpy,
        """
        import socket
        from haldouble import Hal
        from lcm_device import log

        log.setup(Hal(), {"log_host": "logs.example", "log_port": 45678})
        log.online(True)
        for n in range(5):
            log.log("line " + str(n))
        print("LOOKUPS", len(socket.lookups))
        log.online(True)  # Wi-Fi joined again
        log.log("after")
        print("AGAIN", len(socket.lookups))
        """,
        extra_path=extra,
    ).stdout
    assert "LOOKUPS 1" in out and "AGAIN 2" in out, out
    assert "240ac4123456 6 +0s after" in out
