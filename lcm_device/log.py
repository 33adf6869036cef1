"""Device logging: console, a ring buffer on flash, and UDP lines to `lcm logs`.

`setup(hal, cfg)` once at boot, then `log(text)` anywhere. Logging never
raises: a full flash, a missing network or a bad config must not break an
update, so every failure is swallowed after the console print.

Set up on demand: a first line without `setup` sets it up from the board's
HAL (made then if this process had none yet) and config.
The boot releases this module before the app (the app's heap:
lcm_device.boot) unless it is online or a fleet link logs; a line logged while the app runs (the
check timer, `lcm.confirm()`) loads it again, and the sequence goes on from
the ring.

The line and ring formats, shared with `lcm logs`, are cert_sector/logline.py's.
"""

import binascii

from cert_sector.logline import BROADCAST, DEFAULT_PORT, RING, RING_OLD, format_line, read_ring
from lcm_device.compat import const, file_size, unload, uptime_s

_HALF = const(2048)

_hal = None
_dev = "000000000000"
_seq = 0
_size = 0  # bytes in the current half
_torn = False  # the current half may end in a torn record (power cut mid-write)
_online = False
_target = None  # (host, port) once set up; None: BROADCAST, DEFAULT_PORT (no tuple in RAM)
_sock = None  # (socket, address) once looked up; False: the lookup failed
_ready = False  # set up (by the boot, or on demand at the first line)


def setup(hal, cfg):
    """Remember the HAL and the UDP target; continue the sequence from the ring."""
    global _hal, _dev, _seq, _size, _torn, _target, _ready
    _hal = hal
    _ready = True
    try:
        _dev = binascii.hexlify(hal.unique_id()).decode()
        _target = (cfg.get("log_host") or BROADCAST, int(cfg.get("log_port") or DEFAULT_PORT))
    except Exception:
        pass
    online(_online)  # the target may be another: looked up again at the next line
    try:
        for line in read_ring(hal.root):
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


def _on_demand():
    # A line before any setup: this module was released before the app and loaded again.
    # The config module is released again (the app's heap) unless something else loaded it.
    import sys

    from lcm_device.hal import get

    hal = get()  # made here when nothing needed it before (the app boot after an update boot)
    had = "lcm_device.config" in sys.modules
    from lcm_device import config

    setup(hal, config.load(hal))
    if not had:
        unload(["lcm_device.config"], True)


def is_online():
    return _online


def online(up):
    """Tell the logger whether the network is up (the manager calls this after Wi-Fi)."""
    global _online, _sock
    _online = up
    if _sock:
        try:
            _sock[0].close()
        except Exception:
            pass
    # Up again (or down): the next line opens a socket and looks the target up again,
    # also after a lookup that failed.
    _sock = None


def log(text):
    """Print `text`, append it to the ring, and send it over UDP when online. Never raises."""
    global _seq, _sock, _ready
    if not _ready:
        _ready = True  # once: a setup that fails is not tried again at every line
        try:
            _on_demand()
        except Exception:
            pass
    try:
        _seq += 1
        when = None
        if _hal is not None:
            try:
                when = _hal.time()
            except Exception:
                pass
        if when is None:
            when = "+%ss" % (uptime_s(),)
        line = format_line(_dev, _seq, when, text)
        print(line)
    except Exception:
        return
    if _hal is not None:
        try:
            _append(line)
        except Exception:
            pass
    if _online and _sock is not False:
        try:
            if _sock is None:
                # False until it worked: a target that does not resolve is looked up once
                # per online(), not at every line (an unanswered DNS query blocks seconds).
                _sock = False
                import socket

                host, port = _target or (BROADCAST, DEFAULT_PORT)
                addr = socket.getaddrinfo(host, port)[0][-1]
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                try:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
                except Exception:
                    pass
                _sock = (s, addr)
            _sock[0].sendto(line.encode() + b"\n", _sock[1])
        except Exception:
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
