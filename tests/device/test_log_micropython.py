"""lcm_device.log in the real MicroPython unix port: format, ring bounds, never raising.

`HAL_DOUBLE` is a tiny stand-in for the members of the device HAL that the
life-cycle modules use (root, fs, unique_id, time, rtc): a folder as flash,
and a power cut at the k-th flash mutation (a write is cut half way and the
process exits 76, as the unix HAL does). The life-cycle tests share it.
"""

HAL_DOUBLE = """
import os
import sys

EXIT_POWER_CUT = 76


class _CutFile:
    def __init__(self, fs, f):
        self.fs = fs
        self.f = f

    def write(self, b):
        if self.fs.tick():
            self.f.write(bytes(b)[: len(b) // 2])
            self.f.close()
            sys.exit(EXIT_POWER_CUT)
        return self.f.write(b)

    def close(self):
        self.f.close()


class FS:
    def __init__(self, cut_at):
        self.count = 0
        self.cut_at = cut_at

    def tick(self):
        self.count += 1
        return self.count == self.cut_at

    def _plain(self):
        if self.tick():
            sys.exit(EXIT_POWER_CUT)

    def open_write(self, p):
        return _CutFile(self, open(p, "wb"))

    def open_append(self, p):
        return _CutFile(self, open(p, "ab"))

    def rename(self, a, b):
        self._plain()
        os.rename(a, b)

    def remove(self, p):
        self._plain()
        os.remove(p)

    def mkdir(self, p):
        self._plain()
        os.mkdir(p)


class Hal:
    board = "unix"

    def __init__(self, root="state", clock=None, cut_at=None, uid=b"\\x24\\x0a\\xc4\\x124V"):
        self.root = root
        self.clock = clock
        self.uid = uid
        self.fs = FS(cut_at)
        for d in ("", "/lcm", "/lcm/state"):
            try:
                os.mkdir(root + d)
            except OSError:
                pass

    def unique_id(self):
        return self.uid

    def time(self):
        return self.clock

    def rtc_read(self):
        try:
            with open(self.root + "/rtc", "rb") as f:
                return f.read()
        except OSError:
            return b""

    def rtc_write(self, b):
        with open(self.root + "/rtc", "wb") as f:
            f.write(b)

    def reset(self, code):
        sys.exit(code)
"""


def write_double(mpy):
    (mpy.workdir / "haldouble.py").write_text(HAL_DOUBLE)
    return (mpy.workdir,)


def test_lines_carry_device_seq_and_uptime(mpy):
    path = write_double(mpy)
    out = mpy.run(
        """
        from haldouble import Hal
        from lcm_device import log
        log.setup(Hal(), {})
        log.log("boot")
        log.log("two\\nlines")
        log.log(ValueError("not a string"))
        print("RING", list(log.read_ring(Hal())))
        """,
        extra_path=path,
    ).stdout
    assert "240ac4123456 1 +0s boot\n" in out
    assert "240ac4123456 2 +0s two lines\n" in out
    assert "240ac4123456 3 +0s not a string\n" in out
    assert (
        "RING ['240ac4123456 1 +0s boot', '240ac4123456 2 +0s two lines', "
        "'240ac4123456 3 +0s not a string']" in out
    )


def test_known_clock_gives_utc_time(mpy):
    path = write_double(mpy)
    out = mpy.run(
        """
        from haldouble import Hal
        from lcm_device import log
        log.setup(Hal(clock=1795939658), {})
        log.log("clock")
        print(log.iso_time(0), log.iso_time(951782400), log.iso_time(4107542399))
        """,
        extra_path=path,
    ).stdout
    assert "240ac4123456 1 2026-11-29T08:07:38Z clock\n" in out
    assert "1970-01-01T00:00:00Z 2000-02-29T00:00:00Z 2100-02-28T23:59:59Z" in out


def test_ring_stays_bounded_and_keeps_the_newest_lines(mpy):
    path = write_double(mpy)
    out = mpy.run(
        """
        import os
        from haldouble import Hal
        from lcm_device import log
        hal = Hal()
        log.setup(hal, {})
        for i in range(300):
            log.log("line %d %s" % (i, "x" * (i % 50)))
        sizes = [os.stat("state/lcm/state/" + n)[6] for n in ("log.ring", "log.ring.old")]
        seqs = [int(l.split()[1]) for l in log.read_ring(hal)]
        print("SIZES", sum(sizes))
        print("FIRST", seqs[0], "LAST", seqs[-1], "COUNT", len(seqs))
        print("CONTIGUOUS", seqs == list(range(seqs[0], 301)))
        """,
        extra_path=path,
    ).stdout
    total = int(out.split("SIZES ")[1].split()[0])
    assert total <= 2 * 2048
    assert "LAST 300" in out
    assert "CONTIGUOUS True" in out
    first = int(out.split("FIRST ")[1].split()[0])
    assert 1 < first < 300 - 20  # old lines dropped, still a useful history kept


def test_logging_never_raises(mpy):
    """A broken flash, a broken HAL, a bad config and a bad UDP target: lines still print."""
    path = write_double(mpy)
    out = mpy.run(
        """
        from lcm_device import log

        class Broken:
            root = "no/such/dir"

            class fs:
                def open_append(p):
                    raise OSError(28)

                def rename(a, b):
                    raise OSError(28)

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
        extra_path=path,
    ).stdout
    assert " 1 +0s still printed\n" in out
    assert " 2 +0s and again\n" in out
    assert "DONE" in out


def test_parse_line_refuses_other_text(mpy):
    out = mpy.run(
        """
        from lcm_device import log
        print(log.parse_line("240ac4123456 7 +3s hello world"))
        print(log.parse_line("garbage"), log.parse_line("a b c"), log.parse_line("a -1 c"))
        """
    ).stdout
    assert "('240ac4123456', 7, '+3s', 'hello world')" in out
    assert "None None None" in out
