"""Example app: a thermometer that publishes its readings as JSON lines over UDP.

It shows the two calls an app makes to the `lcm` manager:

- `lcm.confirm()` once the app has proved it works (here: one reading read
  and published), so a new version leaves trial mode and is kept;
- `lcm.request_update()` to check for an update now (here: when the board's
  button is held), instead of waiting for the manager's schedule.

Publish it with `lcm release publish examples/sensor --repo OWNER/NAME ...`.
"""

import json
import time

import lcm
import sensor

VERSION = "1.0.0"  # what the readings report: bump it with the release tag (the demo does)
INTERVAL_MS = 10000


def run():
    publisher = sensor.Publisher()
    n = 0
    while sensor.keep_running(n):
        reading = {"app": "sensor", "version": VERSION, "n": n, "celsius": sensor.read_celsius()}
        publisher.send(json.dumps(reading))
        n += 1
        if n == 1:
            # One reading read and published: this version works, keep it.
            lcm.confirm()
        if sensor.update_requested():
            lcm.request_update()
        time.sleep_ms(sensor.pause_ms(INTERVAL_MS))


run()
