"""Device logging: console, a ring buffer on flash, and UDP lines to `lcm logs`.

`setup(hal, cfg)` once at boot, then `log(text)` anywhere. Logging never
raises: a full flash, a missing network or a bad config must not break an
update, so every failure is swallowed after the console print.

Line format (console, ring and UDP alike), fields separated by one space:

    DEVICE SEQ TIME TEXT

DEVICE is the hex of `hal.unique_id()`; SEQ a decimal sequence number that
keeps rising across reboots (read back from the ring at `setup`); TIME is
`2026-11-24T08:07:38Z` when `hal.time()` knows the clock, else `+UPTIMEs`
(seconds since this boot). TEXT is one line (newlines become spaces), at most
_MAX_TEXT bytes.

The ring on flash is two halves, `log.ring` (being appended) and
`log.ring.old` (the previous half); when the current half would pass
_HALF bytes it is renamed over the old one, so the ring never exceeds about
2 x _HALF bytes. Each record is `LEN LINE\\n` with LEN the byte length of
LINE: a write torn by a power cut leaves a record whose length does not match
(or has no newline), which `read_ring` skips, so a torn write loses at most
that one line (whose number is not reused: it may have gone out over UDP).
The next record after a torn one starts on a fresh line.
"""

import binascii

from lcm_device.compat import const, file_size, ticks_diff, ticks_ms

RING = "/lcm/state/log.ring"
RING_OLD = "/lcm/state/log.ring.old"
DEFAULT_PORT = 45678
BROADCAST = "255.255.255.255"
# Longest record on flash: length prefix + header + text + newline.
MAX_RECORD = 256

_HALF = const(2048)
_MAX_TEXT = const(200)

_hal = None
_dev = "000000000000"
_seq = 0
_size = 0  # bytes in the current half
_torn = False  # the current half may end in a torn record (power cut mid-write)
_online = False
_target = (BROADCAST, DEFAULT_PORT)
_sock = None
_boot_ms = ticks_ms()


def setup(hal, cfg):
    """Remember the HAL and the UDP target; continue the sequence from the ring."""
    global _hal, _dev, _seq, _size, _torn, _target
    _hal = hal
    try:
        _dev = binascii.hexlify(hal.unique_id()).decode()
        _target = (cfg.get("log_host") or BROADCAST, int(cfg.get("log_port") or DEFAULT_PORT))
    except Exception:
        pass
    try:
        for line in read_ring(hal):
            _seq = max(_seq, int(line.split(" ", 2)[1]))
    except Exception:
        pass
    try:
        from lcm_device.hal.fs import makedirs

        makedirs(hal.fs, hal.root + "/lcm/state")
    except Exception:
        pass
    try:
        # A current half that does not end with a newline was cut mid-write.
        path = hal.root + RING
        _size = max(0, file_size(path))
        with open(path, "rb") as f:
            f.seek(_size - 1)
            _torn = f.read(1) != b"\n"
    except Exception:
        _torn = _size > 0
    if _torn:
        # The torn line's number may have gone out over UDP: never reuse it.
        _seq += 1


def online(up=True):
    """Tell the logger whether the network is up (the manager calls this after Wi-Fi)."""
    global _online, _sock
    _online = up
    if not up and _sock is not None:
        try:
            _sock.close()
        except Exception:
            pass
        _sock = None


def log(text):
    """Print `text`, append it to the ring, and send it over UDP when online. Never raises."""
    global _seq, _sock
    try:
        _seq += 1
        when = None
        if _hal is not None:
            try:
                when = _hal.time()
            except Exception:
                pass
        if when is None:
            when = "+" + str(ticks_diff(ticks_ms(), _boot_ms) // 1000) + "s"
        line = format_line(_dev, _seq, when, text)
        print(line)
    except Exception:
        return
    if _hal is not None:
        try:
            _append(line)
        except Exception:
            pass
    if _online:
        try:
            if _sock is None:
                import socket

                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                try:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
                except Exception:
                    pass
                _sock = (s, socket.getaddrinfo(_target[0], _target[1])[0][-1])
            _sock[0].sendto(line.encode() + b"\n", _sock[1])
        except Exception:
            pass


def format_line(dev, seq, when, text):
    """One log line; `when` is Unix seconds (int) or a string such as `+12s`."""
    text = str(text).replace("\n", " ").replace("\r", " ")[:_MAX_TEXT]
    if not isinstance(when, str):
        when = iso_time(when)
    return dev + " " + str(seq) + " " + when + " " + text


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


def read_ring(hal):
    """Yield the buffered lines, oldest first; torn records are skipped (only `hal.root`
    is used, so CPython can read a simulated device's ring)."""
    for path in (hal.root + RING_OLD, hal.root + RING):
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


def _append(line):
    global _size, _torn
    body = line.encode()
    rec = str(len(body)).encode() + b" " + body + b"\n"
    fs = _hal.fs
    if _size and _size + len(rec) > _HALF:
        # Rename is atomic: the ring holds the old half or the new one, never neither.
        fs.rename(_hal.root + RING, _hal.root + RING_OLD)
        _size = 0
        _torn = False
    if _torn:
        # The next record after a torn one starts on a fresh line.
        rec = b"\n" + rec
    f = fs.open_append(_hal.root + RING)
    try:
        _torn = True  # until the write is complete
        f.write(rec)
        _torn = False
    finally:
        f.close()
    _size += len(rec)
