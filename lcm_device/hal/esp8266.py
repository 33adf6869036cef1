"""The ESP8266 HAL: stock `machine` and `network` (board.py); no OTA partitions (files only)."""

from lcm_device.hal.board import BoardHal


class Esp8266Hal(BoardHal):
    board = "esp8266"
