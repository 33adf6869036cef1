"""The ESP32 HAL: `machine`/`network` (board.py) plus the OTA partitions of `esp32`."""

from lcm_device.hal.board import BoardHal


class Esp32Hal(BoardHal):
    board = "esp32"

    def partitions(self):
        """(running, next update) OTA partitions: `esp32.Partition` objects."""
        from esp32 import Partition

        running = Partition(Partition.RUNNING)
        return running, running.get_next_update()

    def mark_app_valid(self):
        """Keep the running firmware: cancel the bootloader's roll-back."""
        from esp32 import Partition

        Partition.mark_app_valid_cancel_rollback()
