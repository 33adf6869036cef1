"""The P-256 verifier from .mpy in the real MicroPython unix port: every Wycheproof vector.

CPython writes the vectors as one line each (DER already decoded; an invalid
DER encoding is written as '-', a rejection), and the device script streams
them, so the test also runs within the 24 KB heap of the second device pass.
"""

from __future__ import annotations

from pathlib import Path

from tests.wycheproof import vectors

SCRIPT = """
import binascii
from cert_sector.p256 import verify_p256

passed = failed = 0
with open("vectors.txt") as f:
    for line in f:
        name, key, digest, sig, expected = line.split()
        ok = sig != "-" and verify_p256(
            binascii.unhexlify(key), binascii.unhexlify(digest), binascii.unhexlify(sig)
        )
        if ok == (expected == "1"):
            passed += 1
        else:
            failed += 1
            print("FAIL", name)
print("RESULT", passed, failed)
"""


def test_wycheproof_under_micropython(mpy, tmp_path: Path) -> None:
    lines = []
    for name, key, digest, sig, expected in vectors():
        lines.append(
            f"{name} {key.hex()} {digest.hex()} {sig.hex() if sig else '-'} {int(expected)}\n"
        )
    (mpy.workdir / "vectors.txt").write_text("".join(lines))
    proc = mpy.run(SCRIPT, timeout=300)
    result = proc.stdout.strip().splitlines()[-1].split()
    assert result == ["RESULT", str(len(lines)), "0"], proc.stdout[-2000:]
