"""lcm_device.schedule and .checktimer in the MicroPython unix port: rules, state, cuts, timer.

Each process is one boot of the device; the state folder carries over between
processes as flash does. Randomness is replaced by a scripted sequence where
a test needs exact numbers.
"""

import textwrap

from tests.device.test_log_micropython import DEVICE_ENV, HAL_DOUBLE, compile_module

HELPERS = """
import json
from lcm_device import schedule
from lcm_device.schedule import Schedule

def seq(*values):
    it = iter(values)
    return lambda: next(it)

def saved():
    with open("lcm/state/schedule.json") as f:
        return json.loads(f.read())

def requested():
    import os
    return "check.now" in os.listdir("lcm/state")
"""


# Most tests: the light HAL double. Power cuts: the real unix HAL (imported by the test).
PRELUDE = HAL_DOUBLE + HELPERS
# Big modules first: less fragmentation in the 24 KB heap.
CUT_PRELUDE = "from lcm_sim.unix import UnixHal\nimport gc\ngc.collect()\n" + HELPERS
# The watcher logs: load the logger first, as the manager's boot does.
LOGGING_PRELUDE = (
    "from lcm_device import log\n"
    + PRELUDE
    + """
from lcm_device import app, appboot, checktimer

def boot_files(hal):
    # /main.py and /lcm/pick.py on the flash: with both there, a poll has no chore to do.
    import os
    os.mkdir(hal.root + "/lcm")
    os.mkdir(hal.root + "/lcm/state")
    for path in ["/main.py", "/lcm/pick.py"]:
        with open(hal.root + path, "w") as f:
            f.write("# " + path)

def arm_checked(hal, interval_s):
    # The check timer armed after a check that succeeded at uptime 0 (next in interval_s).
    s = Schedule(hal, {"check_interval_s": interval_s}, rand=seq(0.5, 0.5))
    s.on_boot(0, True)
    s.record_success(0)
    appboot.arm_timer(hal, s)
"""
)
TIMER_PRELUDE = (
    PRELUDE
    + """
from lcm_device import app, appboot, checktimer

class FakeTimer:
    stopped = False

    def deinit(self):
        self.stopped = True

    def __repr__(self):
        return "stopped timer" if self.stopped else "timer"


class TimerHal(Hal):
    own_timer = True  # the board's timer is the HAL's (as a simulated board's)

    def timer(self, period_ms, callback):
        self.period = period_ms
        self.callback = callback
        return FakeTimer()
"""
)


def run(mpy, code, env=None, prelude=PRELUDE, **kw):
    """Run `code` after the prelude; the prelude is compiled with mpy-cross, as the device
    code is, so that compiling it does not eat the 24 KB heap of the second pass."""
    extra = compile_module(mpy.workdir, "prelude", prelude)
    return mpy.run(
        "from prelude import *\n" + textwrap.dedent(code),
        extra_env={**DEVICE_ENV, **(env or {})},
        extra_path=extra,
        rom=True,  # the manager's code "in ROM", as on a board (a frozen manager)
        **kw,
    )


def test_fresh_device_checks_soon_then_at_the_jittered_interval(mpy):
    out = run(
        mpy,
        """
        s = Schedule(Hal(), {}, rand=seq(0.0, 0.999999))
        s.on_boot(100, True)
        print("FRESH", s.seconds_until_due(100), s.due(100))
        s.record_success(105)
        print("LOW", s.seconds_until_due(105))
        s.record_success(200)
        print("HIGH", s.seconds_until_due(200))
        print("SAVED", saved()["remaining"], saved()["failures"], requested())
        """,
    ).stdout
    assert "FRESH 0 True" in out  # no saved state: at once
    assert "LOW 10800" in out  # 4 h - 25 %
    assert "HIGH 17999" in out  # just under 4 h + 25 %
    assert "SAVED 17999 0 False" in out


def test_failures_back_off_with_full_jitter_up_to_the_cap(mpy):
    out = run(
        mpy,
        """
        top = Schedule(Hal(), {"check_interval_s": 3600}, rand=lambda: 0.999999)
        other = Hal(root="other")
        low = Schedule(other, {"check_interval_s": 3600}, rand=lambda: 0.0)
        tops = []
        lows = []
        for i in range(12):
            top.record_failure(0)
            low.record_failure(0)
            tops.append(top.seconds_until_due(0))
            lows.append(low.seconds_until_due(0))
        print("TOPS", tops)
        print("LOWS", set(lows))
        top.record_success(0)
        print("RESET", top.failures, top.seconds_until_due(0) >= 2700)
        """,
    ).stdout
    tops = eval(out.split("TOPS ")[1].splitlines()[0])
    # Ceiling doubles from 10 min and stops at 2 x interval.
    assert tops[:4] == [599, 1199, 2399, 4799]
    assert tops[4:] == [7199] * 8
    assert "LOWS {10}" in out  # never sooner than 10 s
    assert "RESET 0 True" in out


def test_a_servers_retry_after_starts_the_draw_and_the_cap_bounds_it(mpy):
    out = run(
        mpy,
        """
        def first_failure(root, draw, wait):
            s = Schedule(Hal(root=root), {"check_interval_s": 3600}, rand=lambda: draw)
            s.record_failure(0, wait)
            return s.seconds_until_due(0)

        print("LOWEST", first_failure("a", 0.0, 1000))
        print("HIGHEST", first_failure("b", 0.999999, 1000))
        print("HOSTILE", first_failure("c", 0.0, 999999999999))
        print("NONE", first_failure("d", 0.0, 0))
        """,
    ).stdout
    # Never sooner than the server asked; the draw (at most 600 s after a first failure)
    # still spreads a fleet above it; never later than the cap, 2 x interval.
    assert "LOWEST 1000" in out, out
    assert "HIGHEST 1599" in out, out
    assert "HOSTILE 7200" in out, out
    assert "NONE 10" in out, out


def test_power_on_spreads_over_the_window_and_reset_keeps_the_deadline(mpy):
    run(
        mpy,
        """
        s = Schedule(Hal(), {"power_on_window_s": 7200}, rand=seq(0.25))
        s.on_boot(0, True)
        s.record_success(0)  # next check in 4 h - 25 % + 0.25 * 2 * 25 % = 12600 s
        from lcm_device import app, appboot, checktimer
        appboot.arm_timer(Hal(), s)
        checktimer.poll(3599)  # too soon to rewrite flash
        print("AFTER", saved()["remaining"])
        checktimer.poll(3600)
        print("CHECKPOINT", saved()["remaining"])
        """,
    )
    out = run(
        mpy,
        """
        # A reset (not a power-on): the saved seconds-remaining carry over.
        s = Schedule(Hal(), {"power_on_window_s": 7200}, rand=seq(0.75))
        s.on_boot(5, False)
        print("RESET", s.seconds_until_due(5))
        # Power-on: the old deadline is dropped for a uniform draw over the window.
        s = Schedule(Hal(), {"power_on_window_s": 7200}, rand=seq(0.75))
        s.on_boot(5, True)
        print("POWERON", s.seconds_until_due(5))
        # The lowest draw: not in this very boot (a second on); a window of 0: at once.
        s = Schedule(Hal(), {"power_on_window_s": 7200}, rand=seq(0.0))
        s.on_boot(5, True)
        print("LOWEST", s.seconds_until_due(5))
        s = Schedule(Hal(), {"power_on_window_s": 0}, rand=seq(0.5))
        s.on_boot(5, True)
        print("NO WINDOW", s.seconds_until_due(5))
        """,
    ).stdout
    assert "RESET 9000" in out
    assert "POWERON 5400" in out
    assert "LOWEST 1" in out
    assert "NO WINDOW 0" in out


def test_known_wall_clock_counts_the_time_spent_off(mpy):
    run(
        mpy,
        """
        s = Schedule(Hal(clock=1795939658), {}, rand=seq(0.5, 0.5))
        s.on_boot(0, False)
        s.record_success(0)
        print(saved())
        """,
    )
    out = run(
        mpy,
        """
        s = Schedule(Hal(clock=1795939658 + 3600), {})
        s.on_boot(0, False)
        print("LEFT", s.seconds_until_due(0))
        s = Schedule(Hal(clock=1795939658 + 86400), {})
        s.on_boot(0, False)
        print("OVERDUE", s.due(0))
        """,
    ).stdout
    assert "LEFT 10800" in out  # 14400 - 3600
    assert "OVERDUE True" in out


def test_request_survives_a_reset_until_a_check_is_recorded(mpy):
    run(
        mpy,
        """
        s = Schedule(Hal(), {}, rand=seq(0.5, 0.5))
        s.on_boot(0, True)
        s.record_success(0)
        schedule.request_check(Hal())
        """,
    )
    out = run(
        mpy,
        """
        s = Schedule(Hal(), {}, rand=seq(0.5))
        s.on_boot(0, True)
        print("DUE", s.due(0), s.seconds_until_due(0))
        s.record_success(1)
        print("AFTER", s.due(2), requested())
        """,
    ).stdout
    assert "DUE True 0" in out
    assert "AFTER False False" in out


def test_bad_config_and_damaged_state_fall_back_safely(mpy):
    out = run(
        mpy,
        """
        import os
        s = Schedule(Hal(), {"check_interval_s": "often", "power_on_window_s": -5})
        print("CFG", s.interval, s.window, s.cap)
        s = Schedule(Hal(), {"check_interval_s": 1})
        print("CLAMP", s.interval)
        os.mkdir("lcm")
        os.mkdir("lcm/state")
        for bad in ("{not json", '{"failures": "x", "remaining": 5}', "[]",
                    '{"failures": 99999, "remaining": -7}'):
            with open("lcm/state/schedule.json", "w") as f:
                f.write(bad)
            s = Schedule(Hal(), {}, rand=seq(0.0))
            s.on_boot(0, True)
            print("STATE", s.failures, s.remaining, s.requested, s.due(0))
        """,
    ).stdout
    assert "CFG 14400 0 28800" in out
    assert "CLAMP 60" in out
    states = [line for line in out.splitlines() if line.startswith("STATE")]
    # Unreadable state counts as none (check soon); a valid one is clamped to sane bounds.
    assert states[:3] == ["STATE 0 0 False True"] * 3
    # (A power-on's lowest draw is a second on: not due in this very boot.)
    assert states[3] == "STATE 20 1 False False"


def test_a_power_cut_while_saving_keeps_the_old_or_the_new_state(mpy):
    run(
        mpy,
        """
        s = Schedule(Hal(), {}, rand=seq(0.5, 0.5))
        s.on_boot(0, True)
        s.record_success(0)
        print(saved())
        """,
    )
    # Flash mutations of a save: 1 creates the temp file, 2 writes it, 3 renames it.
    for cut_at in (1, 2, 3):
        proc = run(
            mpy,
            """
            s = Schedule(UnixHal(), {})
            s.record_failure(0)
            print("NOT REACHED")
            """,
            env={"LCM_FAULT_AT": str(cut_at)},
            prelude=CUT_PRELUDE,
            check=False,
        )
        assert proc.returncode == 76, proc.stdout + proc.stderr
        out = run(
            mpy,
            """
            s = Schedule(UnixHal(), {})
            print("STATE", s.failures, s.remaining)
            """,
            prelude=CUT_PRELUDE,
        ).stdout
        assert "STATE 0 14400" in out
    out = run(
        mpy,
        """
        s = Schedule(UnixHal(), {}, rand=seq(0.5))
        s.record_failure(0)
        print("SAVED", saved()["failures"])
        """,
        env={"LCM_FAULT_AT": "4"},
        prelude=CUT_PRELUDE,
    ).stdout
    assert "SAVED 1" in out


def test_check_timer_resets_into_the_manager_unless_the_app_holds(mpy):
    proc = run(
        mpy,
        """
        hal = Hal()
        boot_files(hal)
        arm_checked(hal, 600)  # the next check in 600 s: before the deadline's hourly write
        print("EARLY", checktimer.poll(100))
        app.hold()
        checktimer.poll(101)  # held well before the check is due
        print("HELD", checktimer.poll(700), bool(checktimer.held))
        for now in range(702, 712):  # an app that holds in its loop: the wait is said once
            app.hold()
            checktimer.poll(now)
        app.hold(False)
        checktimer.poll(701)
        print("NOT REACHED")
        """,
        check=False,
        prelude=LOGGING_PRELUDE,
    )
    assert proc.returncode == 75, proc.stderr
    assert "EARLY False" in proc.stdout
    assert "HELD False True" in proc.stdout
    # Said when the check fell due, not at the next hourly write.
    assert "check due, waiting while the app holds" in proc.stdout.split("HELD")[0]
    assert proc.stdout.count("check due, waiting while the app holds") == 1, proc.stdout
    assert "check due, resetting into the manager" in proc.stdout
    assert "NOT REACHED" not in proc.stdout
    out = run(mpy, 'print("REQUESTED", requested())').stdout
    assert "REQUESTED True" in out


def test_arming_the_check_timer_again_stops_the_first(mpy):
    out = run(
        mpy,
        """
        hal = TimerHal()
        first = appboot.arm_timer(hal)
        second = appboot.arm_timer(hal)
        print("TIMERS", first, second, checktimer.timer is second)
        """,
        prelude=TIMER_PRELUDE,
    ).stdout
    assert "TIMERS stopped timer timer True" in out


def test_check_timer_puts_back_main_py_and_pick_py_at_its_next_tick(mpy):
    # An app that removes either file and then cuts the power itself beats the timer only
    # if it does so within the second: neither waits for the timer's hourly chore.
    proc = run(
        mpy,
        """
        import os
        from lcm_device import mainfile
        hal = Hal()
        boot_files(hal)
        mainfile.keep(hal)
        arm_checked(hal, 86400)
        checktimer.poll(100)
        t = 101
        for path in ["/lcm/pick.py", "/main.py"]:
            os.remove(hal.root + path)
            print("RESET", checktimer.poll(t))
            print("BACK", path, open(hal.root + path).read())
            t += 1
        """,
        prelude=LOGGING_PRELUDE,
    )
    for path in ["/lcm/pick.py", "/main.py"]:
        assert f"BACK {path} # {path}" in proc.stdout, proc.stdout
        assert f"boot: {path} was removed; restored from" in proc.stdout
    assert "RESET True" not in proc.stdout


def test_arm_timer_polls_through_the_board_timer(mpy):
    proc = run(
        mpy,
        """
        hal = TimerHal()
        schedule.request_check(hal)
        t = appboot.arm_timer(hal)
        print("PERIOD", hal.period, t)
        hal.callback()  # the timer fires
        print("NOT REACHED")
        """,
        check=False,
        prelude=TIMER_PRELUDE,
    )
    assert proc.returncode == 75, proc.stdout + proc.stderr
    assert "PERIOD 1000 timer" in proc.stdout
    assert "NOT REACHED" not in proc.stdout


# A stand-in for the boards' machine.Timer (the unix port has none): Timer(-1) is
# refused as on an ESP32, Timer(0) keeps its callback for the test to fire.
FAKE_MACHINE = """
class Timer:
    PERIODIC = 1
    fired = []

    def __init__(self, timer_id):
        if timer_id < 0:
            raise ValueError("no virtual timers")
        self.timer_id = timer_id

    def init(self, period, mode, callback):
        print("TIMER", self.timer_id, period, mode)
        Timer.fired.append(callback)
"""


def test_arm_timer_uses_machine_timer_and_polls_from_the_main_loop(mpy):
    compile_module(mpy.workdir, "machine", FAKE_MACHINE)
    out = run(
        mpy,
        """
        from lcm_device import app, appboot, checktimer
        import machine

        class Board(Hal):
            def reset(self):
                # machine.reset() does not return on a board; here: say so and stop polling.
                print("RESET")
                self.reset_asked = True

        hal = Board()
        schedule.request_check(hal)
        t = appboot.arm_timer(hal)
        machine.Timer.fired[0](t)  # the timer interrupt: it queues the poll
        for _ in range(100):  # the main loop: the queued poll runs between bytecodes
            if getattr(hal, "reset_asked", False):
                break
        print("REQUESTED", requested())
        """,
    ).stdout
    assert "TIMER 0 1000 1" in out
    assert "RESET" in out.splitlines()
    assert "REQUESTED True" in out


def test_unix_port_without_timer_is_polled_by_the_app(mpy):
    out = run(
        mpy,
        """
        from lcm_device import app, appboot, checktimer
        Schedule(Hal(), {}, rand=seq(0.5)).record_success(0)  # next check in about 4 h
        t = appboot.arm_timer(Hal())
        print("TIMER", t is not None, checktimer.poll(schedule.uptime_s()))
        """,
    ).stdout
    assert "TIMER False False" in out


def test_default_jitter_differs_between_devices(mpy):
    draws = set()
    for _ in range(2):
        out = run(mpy, 'print("DRAW", schedule.uniform(), schedule.uniform())').stdout
        draws.add(out.split("DRAW ")[1].strip())
    assert len(draws) == 2
    for pair in draws:
        assert all(0 <= float(x) < 1 for x in pair.split())
