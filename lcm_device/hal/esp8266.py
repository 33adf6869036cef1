"""The ESP8266 HAL: stock `machine` and `network` (board.py); no OTA partitions."""

from lcm_device.hal.board import BoardHal


class Esp8266Hal(BoardHal):
    board = "esp8266"

    def partitions(self):
        # The ESP8266 port has no esp32.Partition: apps update as files only.
        return None
