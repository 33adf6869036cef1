"""The fleet simulation (bench/bench_fleet.py) on 1 000 devices: the schedule's bars as ratios.

One seeded run per schedule; every figure is a count of simulated events, never
a wall-clock time.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from lcm_device.schedule import Schedule

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench_fleet.py"
DEVICES = 1000


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_fleet", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_fleet"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fleet() -> ModuleType:
    return load_bench()


@pytest.fixture(scope="module")
def figures(fleet: ModuleType) -> dict[str, dict[str, float]]:
    return fleet.fleet_figures(DEVICES, seed=7)


def test_peak_after_mass_power_on_is_100x_lower_than_lcms(figures) -> None:
    key = "peak checks/min after power-on (first day)"
    ours, lcm = figures["lcm"][key], figures["LCM"][key]
    # LCM: the whole fleet 1 s after the power returns, and again 20 s later.
    assert lcm == 2 * DEVICES
    assert lcm / ours >= 100


def test_median_time_to_update_is_no_worse_than_lcms(figures) -> None:
    key = "median time-to-update, random release in the week (h)"
    assert figures["lcm"][key] <= figures["LCM"][key]
    # Ours: about half the 4 h interval, wherever the release falls.
    assert 1.5 <= figures["lcm"][key] <= 2.5


def test_request_rates_match_the_interval(figures) -> None:
    steady = figures["lcm"]["requests/day in steady state"]
    assert abs(steady - DEVICES * 6) <= DEVICES * 6 * 0.05  # one check per 4 h
    # A power-on does not add checks to the day: the first check replaces a regular one.
    assert figures["lcm"]["requests on the power-on day"] <= DEVICES * 6 * 1.05


def test_fleet_runs_the_real_device_schedule(fleet: ModuleType) -> None:
    device = fleet.Ours(lambda: 0.5)
    assert isinstance(device.sched, Schedule)
    # New device: at once; success: the middle of 4 h +/- 25 %; a later
    # power-on: the middle of the 4 h spread window.
    assert device.power_on(100.0) == 100.0
    assert device.checked(200.0, True) == 200.0 + 14400
    assert device.power_on(1000.0) == 1000.0 + 7200
    lcm = fleet.Lcm(lambda: 0.5)
    times = [lcm.power_on(0.0)]
    for _ in range(6):
        times.append(lcm.checked(times[-1], True))
    assert times == [1, 21, 421, 8421, 168421, 168421 + fleet.WEEK, 168421 + 2 * fleet.WEEK]


def test_a_late_network_does_not_synchronise_the_retries(fleet: ModuleType) -> None:
    """Power returns, the network only 30 min later: the devices whose first check
    failed retry with full jitter, so the peak stays close to the steady rate instead
    of turning into a second stampede. (LCM's is the whole fleet at once, 8421 s after
    power-up, because its 1 s, 21 s and 421 s checks failed.)"""
    up = fleet.simulate(fleet.Ours, DEVICES, seed=3)
    late = fleet.simulate(fleet.Ours, DEVICES, seed=3, network_delay=fleet.LATE_NETWORK_S)
    lcm = fleet.simulate(fleet.Lcm, DEVICES, seed=3, network_delay=fleet.LATE_NETWORK_S)
    assert late.attempts > sum(len(t) for t in late.checks)  # some checks did fail
    peak_up = fleet.peak_per_minute(up, fleet.DAY)
    peak_late = fleet.peak_per_minute(late, fleet.DAY)
    assert peak_late <= 3 * peak_up
    assert fleet.peak_per_minute(lcm, fleet.DAY) == DEVICES
    assert DEVICES / peak_late >= 20
