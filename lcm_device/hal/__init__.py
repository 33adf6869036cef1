"""The board's hardware abstraction, chosen once by which port modules import.

`get()` returns the HAL object documented in docs/device.md ("HAL"): `esp32`
importable means an ESP32, `esp` an ESP8266, neither the unix port (tests and
`lcm device simulate`). Board modules are imported lazily so that only the
one in use costs heap.
"""

_hal = None


def get():
    """The HAL for this board (created on first use)."""
    global _hal
    if _hal is not None:
        return _hal
    try:
        import esp32  # noqa: F401

        from lcm_device.hal.esp32 import Esp32Hal as Hal
    except ImportError:
        try:
            import esp  # noqa: F401

            from lcm_device.hal.esp8266 import Esp8266Hal as Hal
        except ImportError:
            from lcm_sim.unix import UnixHal as Hal
    _hal = Hal()
    return _hal
