"""lcm_device.gestures in the real MicroPython unix port: counting power cycles across boots.

Each process is one power-on. A power cut during the gesture wait or the
countdown is the test's `sleep` ending the process with exit code 76 at its
n-th call (time is the one thing the unix port cannot cut); power cuts in
flash writes come from the real unix HAL's fault injection.
"""

import json
import textwrap

from tests.device.test_log_micropython import DEVICE_ENV, HAL_DOUBLE, compile_module

HELPERS = """
import json
from lcm_device import gestures

def cutting(at):
    # A sleep that cuts the power at its `at`-th call (0: never).
    calls = [0]
    def sleep(ms):
        calls[0] += 1
        if calls[0] == at:
            print("POWER CUT")
            raise SystemExit(76)
    return sleep

def boot(hal, cut=0, power_on=True, settings=False):
    # `settings`: load the config as the manager's boot does (the Wi-Fi and factory
    # actions change it); other tests pass an empty one to save heap.
    cfg = {}
    if settings:
        from lcm_device import config
        cfg = config.load(hal)
    print("ACTION", gestures.at_boot(hal, cfg, power_on, sleep=cutting(cut)))
"""
PRELUDE = HAL_DOUBLE + HELPERS
REAL_HAL_PRELUDE = "from lcm_sim.unix import UnixHal\n" + HELPERS

CONFIG = {
    "manager_repo": "lcm/manager",
    "manager_roots": ["04" + "ab" * 64],
    "repo": "alice/lamp",
    "app_roots": ["04" + "cd" * 64],
    "wifi_ssid": "home",
    "wifi_password": "secret",
    "channel": "beta",
}


def run(mpy, code, prelude=PRELUDE, env=None, **kw):
    extra = compile_module(mpy.workdir, "prelude", prelude)
    return mpy.run(
        "from prelude import *\n" + textwrap.dedent(code),
        extra_env={**DEVICE_ENV, **(env or {})},
        extra_path=extra,
        rom=True,  # the manager's code "in ROM", as on a board (a frozen manager)
        **kw,
    )


def state(mpy, name):
    return mpy.workdir / "lcm" / "state" / name


def preset(mpy, count=None, config=None):
    state(mpy, "").mkdir(parents=True, exist_ok=True)
    if count is not None:
        state(mpy, "gesture").write_text(str(count))
    if config is not None:
        state(mpy, "config.json").write_text(json.dumps(config))
        # As a boot that read this config leaves it: with its last good copy (config.load
        # writes one otherwise, and the fault points below count flash mutations).
        state(mpy, "config.good.json").write_text(json.dumps(config))


def config(mpy):
    return json.loads(state(mpy, "config.json").read_text())


def test_action_table(mpy):
    out = run(mpy, 'print("TABLE", [gestures.action_for(n) for n in range(1, 17)])').stdout
    table = eval(out.split("TABLE ")[1].strip())
    assert (
        table
        == [None] * 4 + ["check"] * 3 + ["forget-wifi"] * 3 + [None] * 3 + ["factory-reset"] * 3
    )


def test_five_quick_power_cycles_ask_for_a_check(mpy):
    first = run(mpy, "boot(Hal())")
    assert "ACTION None" in first.stdout  # a single power-on does not wait
    for n in (2, 3, 4):
        cut = run(mpy, "boot(Hal(), cut=1)", check=False)
        assert cut.returncode == 76
        assert "gesture: power cycle %d;" % n in cut.stdout
    out = run(mpy, "boot(Hal())").stdout
    countdown = [line for line in out.splitlines() if "power cycles = check in" in line]
    assert [line.split(" in ")[1].split()[0] for line in countdown] == [
        "6",
        "5",
        "4",
        "3",
        "2",
        "1",
    ]
    assert "ACTION check" in out
    assert state(mpy, "check.now").exists()  # the schedule's check request
    assert state(mpy, "gesture").read_text() == "0"


def test_a_cut_during_the_countdown_escalates_to_forget_wifi(mpy):
    preset(mpy, count=4, config=CONFIG)
    # Fifth cycle: the wait passes, the countdown starts, the power is cut at "in 5 s".
    cut = run(mpy, "boot(Hal(), cut=3)", check=False)
    assert cut.returncode == 76
    assert "5 power cycles = check in 6 s" in cut.stdout
    assert "5 power cycles = check in 5 s" in cut.stdout
    assert not state(mpy, "check.now").exists()  # the check was not asked for
    for _ in (6, 7):
        assert run(mpy, "boot(Hal(), cut=1)", check=False).returncode == 76
    out = run(mpy, "boot(Hal(), settings=True)").stdout
    assert "8 power cycles = forget-wifi in 1 s" in out
    assert "ACTION forget-wifi" in out
    cfg = config(mpy)
    assert "wifi_ssid" not in cfg and "wifi_password" not in cfg
    assert cfg["repo"] == "alice/lamp" and cfg["channel"] == "beta"


def test_eleven_cycles_abort(mpy):
    preset(mpy, count=10, config=CONFIG)
    out = run(mpy, "boot(Hal())").stdout
    assert "11 power cycles: nothing to do" in out
    assert "ACTION None" in out
    assert config(mpy) == CONFIG
    assert state(mpy, "gesture").read_text() == "0"


def test_factory_reset_keeps_manager_and_factory_keys(mpy):
    factory = {**CONFIG, "factory_keys": ["repo", "app_roots"], "check_interval_s": 60}
    preset(mpy, count=13, config=factory)
    state(mpy, "schedule.json").write_text('{"failures": 3}')
    state(mpy, "check.now").write_text("")
    state(mpy, "log.ring").write_text("5 hello\n")
    out = run(mpy, "boot(Hal(), settings=True)").stdout
    assert "ACTION factory-reset" in out
    assert config(mpy) == {
        "manager_repo": "lcm/manager",
        "manager_roots": CONFIG["manager_roots"],
        "repo": "alice/lamp",
        "app_roots": CONFIG["app_roots"],
        "factory_keys": ["repo", "app_roots"],
    }
    assert not state(mpy, "schedule.json").exists()
    assert not state(mpy, "check.now").exists()
    assert not state(mpy, "log.ring").exists()
    assert state(mpy, "gesture").read_text() == "0"


def test_factory_reset_without_factory_keys_forgets_the_app_repo(mpy):
    preset(mpy, count=20, config=CONFIG)
    assert "ACTION factory-reset" in run(mpy, "boot(Hal(), settings=True)").stdout
    assert config(mpy) == {
        "manager_repo": "lcm/manager",
        "manager_roots": CONFIG["manager_roots"],
    }


def test_power_cut_in_the_middle_of_a_factory_reset_finishes_it_next_boot(mpy):
    preset(mpy, count=13, config=CONFIG)
    state(mpy, "schedule.json").write_text('{"failures": 3}')
    # Flash mutations: 1-3 save the count (14), 4-6 rewrite config.json, 7 removes
    # schedule.json: cut there, with the settings already erased.
    cut = run(
        mpy,
        "boot(UnixHal(), settings=True)",
        prelude=REAL_HAL_PRELUDE,
        env={"LCM_FAULT_AT": "7"},
        check=False,
    )
    assert cut.returncode == 76, cut.stdout + cut.stderr
    assert state(mpy, "schedule.json").exists()
    assert state(mpy, "gesture").read_text() == "14"
    out = run(mpy, "boot(UnixHal(), settings=True)", prelude=REAL_HAL_PRELUDE).stdout
    assert "15 power cycles = factory-reset in 1 s" in out
    assert not state(mpy, "schedule.json").exists()
    assert config(mpy) == {
        "manager_repo": "lcm/manager",
        "manager_roots": CONFIG["manager_roots"],
    }
    assert state(mpy, "gesture").read_text() == "0"


def test_a_long_enough_boot_settles_and_a_reset_does_not_count(mpy):
    out = run(
        mpy,
        """
        hal = Hal()
        boot(hal)
        gestures.settle(hal, 3)
        print("AFTER 3 S", gestures.read(hal))
        gestures.settle(hal, 4)
        print("AFTER 4 S", gestures.read(hal))
        boot(hal, power_on=False)
        print("AFTER RESET", gestures.read(hal))
        """,
    ).stdout
    assert "AFTER 3 S 1" in out
    assert "AFTER 4 S 0" in out
    assert "AFTER RESET 0" in out


def test_settle_in_a_later_process_clears_the_count(mpy):
    """The boot unloads this module before the app runs; the app-time timer imports it
    again and settles from the file."""
    run(mpy, "boot(Hal())")
    assert state(mpy, "gesture").read_text() == "1"
    out = run(
        mpy,
        """
        gestures.settle(Hal(), 5)
        print("COUNT", gestures.read(Hal()))
        """,
    ).stdout
    assert "COUNT 0" in out
    assert "ACTION None" in run(mpy, "boot(Hal())").stdout  # the next power-on is count 1
    assert state(mpy, "gesture").read_text() == "1"


def test_damaged_counter_counts_as_zero(mpy):
    preset(mpy)
    state(mpy, "gesture").write_bytes(b"\xff\x00garbage")
    out = run(mpy, 'boot(Hal())\nprint("COUNT", gestures.read(Hal()))').stdout
    assert "COUNT 1" in out


def test_button_pressed_held_or_absent(mpy):
    out = run(
        mpy,
        """
        class Pin:
            def __init__(self, values):
                self.values = values
            def value(self):
                return self.values.pop(0) if len(self.values) > 1 else self.values[0]

        class ButtonHal(Hal):
            def __init__(self, values):
                Hal.__init__(self)
                self.values = values
            def pin(self, number):
                print("PIN", number)
                return Pin(self.values)

        cfg = {"button_pin": 0}
        print("UP", gestures.at_boot(ButtonHal([1]), cfg, False))
        nap = lambda ms: None
        print("HELD", gestures.at_boot(ButtonHal([0]), cfg, False, sleep=nap))
        print("PRESSED", gestures.at_boot(ButtonHal([0, 0, 0, 1]), cfg, False, sleep=nap))
        import os
        print("REQUESTED", "check.now" in os.listdir("lcm/state"))
        print("NO PIN", gestures.at_boot(Hal(), cfg, False))
        print("NOT SET", gestures.at_boot(Hal(), {}, False))
        """,
    ).stdout
    assert "PIN 0" in out
    assert "UP None" in out
    assert "HELD setup" in out
    assert "PRESSED check" in out
    assert "REQUESTED True" in out
    assert "button: no pin 0" in out  # the unix port has no machine.Pin
    assert "NO PIN None" in out
    assert "NOT SET None" in out


def test_check_request_is_the_schedules():
    from lcm_device import gestures, schedule

    assert gestures.CHECK_REQUEST == schedule.REQUEST


def test_the_check_timer_settles_when_a_power_on_stops_being_quick():
    from lcm_device import gestures, timerwork

    assert timerwork.SETTLE_S == gestures.QUICK_S
