"""Refuse, before anything is signed or uploaded, what every device would refuse.

A release that verifies on the publisher but that devices refuse strands the
fleet just as surely as a broken one. The rules (each check names its rule):

  P1  Every `--board` is a board name devices report (KNOWN_BOARDS), unless
      `--new-board` says a new kind of board is meant.
  P2  A firmware release targets only boards that can install firmware (an
      ESP32-family chip with OTA partitions; never an ESP8266).
  P3  The cert sector is not expired at the host's clock; one that expires
      within EXPIRY_WARNING_DAYS is published with a warning.
  P4  The cert sector is not older than the newest one the repo has published
      (devices that hold that one refuse an older or different one), and a newer
      one is a valid rotation of it (signed by its roots), as devices require.
  P5  The version is not below the newest published version of its channel
      unless `--downgrade` says so (devices install by sequence, so they would
      "update" to the older version).
  P6  An app release holds its entry point at the top, `main.py` or `main.mpy`:
      devices run the app by importing `main` from its slot, so without one every
      device would install it, fail its trial boots and roll it back.
The release key must be one the sector lists (checked with the sector in publish.py).
"""

from __future__ import annotations

from cert_sector.errors import TrustError
from cert_sector.fwimage import CHIP_IDS
from cert_sector.semver import parse_version
from publisher import sector_format as sf
from publisher.release.errors import ReleaseConflictError, SourceError
from publisher.timefmt import format_date

# Board names devices report (their HAL, or `lcm device image --board`).
KNOWN_BOARDS = ("esp32", "esp8266")
# Boards whose devices install firmware releases into an OTA partition.
FIRMWARE_BOARDS = tuple(CHIP_IDS)
EXPIRY_WARNING_DAYS = 30


APP_ENTRY = ("main.py", "main.mpy")


def check_app_entry(paths: list[str]) -> None:
    """Rule P6 for the paths of an app release's files."""
    if not any(path in APP_ENTRY for path in paths):
        raise SourceError(
            "SOURCE has no main.py (or main.mpy) at its top: devices start the app by "
            "importing main, so they would install this release and roll it back"
        )


def check_boards(boards: list[str], kind: str, new_board: bool) -> None:
    for board in boards:
        # Rule P2 first: an ESP8266 is a known board, but not for firmware.
        if kind == "firmware" and board not in FIRMWARE_BOARDS:
            raise SourceError(
                f"--board {board}: a firmware release cannot be installed on {board} "
                f"(no OTA partitions; firmware boards: {', '.join(FIRMWARE_BOARDS)}); "
                "flash its firmware with `lcm device flash` instead"
            )
        if board not in KNOWN_BOARDS and not new_board:  # Rule P1
            raise SourceError(
                f"--board {board!r} is not a board lcm devices report "
                f"({', '.join(KNOWN_BOARDS)}), so every device would refuse the release; "
                "fix the name, or pass --new-board if devices are configured with it"
            )


def expiry_warnings(sector: sf.Sector, now: int, where: str) -> list[str]:
    """Rule P3: raise for an expired sector; a warning when it expires soon."""
    if not sector.expires:
        return []
    if sector.expires <= now:
        raise SourceError(
            f"cert sector {where} (sequence {sector.seq}) expired on "
            f"{format_date(sector.expires)}: devices that know the time refuse it; build a "
            "new one (`lcm certs build --previous ... --expires LATER`) and pass it with --certs"
        )
    days = (sector.expires - now) / 86400
    if days < EXPIRY_WARNING_DAYS:
        return [
            f"cert sector {where} expires on {format_date(sector.expires)}, in {days:.0f} day(s): "
            "rotate it before then (`lcm certs build --previous ...`), or devices that know "
            "the time refuse every release after that date"
        ]
    return []


def check_sector_is_newest(
    data: bytes, sector: sf.Sector, newest: tuple[bytes, str] | None, where: str
) -> None:
    """Rule P4 against the newest sector the repo published (bytes, tag of its release)."""
    if newest is None or data == newest[0]:
        return
    published_bytes, tag = newest
    published = sf.parse_sector(published_bytes)
    if sector.seq <= published.seq:
        same = "is a different sector with the same" if sector.seq == published.seq else "is older:"
        raise SourceError(
            f"cert sector {where} {same} sequence {sector.seq}, but {tag} already published "
            f"sector {published.seq}; devices that hold it refuse this one. Pass the newest "
            f"sector with --certs (or leave --certs out to reuse {tag}'s), or build a new one "
            "with `lcm certs build --previous`"
        )
    try:
        sf.verify_sector(data, published)
    except TrustError as exc:
        raise SourceError(
            f"cert sector {where} (sequence {sector.seq}) is not a valid rotation of sector "
            f"{published.seq} published in {tag}: {exc}; devices would refuse it. Build it with "
            "`lcm certs build --previous OLD --old-root-key ROOT.pem`"
        ) from None


def check_version_order(
    version: str, channel: str, newest: tuple[str, str] | None, downgrade: bool
) -> None:
    """Rule P5; `newest` is (version, tag) of the highest version published on `channel`."""
    if newest is None or downgrade:
        return
    if parse_version(version) < parse_version(newest[0]):
        raise ReleaseConflictError(
            f"v{version} is older than {newest[1]}, already published on the {channel} "
            f"channel: devices install the highest sequence, so every device on {newest[1]} "
            f"would go back to v{version}. Publish a higher version, or pass --downgrade "
            "if that is what you mean"
        )
