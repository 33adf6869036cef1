"""The ESP32 HAL: `machine`/`network` (board.py) plus the OTA partitions of `esp32`."""

from lcm_device.hal.board import BoardHal


class Esp32Hal(BoardHal):
    board = "esp32"

    def partitions(self):
        """The `esp32.Partition` class (RUNNING, get_next_update, ...) for firmware updates."""
        from esp32 import Partition

        return Partition
