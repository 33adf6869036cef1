"""Formats and trust rules shared by the publisher and the device.

Pure Python that runs unchanged on CPython and MicroPython: the cert sector
(`sector`), the release manifest (`manifest`), the P-256 verifier (`p256`),
their errors (`errors`). Nothing here does I/O beyond reading a stream it is
handed.

This package module is empty on purpose: every device module imports it, so on
a board whatever it held (re-exported names, a wrapper) would be objects in RAM
at every boot. Import from the submodules.
"""
