"""Helpers for the boot-state tests: one boot of a simulated device, damage done from outside.

A power cut is a killed process, a torn file is truncated or left with a tail of
0xFF (what FAT or SPIFFS can leave of a file written when the power went), a full
or read-only flash is the unix HAL's `LCM_FLASH_FAIL` (lcm_sim/unix.py).
"""

from __future__ import annotations

import os
import random
import signal
from pathlib import Path
from typing import Any

from lcm_device.slots import APP_NEXT
from lcm_sim import EXIT_RESET
from publisher.device.simulate import boot_once, read_state
from tests.device.enginekit import engine_env, engine_heap, slot_is_complete, start_device

SWEEP_ENV = "LCM_POWERCUT_SWEEP"


def sweep() -> bool:
    """True for the exhaustive runs (`LCM_POWERCUT_SWEEP=1 pytest tests/device/...`)."""
    return os.environ.get(SWEEP_ENV) == "1"


def sample(points: list[int], n: int, rng: random.Random) -> list[int]:
    """All points in a sweep; else `n` of them, the first and last always included."""
    if sweep() or len(points) <= n:
        return points
    middle = rng.sample(points[1:-1], n - 2)
    return sorted([points[0], *middle, points[-1]])


def boot(
    state: Path,
    mpy: Any,
    *,
    cause: str = "reset",
    check_now: bool = False,
    fault_at: int = 0,
    env: dict[str, str] | None = None,
) -> tuple[int, str]:
    """One boot in the fixture's heap: (exit code, output). An update boot's reset into
    its app boot (the marker APP_NEXT left behind) is followed: both are one boot here,
    as a test that asks for a check means its outcome and the app run after it."""
    code, lines = boot_once(
        state,
        heap=engine_heap(mpy),
        cause=cause,
        check_now=check_now,
        fault_at=fault_at,
        env={**engine_env(mpy), **(env or {})},
    )
    while code == EXIT_RESET and (state / APP_NEXT.lstrip("/")).exists():
        code, more = boot_once(
            state, heap=engine_heap(mpy), cause="reset", env={**engine_env(mpy), **(env or {})}
        )
        lines += ["--- app boot", *more]
    return code, "\n".join(lines)


def boot_until_app(state: Path, mpy: Any, *, env: dict[str, str] | None = None, **kw: Any) -> str:
    """Boot (resets restart it) until a boot ends with the app having run; that boot's output."""
    outs = []
    for _ in range(8):
        code, out = boot(state, mpy, env=env, **kw)
        outs.append(out)
        kw = {"cause": "reset"}
        if code == 0:
            return out
        assert code == 75, "\n".join(outs)
    raise AssertionError("no boot reached the app:\n" + "\n".join(outs))


def kill_after(state: Path, mpy: Any, seconds: float, *, cause: str, env: dict[str, str]) -> str:
    """Power the device on and cut its power (SIGKILL) after `seconds`, or at its end."""
    proc = start_device(
        state,
        mpy,
        "main.py",
        env={"LCM_BOOT_CAUSE": cause, "LCM_ROOT": str(state.resolve()), **env},
        cwd=state,
    )
    try:
        out, _ = proc.communicate(timeout=seconds)
    except Exception:
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
    return out


def kill_when(state: Path, mpy: Any, marker: str, *, cause: str, env: dict[str, str]) -> str:
    """Power the device on; cut its power (SIGKILL) once it printed `marker`."""
    proc = start_device(
        state,
        mpy,
        "main.py",
        env={"LCM_BOOT_CAUSE": cause, "LCM_ROOT": str(state.resolve()), **env},
        cwd=state,
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if marker in line:
            proc.send_signal(signal.SIGKILL)
            break
    proc.stdout.close()
    proc.wait(timeout=60)
    return "".join(lines)


def last_written(state: Path) -> Path | None:
    """The file whose content changed last (what a power cut could have torn)."""
    files = [p for p in state.rglob("*") if p.is_file()]
    return max(files, key=lambda p: p.stat().st_mtime_ns, default=None)


def tear(path: Path, rng: random.Random) -> str:
    """Truncate `path`, or overwrite its tail with 0xFF (same length); says which."""
    data = path.read_bytes()
    if not data:
        return f"{path.name} empty, left as is"
    cut = rng.randrange(len(data))
    if rng.random() < 0.5:
        path.write_bytes(data[:cut])
        return f"{path.name} truncated to {cut} of {len(data)} bytes"
    path.write_bytes(data[:cut] + b"\xff" * (len(data) - cut))
    return f"{path.name} 0xFF from byte {cut} of {len(data)}"


def running_app(state: Path, out: str) -> str:
    """The version the boot ran (its last APP line), after checking that its slot is
    complete and verified against its signed manifest."""
    st = read_state(state)
    assert st.get("app") in ("app0", "app1"), out
    assert slot_is_complete(state, st["app"]), out
    apps = [line for line in out.splitlines() if line.startswith("APP ")]
    assert apps, out
    tag = apps[-1].split()[1]
    assert tag == st["app_tag"], out
    return tag
