"""Power cuts from outside: the MicroPython process is killed (SIGKILL) at random moments of
an update, and in a share of the trials the file written last is torn as a flash without
atomic writes could leave it (truncated, or a tail of 0xFF).

After each cut the device boots again: it must run a complete release verified against
its signed manifest (old or new), without a download when the torn file was its boot
state or config; then a later check must finish the update. The default run samples
a few moments; `LCM_POWERCUT_SWEEP=1` runs 100 (the in-process cut at every flash
mutation is tests/device/test_powercut_engine.py).
"""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path
from typing import Any

from publisher.device.simulate import read_state
from tests.device.bootkit import (
    boot,
    boot_until_app,
    kill_after,
    last_written,
    running_app,
    sweep,
    tear,
)
from tests.device.enginekit import app_files, installed_v1, run, text
from tests.hostserver import running_host

TRIALS = 100 if sweep() else 8
TEAR_SHARE = 0.4
# Torn, these must cost no download: the boot state (two generations) and the config
# (its last good copy).
STATE_FILES = ("boot0.json", "boot1.json", "config.json", "config.good.json")


def test_sigkill_at_random_moments_with_torn_last_writes(tmp_path: Path, mpy: Any) -> None:
    rng = random.Random(20261204)
    with running_host(tmp_path) as host:
        repo, v1, golden = installed_v1(tmp_path, mpy, host)
        v2 = dict(v1)
        v2["lib/m01.py"] = b"VALUE = 'changed'\n" * 100
        v2["main.py"] = app_files("1.1.0", n=1)["main.py"]
        repo.publish("1.1.0", v2)

        # How long the update boot and the trial boot take uncut: the cuts fall in there.
        probe = tmp_path / "probe"
        shutil.copytree(golden, probe)
        started = time.monotonic()
        assert boot(probe, mpy, check_now=True)[0] == 75
        assert boot(probe, mpy)[0] == 0
        span = time.monotonic() - started

        torn = []
        for i in range(TRIALS):
            state = tmp_path / f"cut{i}"
            shutil.copytree(golden, state)
            at = rng.uniform(0, span)
            cut_out = kill_after(state, mpy, at, cause="power", env={"LCM_CHECK_NOW": "1"})
            if "lcm-hal: reset" in cut_out:
                # The update finished before the cut: the cut falls in the trial boot.
                cut_out += kill_after(state, mpy, at / 2, cause="reset", env={})
            what = ""
            if rng.random() < TEAR_SHARE:
                victim = last_written(state)
                assert victim is not None
                what = tear(victim, rng)
                torn.append(what)
            out = boot_until_app(state, mpy, cause="power")
            where = f"cut {i} at {at:.2f} s, {what or 'not torn'}\n{cut_out}\n---\n{out}"
            assert running_app(state, out) in ("v1.0.0", "v1.1.0"), where
            if what.startswith(STATE_FILES):
                assert "manifest:" not in out, where
            later = run(state, mpy)
            assert later.state["app_tag"] == "v1.1.0", f"{where}\n{text(later)}"
            assert running_app(state, text(later)) == "v1.1.0", where
            assert read_state(state)["app_trial"] is None, where
            shutil.rmtree(state)
        print(f"SIGKILL cuts: {TRIALS}, torn last writes: {len(torn)}: {torn}")
        assert torn
