"""Boot state rebuilt from the slots, when neither generation file is valid (lcm_device.slots).

Its own module: a device needs it only after software removed its boot state,
so the code stays out of the heap of every other boot.
"""

from lcm_device.slots import manifest_path, pair, slot_dir


def rebuild(hal, log=None):
    """Boot state from what is on flash, when no generation file is valid.

    A slot is a candidate when all its files match its manifest (size and
    sha256, from flash). One candidate becomes active, confirmed; its tag is
    `v` + the signed version. With two candidates the app runs the one of
    the lower sequence and the newer one is marked bad (`app_bad_why`: the
    boot state was lost while it was installed): a torn write damages one
    generation only, so losing both means software removed them, and the
    software that runs is the newer release (on trial, or confirmed and
    misbehaving). It is not installed again; a newer release is. The manager
    takes its newest candidate (it is on trial only while /main.py says so);
    the slot without a manifest (the factory slot m0) is the default.
    """
    st = {"gen": 0}
    for kind in ("app", "mgr"):
        found = []
        for slot in pair(kind):
            m = complete_manifest(hal, slot)
            if m is not None:
                found.append((m.seq, slot, m))
        found.sort()
        if found:
            _, slot, m = found[0 if kind == "app" else -1]
            st[kind] = slot
            st[kind + "_tag"] = "v" + m.version
            st[kind + "_seq"] = m.seq
            st[kind + "_repo"] = m.repo
        if kind == "app" and len(found) == 2:
            st["app_bad"] = "v" + found[1][2].version
            st["app_bad_seq"] = found[1][2].seq
            st["app_bad_why"] = "the boot state was lost while it was installed"
    if st.get("app") or st.get("mgr_tag"):
        (log or print)(
            "boot state: none valid; rebuilt from the slots: app "
            + str(st.get("app"))
            + " "
            + str(st.get("app_tag"))
            + ", manager "
            + str(st.get("mgr"))
            + " "
            + str(st.get("mgr_tag"))
        )
    return st


def complete_manifest(hal, slot):
    """The header of SLOT's manifest when every file of the slot matches it, else None."""
    from lcm_device.compat import file_size

    path = manifest_path(hal, slot)
    size = file_size(path)
    if size < 0:
        return None  # checked first: a device without manifests never loads the parser
    from cert_sector.manifest import SIGNATURE_BLOCK, ManifestReader

    if size <= SIGNATURE_BLOCK:
        return None
    base = slot_dir(hal, slot) + "/"
    buf = memoryview(bytearray(512))
    try:
        with open(path, "rb") as f:
            reader = ManifestReader(stream=f, body_size=size - SIGNATURE_BLOCK)
            m = reader.header()
            for e in reader.files():
                if file_size(base + e.path) != e.size or _sha(base + e.path, buf) != e.sha256:
                    return None
    except Exception:  # a damaged manifest or slot: not a candidate
        return None
    return m


def _sha(path, buf):
    import hashlib

    from lcm_device.hal.fs import pump

    h = hashlib.sha256()
    with open(path, "rb") as f:
        pump(f, buf, -1, None, h)
    return h.digest()
