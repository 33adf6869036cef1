"""The unix HAL's model of a board that runs the manager from ROM (frozen or ROMFS).

On a board the manager's code is frozen into the firmware or sits in a
ROMFS partition, and its bytecode runs from flash: the heap holds only data.
The unix port loads `.mpy` bytecode into its GC heap instead, so a heap size
given with `-X heapsize` would measure code and data together. With
`LCM_DATA_HEAP=N` the unix HAL calls `leave_data_heap(N)` when it starts:
every module of the manager is imported (the code a board keeps in ROM),
then a ballast takes all free heap but N bytes. What runs afterwards has
the N bytes a board would have for data (docs/device.md, "Memory").

A module the boot unloads and imports again (the engine releases the
verifier between a manager's check and the app's) is put back from what was
imported first: on a board its bytecode stays in ROM and only its RAM
objects are made again (bench bar 2), while the unix port would load its
code into the data heap a second time. (A board has one frozen manager: a
slot /main.py falls back to in the same process gets the modules held.)
"""

import builtins
import gc
import os
import sys

from lcm_device.compat import const

# Never imported for the model: the /main.py shim and /lcm/pick.py (files of their own on
# a board, never frozen), the simulator's setup-mode and ROM-model entry points (importing
# them runs them) and the app's `lcm` shim (the app imports it under its own name).
_SKIP = (
    "lcm_device.main",
    "lcm_device.pick",
    "lcm_device.lcm",
    "lcm_sim.setup_mode",
    "lcm_sim.romboot",
)
# The manager's packages, and the simulated board's (a board's HAL and radio are firmware).
_PACKAGES = ("lcm_device", "lcm_device.hal", "lcm_device.portal", "cert_sector", "lcm_sim")

_MAX_PIECES = const(4096)
_ballast = []
_modelled = False
_held = {}  # name: module, so that a module the boot unloads stays "in ROM"
_import = builtins.__import__


def import_manager():
    """Import every module of the manager's packages found on sys.path."""
    for package in _PACKAGES:
        folder = _find(package.replace(".", "/"))
        if folder is None:
            continue
        for name in sorted(os.listdir(folder)):
            stem = name.rsplit(".", 1)[0]
            module = package + "." + stem
            if name.endswith((".py", ".mpy")) and stem != "__init__" and module not in _SKIP:
                try:
                    __import__(module)
                    _held[module] = sys.modules[module]
                except ImportError:
                    pass  # a board's module that needs that board's firmware
    builtins.__import__ = _import_from_rom


def _import_from_rom(name, globals=None, locals=None, fromlist=None, level=0):
    # `import a.b` and `from a import b`: a held module the boot unloaded goes back into
    # sys.modules and its package before the import runs, which then finds it there.
    names = [name]
    if isinstance(fromlist, tuple):  # (MicroPython passes True where no names are asked)
        names += [name + "." + leaf for leaf in fromlist]
    for full in names:
        module = _held.get(full)
        if module is not None and full not in sys.modules:
            sys.modules[full] = module
            cut = full.rfind(".")
            if cut > 0 and full[:cut] in sys.modules:
                setattr(sys.modules[full[:cut]], full[cut + 1 :], module)
    return _import(name, globals, locals, fromlist, level)


def from_env():
    """With LCM_DATA_HEAP=N set, model the ROM once per process (leave_data_heap(N)), when
    the board's code first runs: the unix HAL's construction, or lcm_sim/romboot.py in
    an app boot that makes no HAL."""
    global _modelled
    n = os.getenv("LCM_DATA_HEAP")
    if n and not _modelled:
        _modelled = True
        print("lcm-hal: code in ROM, data heap " + str(leave_data_heap(int(n))))


def leave_data_heap(n):
    """Import the manager, then hold all free heap but `n` contiguous bytes; returns
    the free heap (n, or a little more when code loading left holes of one block)."""
    # Preallocated: a growing list would move, and leave holes of its own.
    held = [None] * _MAX_PIECES
    import_manager()
    return hold_all_but(n, held)


def hold_all_but(n, held=None):
    """Hold all free heap but `n` contiguous bytes; returns the free heap."""
    if held is None:
        held = [None] * _MAX_PIECES
    gc.collect()
    if gc.mem_free() <= n:
        return gc.mem_free()  # less than that is free already: nothing to hold
    # 1. The largest free block (the heap's tail): allocation is first-fit, so the
    # first size that fits is it.
    size = gc.mem_free()
    while size > n:
        try:
            held[0] = bytearray(size)
            break
        except MemoryError:
            size -= 256
    # 2. Fill the holes that loading the code left before it (a float is one
    # GC block on the 64-bit unix port).
    i = 1
    for piece in (1024, 256, 64, 16, 0):
        while i < _MAX_PIECES:
            try:
                held[i] = bytearray(piece) if piece else float(i)
            except MemoryError:
                break
            i += 1
    # 3. Give back the last n bytes of the tail, in one piece.
    held[0] = None
    gc.collect()
    held[0] = bytearray(size - n)
    _ballast.append(held)
    gc.collect()
    return gc.mem_free()


def _find(path):
    for entry in sys.path:
        folder = (entry + "/" if entry else "") + path
        try:
            os.stat(folder)
            return folder
        except OSError:
            pass
    return None
