"""Release sequence numbers that only go up, whatever is deleted (docs/formats.md).

A device installs a release only when its manifest's sequence is above the
one it has installed. Deleting a release (on GitHub's web page, or with
`lcm release delete`) removes its manifest, so "highest existing + 1" could
hand a device's installed sequence to the next release, which the device
would then refuse as a roll-back. Sequences are therefore taken from the
clock, which nobody can delete:

  Q1  A new sequence is above every sequence the repo still shows (drafts and
      set-aside manifests too), and at least the host's clock (Unix seconds,
      from the `Date` header of the host's answers; the publisher's own clock
      when the host sends none).
  Q2  A release is published only once the host's clock is past its sequence,
      so every release that could have been installed (and deleted since) has a
      sequence below the clock any later publish starts from.

Q2 costs at most a second, spent while the assets upload; a release that takes
longer than that to upload (any real one) does not wait at all.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from publisher.release.errors import ReleaseConflictError

MAX_SEQUENCE = 0xFFFFFFFF
# Rule Q2 waits at most this long for the clock (a burst of releases in one second).
MAX_WAIT_S = 30


def parse_http_date(value: str | None) -> int | None:
    """Unix seconds from an HTTP `Date` header, or None when absent or unreadable."""
    if not value:
        return None
    try:
        return int(email.utils.parsedate_to_datetime(value).timestamp())
    except (TypeError, ValueError, IndexError):
        return None


@dataclass
class Ticker:
    """The local clock the publisher measures elapsed time and waits with."""

    monotonic: Callable[[], float] = field(default=time.monotonic)
    sleep: Callable[[float], None] = field(default=time.sleep)


@dataclass
class HostClock:
    """The host's time, read once from a `Date` header and advanced by a local Ticker.

    The `Date` header is whole seconds rounded down, so `now()` never runs ahead
    of the host's true time.
    """

    date: int
    ticker: Ticker = field(default_factory=Ticker)
    started: float = field(init=False)

    def __post_init__(self) -> None:
        self.started = self.ticker.monotonic()

    def now(self) -> float:
        return self.date + (self.ticker.monotonic() - self.started)

    def wait_past(self, seq: int) -> bool:
        """Rule Q2: sleep until the host's clock is past second `seq`.

        False (without sleeping) when that is more than MAX_WAIT_S away: the repo
        already holds sequences from the future (an old `--seq`), and waiting for
        them is no use; the caller warns.
        """
        if seq + 1 - self.now() > MAX_WAIT_S:
            return False
        while (left := seq + 1 - self.now()) > 0:
            self.ticker.sleep(left)
        return True


def next_sequence(used: int, clock: HostClock, requested: int | None, where: str) -> int:
    """Rule Q1: the sequence of a new release, `used` being the highest the repo shows."""
    floor = int(clock.now())
    if requested is not None:
        if requested <= used:
            raise ReleaseConflictError(
                f"--seq {requested} is not above sequence {used} of release {where}: "
                "devices would refuse it as a roll-back"
            )
        if requested >= floor:
            raise ReleaseConflictError(
                f"--seq {requested} is above the host's clock ({floor}, Unix seconds): "
                "if that release were deleted, a later one could get a sequence devices "
                "already installed; leave --seq out"
            )
        return requested
    seq = max(used + 1, floor)
    if seq > MAX_SEQUENCE:
        raise ReleaseConflictError(
            f"the sequence number would overflow 32 bits: release {where} has {used} "
            f"(check it with `lcm release verify --tag {where}`: a manifest signed elsewhere?)"
        )
    return seq
