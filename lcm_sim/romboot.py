"""A simulated board's boot in the ROM model (LCM_DATA_HEAP=N): the device's /main.py,
with the manager's code in "ROM" before it runs.

The unix HAL models the ROM when it is made (lcm_sim/rommodel.py, which loads
every module of the manager and leaves N bytes of heap for data), as the
manager's boot makes it first thing. The app boot after an update boot makes
no HAL: /main.py starts the app through lcm_device.appstart. So the simulator
starts each boot of the ROM model here (`micropython -m lcm_sim.romboot`),
which runs /main.py from the current folder (the device's root) as a board
does, and models the ROM when lcm_device.timerwork is first imported, if no HAL
did before: in that boot, once appstart has removed the marker (a power-on, a
marker that stays, goes on as a boot like any other, whose HAL models it).
"""

import builtins

_import = builtins.__import__


def _first_import(name, globals=None, locals=None, fromlist=None, level=0):
    if name == "lcm_device.timerwork":
        builtins.__import__ = _import
        from lcm_sim.rommodel import from_env

        from_env()
    return builtins.__import__(name, globals, locals, fromlist, level)


def _main():
    # In a function: the source text is not left on this frame's stack while it runs.
    with open("main.py") as f:
        return compile(f.read(), "main.py", "exec")


builtins.__import__ = _first_import
exec(_main(), {"__name__": "__main__"})
