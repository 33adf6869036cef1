"""A simulated board's boot in the ROM model (LCM_DATA_HEAP=N): the code in "ROM" first.

A board holds the frozen manager in its firmware from power-on, whoever imports
it: the manager's boot, or /main.py starting the app alone after an update boot
(which never makes a HAL). So the simulator starts each boot of the ROM model
here (`micropython -m lcm_sim.romboot`), which runs the device's /main.py from
the current folder (the device's root) as a board runs it. At the first import
of the manager's code, once /main.py has put its slot on sys.path,
lcm_sim/rommodel.py loads every module of the manager and leaves N bytes of
heap for data.
"""

import builtins
import os
import sys

_import = builtins.__import__


def _first_import(name, globals=None, locals=None, fromlist=None, level=0):
    if name.startswith(("lcm_device", "cert_sector")):
        builtins.__import__ = _import
        from lcm_sim.rommodel import leave_data_heap

        data_heap = leave_data_heap(int(os.getenv("LCM_DATA_HEAP")))
        print("lcm-hal: code in ROM, data heap " + str(data_heap))
        # In ROM, not imported: as a board's frozen modules, each comes into sys.modules
        # when something imports it (rommodel puts it back from what it holds).
        for module in [m for m in sys.modules if m.startswith(("lcm_device", "cert_sector"))]:
            del sys.modules[module]
    return builtins.__import__(name, globals, locals, fromlist, level)


def _main():
    # In a function: the source text is not left on this frame's stack while it runs.
    with open("main.py") as f:
        return compile(f.read(), "main.py", "exec")


builtins.__import__ = _first_import
exec(_main(), {"__name__": "__main__"})
