"""Fleet simulation: 10 000 devices through a mass power-on and a release, lcm vs LCM.

An event simulation (heapq, one simulated clock, a seeded RNG), not processes.
Our devices run the real `lcm_device.schedule.Schedule` on CPython (in memory:
`hal=None`, the benchmark's clock as `now_s`, the seeded RNG as jitter). LCM's
schedule is modelled as its README describes it: first check 1 s after
power-up, then each hold-off x20 up to a week, reset at every power-up.

Scenario (times in seconds):
- warm-up: each device was installed at a random moment of the week before;
- t = 0: a power outage switches the whole fleet off; at t = OUTAGE_S the
  power returns and every device powers on within POWER_JITTER_S;
- the network is reachable NETWORK_DELAY_S after the power returns (a check
  before that fails without reaching the server);
- a release is published at some moment after the power-on; a device
  updates at its first successful check after it. Check times do not depend
  on the release (an update is a reset, not a power-on), so time-to-update is
  measured for many release moments from one run.

Printed, for each schedule: peak checks per minute reaching the server after
the power-on, requests per day on the power-on day and in steady state (an
idle check is one request), and the median time-to-update for releases at
fixed offsets and at a uniformly random moment of the week after the power-on.

Run: python bench/bench_fleet.py [--devices N] [--seed S]
"""

from __future__ import annotations

import argparse
import bisect
import heapq
import random
import statistics
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lcm_device.schedule import Schedule

MINUTE = 60
HOUR = 3600
DAY = 86400
WEEK = 7 * DAY

WARMUP_S = WEEK
OUTAGE_S = HOUR
POWER_JITTER_S = 2.0
NETWORK_DELAY_S = 0.0
# Second scenario: the router and the uplink come back half an hour after the power.
LATE_NETWORK_S = 1800.0
# Releases measured: fixed offsets after the power-on, and one per hour of the week.
RELEASE_OFFSETS = {"1 h": HOUR, "1 day": DAY, "3 days": 3 * DAY, "10 days": 10 * DAY}
RANDOM_RELEASES = [h * HOUR for h in range(7 * 24)]
# Simulated time after the power-on: the last release plus LCM's longest hold-off.
HORIZON_S = 10 * DAY + WEEK + DAY


class Device(Protocol):
    name: str

    def power_on(self, now: float) -> float:
        """Power-up at `now`; returns when the first check happens."""
        ...

    def checked(self, now: float, reached: bool) -> float:
        """A check at `now` reached the server or not; returns when the next one happens."""
        ...


class Ours:
    """A device running lcm's schedule (the real device code)."""

    name = "lcm"

    def __init__(self, rand: Callable[[], float], interval_s: int = 14400) -> None:
        self.sched = Schedule(None, {"check_interval_s": interval_s}, rand=rand)

    def power_on(self, now: float) -> float:
        self.sched.on_boot(now, True)
        return now + self.sched.seconds_until_due(now)

    def checked(self, now: float, reached: bool) -> float:
        if reached:
            self.sched.record_success(now)
        else:
            self.sched.record_failure(now)
        return now + self.sched.seconds_until_due(now)


class Lcm:
    """LCM's schedule: 1 s after power-up, then x20 up to a week; reset at power-up."""

    name = "LCM"

    def __init__(self, rand: Callable[[], float]) -> None:
        self.hold = 1.0

    def power_on(self, now: float) -> float:
        self.hold = 1.0
        return now + self.hold

    def checked(self, now: float, reached: bool) -> float:
        self.hold = min(self.hold * 20, WEEK)
        return now + self.hold


@dataclass
class Run:
    name: str
    devices: int
    checks: list[list[float]]  # per device: times (after the power-on) of checks that reached
    attempts: int


def simulate(
    make: Callable[[Callable[[], float]], Device],
    devices: int,
    seed: int,
    network_delay: float = NETWORK_DELAY_S,
) -> Run:
    rng = random.Random(seed)
    fleet = [make(rng.random) for _ in range(devices)]
    # Warm-up: installed at random moments of the week before the outage.
    events: list[tuple[float, int]] = []
    for i, dev in enumerate(fleet):
        start = -WARMUP_S * rng.random()
        heapq.heappush(events, (dev.power_on(start), i))
    while events and events[0][0] < 0:
        now, i = heapq.heappop(events)
        heapq.heappush(events, (fleet[i].checked(now, True), i))
    # The outage drops every pending check; the power returns for all at once.
    power_on = float(OUTAGE_S)
    events = []
    for i, dev in enumerate(fleet):
        t = power_on + POWER_JITTER_S * rng.random()
        heapq.heappush(events, (dev.power_on(t), i))
    network_up = power_on + network_delay
    end = power_on + HORIZON_S
    checks: list[list[float]] = [[] for _ in range(devices)]
    attempts = 0
    while events and events[0][0] < end:
        now, i = heapq.heappop(events)
        attempts += 1
        reached = now >= network_up
        if reached:
            checks[i].append(now - power_on)
        heapq.heappush(events, (fleet[i].checked(now, reached), i))
    name = fleet[0].name
    return Run(name, devices, checks, attempts)


def peak_per_minute(run: Run, until: float = HORIZON_S) -> int:
    per_minute = Counter(int(t // MINUTE) for times in run.checks for t in times if t < until)
    return max(per_minute.values())


def requests_per_day(run: Run, day: int) -> int:
    lo, hi = day * DAY, (day + 1) * DAY
    return sum(1 for times in run.checks for t in times if lo <= t < hi)


def steady_requests_per_day(run: Run) -> float:
    days = range(8, 15)  # one whole week, well after the power-on
    return statistics.mean(requests_per_day(run, d) for d in days)


def times_to_update(run: Run, release: float) -> list[float]:
    out = []
    for times in run.checks:
        k = bisect.bisect_left(times, release)
        if k < len(times):
            out.append(times[k] - release)
    return out


def median_time_to_update(run: Run, releases: Sequence[float]) -> float:
    waits: list[float] = []
    for release in releases:
        waits.extend(times_to_update(run, release))
    return statistics.median(waits)


def fleet_figures(
    devices: int, seed: int, network_delay: float = NETWORK_DELAY_S
) -> dict[str, dict[str, float]]:
    """The comparison as numbers: {schedule name: {figure: value}}."""
    figures = {}
    makers: tuple[Callable[[Callable[[], float]], Device], ...] = (Ours, Lcm)
    for make in makers:
        run = simulate(make, devices, seed, network_delay)
        row = {
            "peak checks/min after power-on (first day)": peak_per_minute(run, DAY),
            "peak checks/min (whole run)": peak_per_minute(run),
            "requests on the power-on day": requests_per_day(run, 0),
            "requests/day in steady state": steady_requests_per_day(run),
            "median time-to-update, random release in the week (h)": median_time_to_update(
                run, RANDOM_RELEASES
            )
            / HOUR,
        }
        for label, offset in RELEASE_OFFSETS.items():
            row[f"median time-to-update, release at +{label} (h)"] = (
                median_time_to_update(run, [offset]) / HOUR
            )
        figures[run.name] = row
    return figures


def print_table(figures: dict[str, dict[str, float]]) -> None:
    ours, lcm = figures["lcm"], figures["LCM"]
    print(f"{'figure':<58} {'lcm':>12} {'LCM':>12}")
    for key in ours:
        print(f"{key:<58} {ours[key]:>12.1f} {lcm[key]:>12.1f}")
    key = "peak checks/min after power-on (first day)"
    print(f"peak checks/min after the power-on: LCM / lcm = {lcm[key] / ours[key]:.0f}x")
    key = "median time-to-update, random release in the week (h)"
    print(f"median time-to-update (random release): lcm {ours[key]:.1f} h, LCM {lcm[key]:.1f} h")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    for delay in (NETWORK_DELAY_S, LATE_NETWORK_S):
        print(
            f"\nfleet: {args.devices} devices, seed {args.seed}; outage {OUTAGE_S // 60} min, "
            f"power back within {POWER_JITTER_S} s, network {delay:.0f} s later"
        )
        print_table(fleet_figures(args.devices, args.seed, delay))
    print("\nbars (network back with the power): peak ratio >= 100x, lcm median <= LCM median")


if __name__ == "__main__":
    main()
