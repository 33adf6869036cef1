"""Times as people read them: every date lcm prints goes through here (never raw Unix seconds)."""

from __future__ import annotations

import datetime as dt


def format_date(unix: int | float) -> str:
    """`2026-12-04 15:48 UTC`: minutes are enough for expiries and release dates."""
    return dt.datetime.fromtimestamp(unix, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
