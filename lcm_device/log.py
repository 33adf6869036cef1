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
that one line. The next record after a torn one starts on a fresh line.
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
_torn = False  # the current half does not end with a newline (power cut mid-write)
_online = False
_host = BROADCAST
_port = DEFAULT_PORT
_sock = None
_addr = None
_boot_ms = ticks_ms()


def setup(hal, cfg):
    """Remember the HAL and the UDP target; continue the sequence from the ring."""
    global _hal, _dev, _seq, _size, _torn, _host, _port
    _hal = hal
    try:
        _dev = binascii.hexlify(hal.unique_id()).decode()
    except Exception:
        pass
    try:
        _host = cfg.get("log_host") or BROADCAST
        _port = int(cfg.get("log_port") or DEFAULT_PORT)
    except Exception:
        pass
    try:
        _seq = max(_seq, _last_seq(hal))
    except Exception:
        pass
    try:
        _size, _torn = _tail(hal.root + RING)
    except Exception:
        _size, _torn = 0, False


def online(up=True):
    """Tell the logger whether the network is up (the manager calls this after Wi-Fi)."""
    global _online, _sock, _addr
    _online = up
    if not up and _sock is not None:
        try:
            _sock.close()
        except Exception:
            pass
        _sock = None
        _addr = None


def log(text):
    """Print `text`, append it to the ring, and send it over UDP when online. Never raises."""
    global _seq
    try:
        _seq += 1
        line = format_line(_dev, _seq, _clock(), text)
    except Exception:
        return
    try:
        print(line)
    except Exception:
        pass
    if _hal is not None:
        try:
            _append(line)
        except Exception:
            pass
    if _online:
        try:
            _send(line)
        except Exception:
            pass


def format_line(dev, seq, when, text):
    """One log line; `when` is Unix seconds (int) or a string such as `+12s`."""
    text = str(text).replace("\n", " ").replace("\r", " ")
    if len(text) > _MAX_TEXT:
        text = text[:_MAX_TEXT]
    if not isinstance(when, str):
        when = iso_time(when)
    return dev + " " + str(seq) + " " + when + " " + text


def parse_line(line):
    """(device, seq, time, text) of a log line, or None when it is not one."""
    parts = line.split(" ", 3)
    if len(parts) < 3:
        return None
    try:
        seq = int(parts[1])
    except ValueError:
        return None
    if not parts[0] or seq < 0:
        return None
    return parts[0], seq, parts[2], parts[3] if len(parts) > 3 else ""


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
    """Yield the buffered lines, oldest first (only `hal.root` is used)."""
    for path in (hal.root + RING_OLD, hal.root + RING):
        for line in _records(path):
            yield line


def _clock():
    t = None
    if _hal is not None:
        try:
            t = _hal.time()
        except Exception:
            t = None
    if t is not None:
        return t
    return "+" + str(ticks_diff(ticks_ms(), _boot_ms) // 1000) + "s"


def _records(path):
    """Valid records of one ring half; a missing or unreadable file ends it."""
    try:
        with open(path, "rb") as f:
            while True:
                raw = f.readline(MAX_RECORD)
                if not raw:
                    break
                line = _check_record(raw)
                if line is not None:
                    yield line
    except OSError:
        return


def _check_record(raw):
    if raw[-1:] != b"\n":
        return None
    space = raw.find(b" ")
    if space <= 0:
        return None
    try:
        n = int(raw[:space])
        body = raw[space + 1 : -1]
        if n != len(body):
            return None
        return body.decode()
    except (ValueError, UnicodeError):
        return None


def _last_seq(hal):
    last = 0
    for line in read_ring(hal):
        parsed = parse_line(line)
        if parsed is not None and parsed[1] > last:
            last = parsed[1]
    return last


def _tail(path):
    """(size, torn) of the current half."""
    size = file_size(path)
    if size <= 0:
        return 0, False
    with open(path, "rb") as f:
        f.seek(size - 1)
        return size, f.read(1) != b"\n"


def _append(line):
    global _size, _torn
    body = line.encode()
    rec = str(len(body)).encode() + b" " + body + b"\n"
    if _torn:
        rec = b"\n" + rec
    fs = _hal.fs
    if _size and _size + len(rec) > _HALF:
        # Rename is atomic: the ring holds the old half or the new one, never neither.
        fs.rename(_hal.root + RING, _hal.root + RING_OLD)
        _size = 0
        if _torn:
            rec = rec[1:]
        _torn = False
    f = _open_append(fs, _hal.root + RING)
    try:
        # Until the write completes, a reset would leave a torn record: start the
        # next one on a fresh line in that case.
        _torn = True
        f.write(rec)
        _torn = False
    finally:
        f.close()
    _size += len(rec)


def _open_append(fs, path):
    # The HAL contract's `fs` may grow `open_append`; until it does, appending
    # (one small write per line) goes straight to the file.
    opener = getattr(fs, "open_append", None)
    if opener is not None:
        return opener(path)
    return open(path, "ab")


def _send(line):
    global _sock, _addr
    import socket

    if _sock is None:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        except Exception:
            pass
        _addr = socket.getaddrinfo(_host, _port)[0][-1]
        _sock = s
    _sock.sendto(line.encode() + b"\n", _addr)
