"""What apps import as `lcm`: installed as `lcm.py` at the root of the manager slot.

    import lcm
    lcm.confirm()          # this (trial) version works: keep it
    lcm.hold()             # no update reset while this runs (lcm.hold(False) ends it)
    lcm.request_update()   # check for an update now
    lcm.status()           # what is installed and running
    lcm.idle(ms)           # sleep (the unix port's apps: lcm's timer work runs meanwhile)

It only re-exports `lcm_device.app`, so the API apps see does not move when
the manager's modules do. It is a file of its own so that every way of
installing the manager (factory image, manager release, mip, freezing)
ships the same thing.
"""

from lcm_device.app import confirm, hold, idle, request_update, status  # noqa: F401
