"""A simulated device in setup mode: `micropython -m lcm_sim.setup_mode ARGS`.

The device side of publisher/device/setup_sim.py: the unix HAL and config
around lcm_device.wifi. ARGS: mode (`setup`, or `connect`: station first),
HTTP port, DNS port, bind address, data heap in bytes (0: no limit).

With a data heap, every portal module is imported first and a ballast takes
all free heap but that many bytes (lcm_sim.rommodel.hold_all_but): on a
board the code is frozen (or in ROMFS) and costs no heap, so what is left
models the heap a board has for the portal's data.
"""

import sys

from lcm_device import config, log, wifi
from lcm_device.hal import get

mode, http_port, dns_port, bind, data_heap = sys.argv[1:6]
hal = get()
cfg = config.load(hal)
log.setup(hal, cfg)
if int(data_heap):
    # Every module the portal may import, the repo's check's included (form.validate):
    # imported later, its code would sit in the data heap, which on a board it does not.
    from cert_sector import encoding, errors  # noqa: F401
    from lcm_device.portal import dns, form, page, request, server, session  # noqa: F401
    from lcm_sim.rommodel import hold_all_but

    hal.wlan(0)
    print("setup-sim: data heap", hold_all_but(int(data_heap)))
args = {"http_port": int(http_port), "dns_port": int(dns_port), "bind": bind}
if mode == "setup":
    up = wifi.setup_mode(hal, cfg, **args)
else:
    wifi.connect_or_setup(hal, cfg, **args)
    up = True
print("RESULT", "connected" if up else "timeout")
