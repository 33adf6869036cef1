"""P-256 verify: time per verify and heap under MicroPython (from .mpy), and CPython, in one run.

Prints:
- ms per verify in the MicroPython unix port (bar: <= 12 ms on this machine);
- the smallest `-X heapsize` at which importing the verifier from .mpy and
  verifying works, and the GC heap the verify itself needs (bar: <= 10 KB;
  the unix port is 64-bit, so its objects are about twice an ESP8266's);
- the data heap of one verify with the code "in ROM" (the ROM model of
  lcm_sim/rommodel.py: everything imported first, then all but N bytes held),
  found by bisection in 64-byte steps: what the verify adds at the update's
  peak, the check of the cert sector;
- ms per verify with the same pure code on CPython, and with `cryptography`
  (OpenSSL) for scale.
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    Prehashed,
    encode_dss_signature,
)

from cert_sector.p256 import verify_p256
from publisher.micropython import (
    ROM_MODEL_HEAP,
    UNIX_PACKAGES,
    build_mpy,
    rom_prelude,
    run_micropython,
)
from publisher.signing import KeySigner

ROUNDS = 50

DEVICE_TIMING = """
import time, binascii
from cert_sector.p256 import verify_p256
key = binascii.unhexlify("{key}")
digest = binascii.unhexlify("{digest}")
sig = binascii.unhexlify("{sig}")
assert verify_p256(key, digest, sig)
t = time.ticks_us()
for _ in range({rounds}):
    verify_p256(key, digest, sig)
print(time.ticks_diff(time.ticks_us(), t) / {rounds} / 1000)
"""

DEVICE_HEAP = """
import gc, binascii
key = binascii.unhexlify("{key}")
digest = binascii.unhexlify("{digest}")
sig = binascii.unhexlify("{sig}")
gc.collect()
before_import = gc.mem_alloc()
from cert_sector.p256 import verify_p256
gc.collect()
print(before_import, gc.mem_alloc())
assert verify_p256(key, digest, sig)
"""

# The inputs are made before the ROM model holds the heap: they are the caller's.
DEVICE_DATA_HEAP = """
import binascii
key = binascii.unhexlify("{key}")
digest = binascii.unhexlify("{digest}")
sig = binascii.unhexlify("{sig}")
{prelude}
from cert_sector.p256 import verify_p256
print(verify_p256(key, digest, sig))
"""


def verify_data_heap(build: Path, folder: Path, fields: dict[str, str]) -> int:
    """Smallest ROM-model data heap (bytes, 64-byte steps) in which one verify passes."""
    script = folder / "data_heap.py"

    def passes(n: int) -> bool:
        script.write_text(DEVICE_DATA_HEAP.format(prelude=rom_prelude(n), **fields))
        proc = run_micropython([str(script)], path=[build], heap=ROM_MODEL_HEAP)
        return proc.stdout.strip().endswith("True")

    low, high = 0, 16384
    if not passes(high):
        raise SystemExit(f"verify does not pass with {high} bytes of data heap")
    while high - low > 64:
        mid = (low + high) // 2 // 64 * 64
        if passes(mid):
            high = mid
        else:
            low = mid
    return high


def main() -> None:
    signer = KeySigner(ec.generate_private_key(ec.SECP256R1()))
    message = b"lcm benchmark"
    digest = hashlib.sha256(message).digest()
    sig = signer.sign(message)
    fields = {"key": signer.public_key.hex(), "digest": digest.hex(), "sig": sig.hex()}

    with tempfile.TemporaryDirectory() as tmp:
        build = build_mpy(Path(tmp) / "mpy", packages=("cert_sector",))
        script = Path(tmp) / "timing.py"
        script.write_text(DEVICE_TIMING.format(rounds=ROUNDS, **fields))
        proc = run_micropython([str(script)], path=[build])
        if proc.returncode:
            raise SystemExit(proc.stderr)
        mpy_ms = float(proc.stdout.split()[-1])

        script = Path(tmp) / "heap.py"
        script.write_text(DEVICE_HEAP.format(**fields))
        smallest = None
        for kb in range(40, 4, -1):
            proc = run_micropython([str(script)], path=[build], heap=f"{kb}k")
            if proc.returncode:
                break
            smallest = kb
            base, after_import = (int(x) for x in proc.stdout.split())
        rom = build_mpy(Path(tmp) / "rom", UNIX_PACKAGES)
        data_heap = verify_data_heap(rom, Path(tmp), fields)
    if smallest is None:
        raise SystemExit("verify does not run even in a 40 KB heap")

    t = time.perf_counter()
    for _ in range(ROUNDS):
        verify_p256(signer.public_key, digest, sig)
    cpython_ms = (time.perf_counter() - t) / ROUNDS * 1000

    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), signer.public_key)
    der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    t = time.perf_counter()
    for _ in range(ROUNDS):
        public.verify(der, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    openssl_ms = (time.perf_counter() - t) / ROUNDS * 1000

    module_kb = (after_import - base) / 1024
    print("P-256 verify (ECDSA, SHA-256 digest given)")
    print(f"  MicroPython unix port, .mpy : {mpy_ms:7.2f} ms/verify   (bar <= 12 ms)")
    print(f"  smallest -X heapsize        : {smallest} KB  (script + module + verify)")
    print(f"  verifier module in the heap : {module_kb:5.1f} KB  (0 when frozen into firmware)")
    print(
        f"  heap for the verify itself  : <= {smallest - after_import / 1024:5.1f} KB on the 64-bit"
        f" unix port, about half on an ESP8266 (bar <= 10 KB)"
    )
    print(
        f"  data heap of one verify     : {data_heap} bytes with the code in ROM"
        " (ROM model, 64-byte steps)"
    )
    print(f"  CPython, same pure code     : {cpython_ms:7.2f} ms/verify")
    print(f"  CPython, cryptography       : {openssl_ms:7.3f} ms/verify")


if __name__ == "__main__":
    main()
