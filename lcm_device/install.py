"""Installing a release the check found: cert sector, manifest, plan, fetch, verify, switch.

Loaded only when a check finds a new tag (an idle check does not pay for it);
`install(u, st, tag)` runs steps 2-7 of the cycle described in
lcm_device/update.py with the Updater `u` (its client, buffer, config and
log: every step takes it first), and raises a TrustError or Refused naming
the reason for any refusal. The steps live in three modules loaded one after
the other, so that a board with its code in the heap never holds them all:
lcm_device.metadata (2-3: cert sector and manifest, with the verifier), then
lcm_device.slotfill (4-7 of a files release) or lcm_device.firmware.
"""

from lcm_device import slots
from lcm_device.compat import unload


def install(u, st, tag):
    slot = slots.inactive(st, u.kind)
    from lcm_device.metadata import verified

    try:
        try:
            got = verified(u, st, tag, slot)
        finally:
            # Steps 2-3 done (or refused): their modules and the verifier's go, and their
            # heap with them (only plain values came back: nothing refers to them).
            verified = None
            unload(
                [
                    "lcm_device.metadata",
                    "lcm_device.firstpin",
                    "cert_sector.sector",
                    "cert_sector.p256",
                    "cert_sector.keys",
                ],
                True,
            )
        if got is None:
            return "idle"  # a staged roll-out that leaves this device out
        order, pack_size, spent, firmware = got
        got = None
        if firmware:
            from lcm_device.firmware import install_firmware

            install_firmware(u, st, tag, order, spent, slots.manifest_path(u.hal, slot) + ".new")
            return
        from lcm_device.slotfill import fill

        fill(u, st, tag, slot, order, pack_size, spent)
    finally:
        # The signed URLs lcm_device.resolve kept: of this install only (installed,
        # refused or failed), their flash blocks are let go.
        from lcm_device.fetch import URL_FILE
        from lcm_device.hal.fs import remove_if_exists

        for name in u.resolved.split():
            if name[0] != "-":
                remove_if_exists(u.hal.fs, URL_FILE % (u.hal.root, u.kind, name))


def partition_label(p):
    return p.info()[4]  # esp32.Partition.info(): (type, subtype, addr, size, label, encrypted)
