"""The device's log formats, shared by the device (lcm_device.log) and `lcm logs`.

Line format (console, ring and UDP alike), fields separated by one space:

    DEVICE SEQ TIME TEXT

DEVICE is the hex of `hal.unique_id()`; SEQ a decimal sequence number that
keeps rising across reboots (read back from the ring at `setup`); TIME is
`2026-11-24T08:07:38Z` when `hal.time()` knows the clock, else `+UPTIMEs`
(seconds since this boot). TEXT is one line (newlines become spaces), at most
MAX_TEXT characters.

The ring on flash is two halves, `log.ring` (being appended) and
`log.ring.old` (the previous half); when the current half would pass
2 KB it is renamed over the old one (lcm_device.log), so the ring never
exceeds about 4 KB. Each record is `LEN LINE\\n` with LEN the byte length of
LINE: a write torn by a power cut leaves a record whose length does not match
(or has no newline), which `read_ring` skips, so a torn write loses at most
that one line (whose number is not reused: it may have gone out over UDP).
The next record after a torn one starts on a fresh line.

Rules: L1 a line is `DEVICE SEQ TIME TEXT`, one line of at most MAX_TEXT
characters of text; L2 TIME is ISO 8601 UTC or `+UPTIMEs`; L3 a ring record
is `LEN LINE\\n`, and one whose length or newline is wrong is skipped.
Pure Python, the same on MicroPython and CPython.
"""

RING = "/lcm/state/log.ring"
RING_OLD = "/lcm/state/log.ring.old"
DEFAULT_PORT = 45678
BROADCAST = "255.255.255.255"
# Longest record on flash: length prefix + header + text + newline.
MAX_RECORD = 256
MAX_TEXT = 200


def format_line(dev, seq, when, text):
    """One log line; `when` is Unix seconds (int) or a string such as `+12s`."""
    text = str(text).replace("\n", " ").replace("\r", " ")[:MAX_TEXT]
    if not isinstance(when, str):
        when = iso_time(when)
    return "%s %s %s %s" % (dev, seq, when, text)


def iso_time(t):
    """`YYYY-MM-DDTHH:MM:SSZ` for Unix seconds, computed by hand because
    `time.gmtime` uses a port-specific epoch (2000 on some boards)."""
    t = int(t)
    days, secs = t // 86400, t % 86400
    # Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    y = yoe + era * 400 + (1 if m <= 2 else 0)
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % (y, m, d, secs // 3600, secs // 60 % 60, secs % 60)


def read_ring(root):
    """Yield the buffered lines of the device whose flash is at `root`, oldest first;
    torn records are skipped (rule L3)."""
    for path in (root + RING_OLD, root + RING):
        try:
            with open(path, "rb") as f:
                while True:
                    raw = f.readline(MAX_RECORD)
                    if not raw:
                        break
                    space = raw.find(b" ")
                    if raw[-1:] != b"\n" or space <= 0:
                        continue
                    try:
                        if int(raw[:space]) == len(raw) - space - 2:
                            yield raw[space + 1 : -1].decode()
                    except (ValueError, UnicodeError):
                        pass
        except OSError:
            pass
