"""The example app's hardware: a temperature, a button, a UDP socket.

The board differences live here, in one place: the ESP32's internal
temperature sensor, the ESP8266's ADC (a TMP36 on A0), and on the unix port
(the simulated device of `lcm device simulate` and `lcm demo`) a made-up
temperature and three readings, so that a simulated boot finishes.
"""

import socket

try:
    import esp32

    def read_celsius():
        return esp32.mcu_temperature()

except ImportError:
    try:
        import machine

        _adc = machine.ADC(0)

        def read_celsius():
            # TMP36: 10 mV per degree, 500 mV at 0 degrees; the ADC reads 0..1 V as 0..1023.
            return round(_adc.read() * 1000 / 1023 / 10 - 50, 1)

    except (ImportError, AttributeError):
        import time as _time

        def read_celsius():
            return round(20 + (_time.time() % 50) / 10, 1)


try:
    from machine import Pin

    _button = Pin(0, Pin.IN, Pin.PULL_UP)  # BOOT button on most ESP32/ESP8266 boards

    def update_requested():
        return _button.value() == 0

    def keep_running(n):
        return True

    def pause_ms(interval_ms):
        return interval_ms

    BROADCAST = "255.255.255.255"

except ImportError:

    def update_requested():
        return False

    def keep_running(n):
        return n < 3

    def pause_ms(interval_ms):
        return 10

    # A simulated device stays on loopback: never broadcast from a workstation.
    BROADCAST = "127.0.0.1"


PORT = 45679


class Publisher:
    """Broadcasts each reading as one UDP datagram (and prints it)."""

    def __init__(self, host=BROADCAST, port=PORT):
        self.addr = socket.getaddrinfo(host, port)[0][-1]
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        except (AttributeError, OSError):
            pass

    def send(self, line):
        print("sensor: " + line)
        try:
            self.sock.sendto(line.encode(), self.addr)
        except OSError:
            pass  # no network yet: the reading is still printed
