# ruff: noqa: F821  (metadata, package: given by tools/manifestfile.py when it runs this file)
# Freeze lcm into a MicroPython firmware (tools/manifestfile.py format).
#
# In the board's manifest (FROZEN_MANIFEST), add:
#     include("/path/to/lcm/manifest.py")
# then build the port as usual. Frozen modules sit behind the filesystem on
# sys.path, so the manager slot the boot shim puts first (/lcm/m0, /lcm/m1)
# still wins: a frozen manager can update itself without a reflash (on an ESP32;
# an ESP8266 has not the heap to run a manager from the filesystem, see
# docs/hobbyist.md).
# The boot shim itself is not frozen: MicroPython runs /main.py from the
# filesystem; copy lcm_device/main.py there and lcm_device/pick.py to /lcm/pick.py
# (lcm device install does).

metadata(
    description="lcm: signed, atomic, self-updating life-cycle manager for MicroPython devices",
    version="0.1.0",
    license="MIT",
)

# Pure-Python formats and the P-256 verifier, then the device code. opt=3, as the .mpy
# files are built (publisher/micropython.py, MPY_OPT): no line-number tables.
package("cert_sector", opt=3)
package("lcm_device", opt=3)
# What apps `import lcm` (lcm_device/lcm.py, frozen as a top-level module too).
module("lcm.py", base_path="lcm_device", opt=3)
