"""The push hint's rules in the MicroPython unix port (lcm_device/fleet.py): spread, the
rate limit (`push_min_gap_s`), what is ignored, and the limit surviving a reset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

SNIPPET = """
import os
from lcm_sim.unix import UnixHal
from lcm_device import appboot, checktimer, slots
from lcm_device.fleet import Agent
from lcm_device.schedule import Schedule

hal = UnixHal()
os.mkdir(hal.root + "/lcm")
os.mkdir(hal.root + "/lcm/state")
st = slots.load(hal)
st.update({"app": "app0", "app_tag": "v1.0.0"})
slots.save(hal, st)
cfg = {"repo": "acme/widget", "mqtt_url": "mqtt://127.0.0.1:1", "check_interval_s": 14400,
       "push_spread_s": 60, "push_min_gap_s": 3600}
sched = Schedule(hal, cfg, rand=lambda: 0.5)
sched.on_boot(0, False)
sched.record_success(0)   # the next check in 4 h
appboot.arm_timer(hal, sched)   # as the boot arms it: the agent moves its deadline
agent = Agent(hal, cfg, checktimer)
topic = b"lcm/acme/widget/release"

def hint(now, payload, t=topic):
    agent._hint(now, t, payload)
    return checktimer.seconds_until_due(now)

print("INSTALLED", hint(100, b"v1.0.0"))              # the running tag: nothing
d = hint(100, b"v9.9.9")                              # a forged hint: a check within the spread
print("FORGED", d)
print("AGAIN", hint(100 + d // 2, b"v9.9.9"), d - d // 2)  # the same hint again: nothing more
sched.record_success(100 + d)                         # that check ran (found nothing new)
appboot.arm_timer(hal, sched)                 # and the next app boot armed the timer
t = 100 + d + 10
print("OTHER", hint(t, b"v1.1.0 rollout 10"))         # inside the gap: at the gap's end
print("MALFORMED", hint(t, bytes([118, 10, 49])), hint(t, b" v1"), hint(t, b"x" * 81))
print("FOREIGN", hint(t, b"v5.0.0", b"lcm/other/repo/release"))
with open(hal.root + "/lcm/state/push.json") as f:
    print("SAVED", f.read().replace(" ", ""))
again = Agent(hal, cfg, checktimer)                        # after a reset: the gap is remembered
print("GAP", again.gap_until > 3000, again.last_hint.replace(" ", "_"))
"""


def test_hints_are_spread_rate_limited_and_remembered(tmp_path: Path, mpy: Any) -> None:
    root = tmp_path / "dev"
    root.mkdir()
    env = {"LCM_ROOT": str(root), "LCM_MAC": "240ac4000001"}
    # The manager "in ROM" as on a board; the snippet and its data in the pass's heap.
    out = mpy.run(SNIPPET, extra_env=env, rom=True).stdout
    values = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line}
    assert values["INSTALLED"] == ["14300"], out  # 4 h from 0, asked at 100: unchanged
    forged = int(values["FORGED"][0])
    assert 0 <= forged <= 60, out  # within push_spread_s
    # The same hint, half-way to that check, moves nothing (the spread is random: a
    # fixed 10 s later the check could already be due).
    assert values["AGAIN"][0] == values["AGAIN"][1], out
    # A new hint 10 s after the hint-triggered check: at the end of the one-hour gap.
    assert values["OTHER"] == ["3590"], out
    assert values["MALFORMED"] == ["3590"] * 3 and values["FOREIGN"] == ["3590"], out
    assert "push: ignored a malformed hint" in out
    assert '"hint":"v1.1.0rollout10"' in values["SAVED"][0], out
    assert values["GAP"] == ["True", "v1.1.0_rollout_10"], out


LONG_ERROR = """
import json, os
from lcm_sim.unix import UnixHal
from lcm_device import fleet
from lcm_device.fleet import Agent

hal = UnixHal()
os.mkdir(hal.root + "/lcm")
os.mkdir(hal.root + "/lcm/state")
cfg = {"repo": "acme/widget", "mqtt_url": "mqtt://127.0.0.1:1", "check_interval_s": 14400}
# A hostile server's bytes, shown escaped in the engine's line (the HTTP client's repr).
line = "app: check failed: HTTPError: Location has an invalid character: " + repr("\\x01" * 100)
fleet.record_check(hal, ["idle", "failed"], line, 12345)
status = json.loads(Agent(hal, cfg, None).status("online"))
print("RESULT", json.dumps(status["result"]).replace(" ", ""))
print("ERROR", len(status["error"]), status["error"][:18].replace(" ", "_"))
"""


def test_a_long_error_line_is_cut_not_lost_in_the_status(tmp_path: Path, mpy: Any) -> None:
    """The check record (read back in 512 bytes) once held the whole error line: a hostile
    server's escaped bytes made it too long to read, and the fleet status lost the last
    check's result and error altogether."""
    root = tmp_path / "dev"
    root.mkdir()
    env = {"LCM_ROOT": str(root), "LCM_MAC": "240ac4000001"}
    out = mpy.run(LONG_ERROR, extra_env=env, rom=True).stdout  # the manager in ROM, as on a board
    values = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line}
    assert values["RESULT"] == ['["idle","failed"]'], out
    assert 100 <= int(values["ERROR"][0]) <= 160 and values["ERROR"][1] == "app:_check_failed:", out
